"""The BK-JOB domain models every caller uses, in the shape of ESB v2's wire format, plus the callback body.

Field names, types and nesting follow the `execute_job` doc and the JOB code (see docs/bkjob.md): the code
wins where the two disagree (e.g. `execute_count`, `step_instances`). The v2 client reads and writes these
directly; the v3 client (`bot.bkjob.gateway`) converts the API gateway's shapes into them (`bot.bkjob.wire_v3`),
so callers never see which wire format is spoken.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import IntEnum
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "HOST_SUCCESS",
    "CallbackBody",
    "CallbackStep",
    "Envelope",
    "ExecuteJobData",
    "ExecuteJobRequest",
    "GlobalVar",
    "HostId",
    "InstanceList",
    "InstanceSummary",
    "IpEntry",
    "JobDetail",
    "JobInstance",
    "JobInstanceStatus",
    "PASSWORD_PLACEHOLDER",
    "Permission",
    "PlanIp",
    "PlanPage",
    "PlanSummary",
    "PlanStep",
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


# Step statuses only an operator's hand produces: 5 SKIPPED (force skip), 6 IGNORE_ERROR (ignore error).
_REVIVED_STEP = frozenset({5, 6})

# Per-host statuses that count as success: 9 SUCCESS and 3 LAST_SUCCESS (docs/bkjob.md §host-status).
HOST_SUCCESS = frozenset({3, 9})

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


class HostId(_Wire):
    """A host named by its CMDB host ID: how an IPv6-only host (no IPv4 to name it by) is sent, through v3's
    `host_id_list`. `ipv6` is only shown to people, never sent."""

    bk_host_id: int
    ipv6: str | None = None


class TargetServer(_Wire):
    """`global_vars[].target_server`: only non-empty lists go on the wire.

    `host_id_list` exists only in v3 (`server.host_id_list`), and there it wins over `ip_list` when both are given
    (JobExecuteCommonV3Processor): a target holding host IDs holds every host by ID (see bot.bkjob.variables).
    """

    ip_list: list[IpEntry] = Field(default_factory=list)
    host_id_list: list[HostId] = Field(default_factory=list)
    dynamic_group_id_list: list[str] = Field(default_factory=list)
    topo_node_list: list[TopoNode] = Field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.ip_list or self.host_id_list or self.dynamic_group_id_list or self.topo_node_list)

    def counts(self) -> str:
        """What a host variable runs on, in words: "2 IPs, 1 dynamic group, 1 topology node"."""
        parts = [
            _count(len(self.ip_list), "IP", "IPs"),
            _count(len(self.host_id_list), "host by ID", "hosts by ID"),
            _count(len(self.dynamic_group_id_list), "dynamic group", "dynamic groups"),
            _count(len(self.topo_node_list), "topology node", "topology nodes"),
        ]
        return ", ".join(p for p in parts if p) or "no hosts"

    def wire(self) -> dict[str, Any]:
        """v2's `target_server`, which has no host IDs (EsbServerDTO): bot.variables never lets one through."""
        if self.host_id_list:
            raise ValueError("ESB v2's execute_job cannot name hosts by host ID")
        return self.model_dump(exclude_defaults=True, exclude={"host_id_list"})


def _count(n: int, one: str, many: str) -> str:
    return "" if n == 0 else f"{n} {one if n == 1 else many}"


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
    permission: dict[str, Any] | None = None


class ExecuteJobData(_Wire):
    job_instance_id: InstanceId
    job_instance_name: str = ""


class PlanIp(_Wire):
    """A default host: `ip` is null for an IPv6-only host, which has its `ipv6` and `bk_host_id` (EsbIpDTO)."""

    bk_host_id: int | None = None
    bk_cloud_id: int = 0
    ip: str | None = None
    ipv6: str | None = None


