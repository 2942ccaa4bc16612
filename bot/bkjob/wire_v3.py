"""BK-JOB's v3 wire format behind the API gateway, and its conversion to and from the domain models.

The domain models (`bot.bkjob.models`) keep ESB v2's shape because every caller was written against it; this module
is the one place that knows the v3 names (`job_plan_id`, `global_var_list`, `server.dynamic_group_list[{id}]`,
`type` for `category`, `finished`, `step_instance_list`) and that v3 times are epoch milliseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from bot.bkjob.models import (
    ExecuteJobRequest,
    GlobalVar,
    JobDetail,
    JobInstance,
    JobInstanceStatus,
    PlanIp,
    PlanPage,
    PlanSummary,
    PlanVariable,
    StatusBlock,
    StepInstance,
    StepIpStatus,
    TargetServer,
    TopoNode,
)

__all__ = [
    "GlobalVarV3",
    "InstanceStatusV3",
    "PlanDetailV3",
    "PlanListV3",
    "ServerV3",
    "execute_body",
    "global_var",
    "instance_list_query",
    "instance_status_query",
    "plan_detail_query",
    "plan_list_query",
    "scope",
    "server",
]

SCOPE_TYPE = "biz"
BIZ_SET = "biz_set"


def scope(bk_biz_id: int) -> dict[str, str]:
    """v3 names the business as a scope; `bk_scope_id` is a string (`@NotBlank`), `bk_biz_id` is deprecated.

    IDs 8000000–9999999 are business sets, as v2's `bk_biz_id` treats them (EsbAppScopeReq, docs/bkjob.md §scope).
    """
    kind = BIZ_SET if 8_000_000 <= bk_biz_id <= 9_999_999 else SCOPE_TYPE
    return {"bk_scope_type": kind, "bk_scope_id": str(bk_biz_id)}


# -- requests ---------------------------------------------------------------------------------------------------


def server(targets: TargetServer) -> dict[str, Any]:
    """`global_var_list[].server`: v2's `dynamic_group_id_list` of strings becomes `dynamic_group_list` of `{id}`,
    and hosts named by ID (IPv6-only ones) go in `host_id_list`.

    Only non-empty lists go on the wire, as for v2: JOB uses a server only when at least one list is non-empty.
    """
    out: dict[str, Any] = {}
    if targets.host_id_list:
        out["host_id_list"] = [host.bk_host_id for host in targets.host_id_list]
    if targets.ip_list:
        out["ip_list"] = [{"bk_cloud_id": ip.bk_cloud_id, "ip": ip.ip} for ip in targets.ip_list]
    if targets.dynamic_group_id_list:
        out["dynamic_group_list"] = [{"id": group} for group in targets.dynamic_group_id_list]
    if targets.topo_node_list:
        out["topo_node_list"] = [{"id": node.id, "node_type": node.node_type} for node in targets.topo_node_list]
    return out


def global_var(item: GlobalVar) -> dict[str, Any]:
    """One `global_var_list[]` item, identified like v2's: by `id` when there is one, else by `name`."""
    out: dict[str, Any] = {"id": item.id} if item.id is not None else {"name": item.name}
    if item.target_server is not None:
        out["server"] = server(item.target_server)
    else:
        out["value"] = item.value if item.value is not None else ""
    return out


def execute_body(request: ExecuteJobRequest) -> dict[str, Any]:
    """The `execute_job_plan` body; the credentials travel only in the `X-Bkapi-Authorization` header."""
    out: dict[str, Any] = {**scope(request.bk_biz_id), "job_plan_id": request.bk_job_id}
    if request.global_vars:
        out["global_var_list"] = [global_var(v) for v in request.global_vars]
    if request.bk_callback_url:
        out["callback_url"] = request.bk_callback_url
    return out


def plan_detail_query(*, bk_biz_id: int, bk_job_id: int) -> dict[str, str]:
    return {**scope(bk_biz_id), "job_plan_id": str(bk_job_id)}


def plan_list_query(*, bk_biz_id: int, name: str | None, start: int, length: int) -> dict[str, str]:
    """`get_job_plan_list`: `name` is matched with SQL LIKE `%name%`; without `length` JOB sends only 20."""
    query = {**scope(bk_biz_id), "start": str(start), "length": str(length)}
    if name:
        query["name"] = name
    return query


def instance_status_query(*, bk_biz_id: int, job_instance_id: int) -> dict[str, str]:
    """`return_ip_result=true`: without it `step_ip_result_list` is null and no host counts could be shown."""
    return {**scope(bk_biz_id), "job_instance_id": str(job_instance_id), "return_ip_result": "true"}


def operate_job_body(*, bk_biz_id: int, job_instance_id: int, operation_code: int) -> dict[str, Any]:
    return {**scope(bk_biz_id), "job_instance_id": job_instance_id, "operation_code": operation_code}


def operate_step_body(
    *, bk_biz_id: int, job_instance_id: int, step_instance_id: int, operation_code: int
) -> dict[str, Any]:
    return {
        **scope(bk_biz_id),
        "job_instance_id": job_instance_id,
        "step_instance_id": step_instance_id,
        "operation_code": operation_code,
    }


def instance_list_query(
    *, bk_biz_id: int, create_time_start_ms: int, create_time_end_ms: int, operator: str
) -> dict[str, str]:
    """API launches (`launch_mode` 2) of normal jobs (`type` 0); 1000 is the most one page may hold."""
    return {
        **scope(bk_biz_id),
        "create_time_start": str(create_time_start_ms),
        "create_time_end": str(create_time_end_ms),
        "operator": operator,
        "launch_mode": "2",
        "type": "0",
        "start": "0",
        "length": "1000",
    }


