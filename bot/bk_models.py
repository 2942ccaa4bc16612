"""The BK-JOB domain models every caller uses, in the shape of ESB v2's wire format, plus the callback body.

Field names, types and nesting follow the `execute_job` doc and the JOB code (see shared/reference): the code
wins where the two disagree (e.g. `execute_count`, `step_instances`). The v2 client reads and writes these
directly; the v3 client (`bot.bk_v3`) converts the API gateway's shapes into them, so callers never see which
wire format is spoken.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = [
    "CallbackBody",
    "CallbackStep",
    "Envelope",
    "ExecuteJobData",
    "ExecuteJobRequest",
    "GlobalVar",
    "InstanceList",
    "InstanceSummary",
    "IpEntry",
    "JobDetail",
    "JobInstance",
    "JobInstanceStatus",
    "PASSWORD_PLACEHOLDER",
    "PlanIp",
    "PlanVariable",
    "StatusBlock",
    "StepInstance",
    "StepIpStatus",
    "TargetServer",
    "TopoNode",
    "VariableType",
]


# What BK-JOB v3 shows instead of a password default (JobConstants.SENSITIVE_FIELD_PLACEHOLDER); v2 defaults are
# replaced by it too, so no password default is ever held by the bot.
PASSWORD_PLACEHOLDER = "******"



# BK-JOB's IDs are Java longs: anything outside (0, 2**63) is not one and would not fit the store's BIGINT either.
InstanceId = Annotated[int, Field(gt=0, lt=2**63)]

class VariableType(IntEnum):
    """`category` of a plan's global variable (JOB's TaskVariableTypeEnum)."""

    STRING = 1
    NAMESPACE = 2
    HOST_LIST = 3
    PASSWORD = 4
    ASSOCIATIVE_ARRAY = 5
    INDEX_ARRAY = 6


class _Wire(BaseModel):
    """Tolerant of fields BK-JOB adds over time; strict about the ones we read."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class IpEntry(_Wire):
    bk_cloud_id: int
    ip: str


class TopoNode(_Wire):
    id: int
    node_type: str


class TargetServer(_Wire):
    """`global_vars[].target_server`: only non-empty lists go on the wire."""

    ip_list: list[IpEntry] = Field(default_factory=list)
    dynamic_group_id_list: list[str] = Field(default_factory=list)
    topo_node_list: list[TopoNode] = Field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.ip_list or self.dynamic_group_id_list or self.topo_node_list)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(exclude_defaults=True)


class GlobalVar(_Wire):
    """One `global_vars[]` item of `execute_job`: identified by `id`, else by `name`."""

    id: int | None = None
    name: str | None = None
    value: str | None = None
    target_server: TargetServer | None = None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.id is not None:
            out["id"] = self.id
        else:
            out["name"] = self.name
        if self.target_server is not None:
            out["target_server"] = self.target_server.wire()
        else:
            out["value"] = self.value if self.value is not None else ""
        return out


class ExecuteJobRequest(_Wire):
    """The business part of an `execute_job` body (credentials are added by the client)."""

    bk_biz_id: int
    bk_job_id: int
    global_vars: list[GlobalVar] = Field(default_factory=list)
    bk_callback_url: str | None = None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bk_biz_id": self.bk_biz_id, "bk_job_id": self.bk_job_id}
        if self.global_vars:
            out["global_vars"] = [v.wire() for v in self.global_vars]
        if self.bk_callback_url:
            out["bk_callback_url"] = self.bk_callback_url
        return out


class Envelope(_Wire):
    """JOB's `EsbResp`, plus the `request_id` the ESB adds."""

    result: bool = False
    code: int | None = None
    message: str | None = None
    data: Any = None
    job_request_id: str | None = None
    request_id: str | None = None


class ExecuteJobData(_Wire):
    job_instance_id: InstanceId
    job_instance_name: str = ""


class PlanIp(_Wire):
    bk_cloud_id: int = 0
    ip: str