class PlanVariable(_Wire):
    """A `get_job_detail` `global_vars[]` item (v2 code: `category` is the type code).

    A host default's topology nodes come from v3's `server.topo_node_list`, or from v2's `value` JSON.
    """

    id: int | None = None
    name: str
    category: int = VariableType.STRING
    value: str | None = None
    description: str | None = None
    ip_list: list[PlanIp] | None = None
    custom_query_id: list[str] | None = None
    topo_node_list: list[TopoNode] | None = None
    value_hidden: bool = False
    """BK-JOB masked the value (v3 passwords): it may or may not be set."""

    @model_validator(mode="before")
    @classmethod
    def _host_default_from_value(cls, data: Any) -> Any:
        """v2 gives a host default whole only in `value`, JOB's TaskTargetDTO JSON (`ip_list` and
        `custom_query_id` are derived from it, without the topology nodes): read the targets from there."""
        if not isinstance(data, dict) or data.get("category") != VariableType.HOST_LIST:
            return data
        target = _task_target(data.get("value"))
        if target is None:
            return data
        hosts, groups, nodes = target
        return {
            **data,
            "value": None,
            "ip_list": hosts or data.get("ip_list"),
            "custom_query_id": groups or data.get("custom_query_id"),
            "topo_node_list": nodes or data.get("topo_node_list"),
        }

    @field_validator("value")
    @classmethod
    def _mask_password(cls, value: str | None, info: ValidationInfo) -> str | None:
        """v2 returns a password's default in clear; the bot only needs to know whether one is set."""
        if info.data.get("category") == VariableType.PASSWORD and value:
            return PASSWORD_PLACEHOLDER
        return value

    def password_state(self) -> str:
        """What a person may know of a password default: v2 says whether one is set, v3 hides even that."""
        if self.value_hidden:
            return "set (hidden)"
        return "set" if self.value else "not set"

    @property
    def is_password(self) -> bool:
        return self.category == VariableType.PASSWORD

    @property
    def is_host(self) -> bool:
        return self.category == VariableType.HOST_LIST

    def default_targets(self) -> TargetServer:
        """The plan's default targets: hosts, dynamic groups and topology nodes."""
        hosts = self.ip_list or []
        return TargetServer(
            ip_list=[IpEntry(bk_cloud_id=h.bk_cloud_id, ip=h.ip) for h in hosts if h.ip],
            host_id_list=[HostId(bk_host_id=h.bk_host_id, ipv6=h.ipv6) for h in hosts if not h.ip and h.bk_host_id],
            dynamic_group_id_list=list(self.custom_query_id or []),
            topo_node_list=list(self.topo_node_list or []),
        )

    def host_ids(self) -> dict[tuple[int, str], int]:
        """(cloud area, IPv4) -> host ID of the default's hosts that have both."""
        return {(h.bk_cloud_id, h.ip): h.bk_host_id for h in self.ip_list or [] if h.ip and h.bk_host_id}


def _task_target(value: Any) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]] | None:
    """(hosts, dynamic group IDs, topology nodes) of a TaskTargetDTO JSON, or None when `value` is not one.

    The shape is JOB's (`manage/.../model/dto/task/TaskTargetDTO.java`, `TaskHostNodeDTO.java`):
    `{"hostNodeList": {"hostList": [{"hostId", "ip", "ipv6", "cloudAreaId"}], "dynamicGroupId": ["<id>"],
    "nodeInfoList": [{"id", "type"}]}}`; a group ID may carry a historical `<appId>:` prefix, which JOB strips.
    """
    if not isinstance(value, str) or not value.strip().startswith("{"):
        return None
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        return None
    node = parsed.get("hostNodeList") if isinstance(parsed, dict) else None
    if not isinstance(node, dict):
        return None
    hosts = [
        {
            "bk_host_id": h.get("hostId"),
            "bk_cloud_id": h.get("cloudAreaId") or 0,
            "ip": h.get("ip"),
            "ipv6": h.get("ipv6"),
        }
        for h in node.get("hostList") or []
        if isinstance(h, dict)
    ]
    groups: list[str] = []
    for group in [*(node.get("dynamicGroupId") or []), *(node.get("dynamicGroupList") or [])]:
        group_id = group.get("id") if isinstance(group, dict) else group
        if isinstance(group_id, str) and group_id:
            groups.append(group_id.split(":")[-1] if group_id.count(":") == 1 else group_id)
    nodes = [
        {"id": n.get("id"), "node_type": n.get("type") or n.get("node_type")}
        for n in node.get("nodeInfoList") or []
        if isinstance(n, dict)
    ]
    return hosts, groups, nodes