# -- responses --------------------------------------------------------------------------------------------------


class _Wire(BaseModel):
    """Tolerant of fields BK-JOB adds over time; strict about the ones we read."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _HostV3(_Wire):
    """`ip` is null for an IPv6-only host, named by `bk_host_id` (and shown by `ipv6`)."""

    bk_host_id: int | None = None
    bk_cloud_id: int = 0
    ip: str | None = None
    ipv6: str | None = None


class _DynamicGroupV3(_Wire):
    id: str


class ServerV3(_Wire):
    """A host variable's default; each list is null when empty."""

    ip_list: list[_HostV3] | None = None
    dynamic_group_list: list[_DynamicGroupV3] | None = None
    topo_node_list: list[TopoNode] | None = None


class GlobalVarV3(_Wire):
    """A `get_job_plan_detail` `global_var_list[]` item: `type` is v2's `category`, hosts come in `server`."""

    id: int | None = None
    name: str
    type: int = 1
    value: str | None = None
    description: str | None = None
    server: ServerV3 | None = None

    def to_domain(self) -> PlanVariable:
        host = self.server is not None or self.type == 3
        srv = self.server or ServerV3()
        return PlanVariable(
            id=self.id,
            name=self.name,
            category=self.type,
            value=self.value,
            # v3 masks every password default, set or not (docs/bkjob.md §variables): whether one is set is unknown.
            value_hidden=self.type == 4,
            description=self.description,
            ip_list=[
                PlanIp(bk_host_id=h.bk_host_id, bk_cloud_id=h.bk_cloud_id, ip=h.ip, ipv6=h.ipv6)
                for h in srv.ip_list or []
            ]
            if host
            else None,
            custom_query_id=[g.id for g in srv.dynamic_group_list or []] if host else None,
            topo_node_list=list(srv.topo_node_list or []) if host else None,
        )


class PlanDetailV3(_Wire):
    """`get_job_plan_detail` data. The plan ID is `id` in what JOB sends; its doc says `job_plan_id`."""

    id: int = Field(validation_alias=AliasChoices("id", "job_plan_id"))
    name: str
    bk_scope_type: str | None = None
    bk_scope_id: str | None = None
    global_var_list: list[GlobalVarV3] | None = None
    last_modify_time: str | int | None = None
    step_list: list[dict[str, Any]] | None = None

    def to_domain(self) -> JobDetail:
        scope_id = self.bk_scope_id or ""
        biz = int(scope_id) if self.bk_scope_type in (SCOPE_TYPE, BIZ_SET) and scope_id.isdigit() else None
        return JobDetail(
            bk_biz_id=biz,
            bk_job_id=self.id,
            name=self.name,
            global_vars=[v.to_domain() for v in self.global_var_list or []],
            last_modify_time=self.last_modify_time,
            steps=self.step_list,
        )


class _PlanRowV3(_Wire):
    id: int
    name: str = ""


class PlanListV3(_Wire):
    """`get_job_plan_list` data (EsbPageDataV3): the rows' plan ID is `id` here (docs/bkjob.md §plans)."""

    start: int | None = None
    total: int | None = None
    data: list[_PlanRowV3] | None = None

    def to_domain(self) -> PlanPage:
        rows = [PlanSummary(bk_job_id=row.id, name=row.name) for row in self.data or []]
        return PlanPage(plans=rows, total=self.total)


def _when(epoch_ms: int | None) -> str | None:
    """v2's documented time text (`yyyy-MM-dd HH:mm:ss +0800`), in UTC since v3 gives no zone to keep."""
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S +0000")


def _seconds(ms: int | float | None) -> float | None:
    return None if ms is None else ms / 1000


class _StepInstanceV3(_Wire):
    step_instance_id: int
    name: str | None = None
    status: int
    type: int | None = None
    execute_count: int | None = None
    start_time: int | None = None
    end_time: int | None = None
    total_time: float | None = Field(default=None, allow_inf_nan=False)
    # Each `step_ip_result_list[]` item has exactly the domain's fields (v3 carries exit and error codes here):
    # read straight into it, not into a wire copy converted host by host (5,000 hosts: ~50 ms of the bot's CPU).
    step_ip_result_list: list[StepIpStatus] | None = None

    def to_domain(self) -> StepInstance:
        hosts = self.step_ip_result_list
        return StepInstance(
            step_instance_id=self.step_instance_id,
            name=self.name,
            status=self.status,
            type=self.type,
            execute_count=self.execute_count,
            start_time=_when(self.start_time),
            end_time=_when(self.end_time),
            total_time=_seconds(self.total_time),
            step_ip_status=None if hosts is None else list(hosts),
        )


class _JobInstanceV3(_Wire):
    job_instance_id: int
    name: str | None = None
    status: int
    operator: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    total_time: float | None = Field(default=None, allow_inf_nan=False)


class InstanceStatusV3(_Wire):
    """`get_job_instance_status` (v3) data: `finished`, epoch-ms times, and a flat `step_instance_list`."""

    finished: bool
    job_instance: _JobInstanceV3
    step_instance_list: list[_StepInstanceV3] | None = None

    def to_domain(self) -> JobInstanceStatus:
        job = self.job_instance
        return JobInstanceStatus(
            is_finished=self.finished,
            job_instance=JobInstance(
                job_instance_id=job.job_instance_id,
                name=job.name,
                status=job.status,
                operator=job.operator,
                start_time=_when(job.start_time),
                end_time=_when(job.end_time),
                total_time=_seconds(job.total_time),
            ),
            # v2 has one block per step; the callers read them through `JobInstanceStatus.steps`.
            blocks=[StatusBlock(step_instances=[step.to_domain()]) for step in self.step_instance_list or []],
        )