class PlanVariable(_Wire):
    """A `get_job_detail` `global_vars[]` item (v2 code: `category` is the type code).

    `topo_node_list` is filled only from v3's `get_job_plan_detail`: v2 never returns a host default's nodes.
    """

    id: int | None = None
    name: str
    category: int = VariableType.STRING
    value: str | None = None
    description: str | None = None
    ip_list: list[PlanIp] | None = None
    custom_query_id: list[str] | None = None
    topo_node_list: list[TopoNode] | None = None

    @field_validator("value")
    @classmethod
    def _mask_password(cls, value: str | None, info: ValidationInfo) -> str | None:
        """v2 returns a password's default in clear; the bot only needs to know whether one is set."""
        if info.data.get("category") == VariableType.PASSWORD and value:
            return PASSWORD_PLACEHOLDER
        return value

    @property
    def is_password(self) -> bool:
        return self.category == VariableType.PASSWORD

    @property
    def is_host(self) -> bool:
        return self.category == VariableType.HOST_LIST

    def default_targets(self) -> TargetServer:
        """The plan's default hosts; through v2 without topo nodes, which it never returns."""
        return TargetServer(
            ip_list=[IpEntry(bk_cloud_id=ip.bk_cloud_id, ip=ip.ip) for ip in self.ip_list or []],
            dynamic_group_id_list=list(self.custom_query_id or []),
            topo_node_list=list(self.topo_node_list or []),
        )


class JobDetail(_Wire):
    """`get_job_detail` data: the plan with its global variables."""

    bk_biz_id: int | None = None
    bk_job_id: int
    name: str
    global_vars: list[PlanVariable] | None = None

    @property
    def variables(self) -> list[PlanVariable]:
        return list(self.global_vars or [])


class StepIpStatus(_Wire):
    ip: str | None = None
    bk_cloud_id: int | None = None
    status: int


class StepInstance(_Wire):
    step_instance_id: int
    name: str | None = None
    status: int
    type: int | None = None
    execute_count: int | None = None
    start_time: str | None = None
    end_time: str | None = None
    total_time: float | None = Field(default=None, allow_inf_nan=False)
    step_ip_status: list[StepIpStatus] | None = None

    def host_counts(self) -> tuple[int, int]:
        """(hosts that succeeded, hosts in all); per-host 9 is success in JOB's ExecuteObjectTaskStatusEnum."""
        hosts = self.step_ip_status or []
        return sum(1 for h in hosts if h.status == 9), len(hosts)


class StatusBlock(_Wire):
    step_instances: list[StepInstance] = Field(default_factory=list)


class JobInstance(_Wire):
    job_instance_id: InstanceId
    bk_job_id: int | None = None
    name: str | None = None
    status: int
    operator: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    total_time: float | None = Field(default=None, allow_inf_nan=False)


class JobInstanceStatus(_Wire):
    """`get_job_instance_status` (v2) data."""

    is_finished: bool
    job_instance: JobInstance
    blocks: list[StatusBlock] | None = None

    @property
    def steps(self) -> list[StepInstance]:
        return [step for block in self.blocks or [] for step in block.step_instances]


class InstanceSummary(_Wire):
    """One `get_job_instance_list` (jobv3) row; times are epoch milliseconds."""

    id: InstanceId
    job_plan_id: int | None = None
    name: str | None = None
    operator: str | None = None
    create_time: int | None = None
    status: int | None = None
    launch_mode: int | None = None


class InstanceList(_Wire):
    data: list[InstanceSummary] | None = None
    total: int | None = None


class CallbackStep(_Wire):
    step_instance_id: int
    status: int


class CallbackBody(_Wire):
    """What BK-JOB POSTs to `bk_callback_url`; the v3 docs name the list `step_instance_list`."""

    job_instance_id: InstanceId
    status: int
    step_instances: list[CallbackStep] = Field(
        default_factory=list, validation_alias=AliasChoices("step_instances", "step_instance_list")
    )