class PlanStep(_Wire):
    """A plan step, for what a manual confirmation (status 7) asks and of whom. v2's `type` of a script step is
    its script source (3: a public script), so a confirmation is told apart by having no script or file; v2
    names no confirmers (only v3's `approval_info` does), and BK-JOB itself checks them (1244016)."""

    step_id: int | None = None
    """v2's plan step ID, which v2's step instances carry too (v3 has neither)."""
    name: str | None = None
    type: int | None = None
    confirm_message: str | None = None
    confirm_users: list[str] | None = None
    confirm_roles: list[str] | None = None
    script_id: int | None = None
    script_content: str | None = None
    file_source: list[Any] | None = None

    @property
    def is_confirmation(self) -> bool:
        return self.type == 3 and self.script_id is None and not self.script_content and self.file_source is None


class JobDetail(_Wire):
    """`get_job_detail` data: the plan with its global variables and (enabled) steps."""

    bk_biz_id: int | None = None
    bk_job_id: int
    name: str
    global_vars: list[PlanVariable] | None = None
    # Read only to tell whether the plan changed since an approval was requested (its version, see approvals).
    last_modify_time: str | int | None = None
    steps: list[dict[str, Any]] | None = None

    @property
    def variables(self) -> list[PlanVariable]:
        return list(self.global_vars or [])

    def plan_steps(self) -> list[PlanStep]:
        """The steps as run control reads them: v2's step items, or v3's with their `approval_info`."""
        return [plan_step(raw) for raw in self.steps or [] if isinstance(raw, dict)]


def plan_step(raw: dict[str, Any]) -> PlanStep:
    """One plan step in either wire shape. v3's `approval_info` is EsbApprovalStepV3DTO, whose fields carry no
    @JsonProperty and so go out in camelCase (snake_case is read too); its `approvalUser` is snake_case."""
    approval = raw.get("approval_info")
    try:
        if not isinstance(approval, dict):
            return PlanStep.model_validate(raw)
        user = approval.get("approvalUser") or approval.get("approval_user") or {}
        return PlanStep(
            name=raw.get("name"),
            type=raw.get("type"),
            confirm_message=approval.get("approvalMessage") or approval.get("approval_message"),
            confirm_users=user.get("user_list") if isinstance(user, dict) else None,
            confirm_roles=user.get("role_list") if isinstance(user, dict) else None,
        )
    except ValidationError:
        return PlanStep(name=raw.get("name") if isinstance(raw.get("name"), str) else None)


class StepIpStatus(_Wire):
    ip: str | None = None
    bk_cloud_id: int | None = None
    status: int
    # Only v3 answers these here (`step_ip_result_list`); v2 gives them with the logs (bot.bkjob.hostlogs).
    bk_host_id: int | None = None
    exit_code: int | None = None
    error_code: int | None = None
    tag: str | None = None


class StepInstance(_Wire):
    step_instance_id: int
    step_id: int | None = None
    name: str | None = None
    status: int
    type: int | None = None
    execute_count: int | None = None
    start_time: str | None = None
    end_time: str | None = None
    total_time: float | None = Field(default=None, allow_inf_nan=False)
    step_ip_status: list[StepIpStatus] | None = None

    def host_counts(self) -> tuple[int, int]:
        """(hosts that succeeded, hosts in all): per-host 9 (success) and 3 (succeeded in an earlier run of a
        retried step) are successes in JOB's `ExecuteObjectTaskStatusEnum.isSuccess`."""
        hosts = self.step_ip_status or []
        return sum(1 for h in hosts if h.status in HOST_SUCCESS), len(hosts)


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

    def started_at(self) -> float | None:
        """`start_time` as epoch seconds when it carries its zone (v3's, converted; v2's documented `+0800`);
        v2's code sends server-local time without one, which cannot be placed, so None."""
        if not self.start_time:
            return None
        try:
            return datetime.strptime(self.start_time, "%Y-%m-%d %H:%M:%S %z").timestamp()
        except ValueError:
            return None


class JobInstanceStatus(_Wire):
    """`get_job_instance_status` (v2) data."""

    is_finished: bool
    job_instance: JobInstance
    blocks: list[StatusBlock] | None = None

    @property
    def steps(self) -> list[StepInstance]:
        return [step for block in self.blocks or [] for step in block.step_instances]

    def result_key(self) -> str:
        """Which finish this is. A job revived in BK-JOB's UI finishes again: after "retry" a step's
        `execute_count` is higher, after "ignore error" or "skip" a step is in 6 or 5 and a later one has run; so
        a finish after a revival is keyed by every step's status and run count, which a repeated read or callback
        of the same finish reproduces. A plain first run keeps the bare status as its key."""
        status = str(self.job_instance.status)
        revived = any((step.execute_count or 0) > 0 or step.status in _REVIVED_STEP for step in self.steps)
        if not revived:
            return status
        runs = ",".join(f"{step.status}.{step.execute_count or 0}" for step in self.steps)
        return f"{status}:{runs}"


class InstanceSummary(_Wire):
    """One `get_job_instance_list` (jobv3) row; times are epoch milliseconds.

    JOB names the instance `job_instance_id` (EsbTaskInstanceV3DTO); the published doc says `id`: both are read.
    """

    job_instance_id: InstanceId = Field(validation_alias=AliasChoices("job_instance_id", "id"))
    job_plan_id: int | None = None
    name: str | None = None
    operator: str | None = None
    create_time: int | None = None
    status: int | None = None
    launch_mode: int | None = None


class InstanceList(_Wire):
    data: list[InstanceSummary] | None = None
    total: int | None = None


class PlanSummary(_Wire):
    """One row of a plan list: enough to offer the plan by name (v2 `get_job_list` row shape)."""

    bk_job_id: InstanceId
    name: str = ""


class PlanPage(_Wire):
    """One page of a plan search; `total` only where BK-JOB counts (v3), v2 answers a bare list."""

    plans: list[PlanSummary] = Field(default_factory=list)
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


class _PermissionInstance(_Wire):
    id: str | None = None
    type: str | None = None
    type_name: str | None = None
    name: str | None = None


class _PermissionResourceType(_Wire):
    type: str | None = None
    type_name: str | None = None
    instances: list[list[_PermissionInstance]] | None = None


class _PermissionAction(_Wire):
    id: str
    name: str | None = None
    related_resource_types: list[_PermissionResourceType] | None = None


class Permission(_Wire):
    """The `permission` object JOB attaches to 9900403 (OpenApiApplyPermissionDTO): what to apply for in IAM.

    JOB's DTO has no apply URL; `apply_url` is read should a gateway or a later JOB add one.
    """

    system_id: str | None = None
    system_name: str | None = None
    actions: list[_PermissionAction] | None = None
    apply_url: str | None = None

    def missing(self) -> list[str]:
        """One line per missing action: its name and ID, and the resources it is needed on (the last element of
        each instance path, e.g. the plan of `biz → job_plan`)."""
        lines = []
        for action in self.actions or []:
            label = f"{action.name} ({action.id})" if action.name else action.id
            resources = []
            for rtype in action.related_resource_types or []:
                for path in rtype.instances or []:
                    if not path:
                        continue
                    leaf = path[-1]
                    kind = leaf.type_name or leaf.type or rtype.type_name or rtype.type or "resource"
                    shown = f"{leaf.name} ({leaf.id})" if leaf.name else str(leaf.id)
                    resources.append(f"{kind} {shown}")
            lines.append(label + (" on " + ", ".join(resources) if resources else ""))
        return lines
