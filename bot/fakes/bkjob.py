"""A fake BK-JOB on a loopback port, callbacks included: behind the ESB v2 (`/api/c/compapi/v2/job/<api>/`) or,
with `api_version="v3"`, behind the API gateway (`/api/bk-job/prod/api/v3/<api>`)."""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from bot.fakes.server import FakeServer

__all__ = ["BkRequest", "CallbackAttempt", "FakeBkJob", "HostOutcome", "Instance", "StepInstance", "file_log"]

JsonDict = dict[str, Any]

# RunStatusEnum.FINISHED_STATUS_SET (docs/bkjob.md §status).
FINISHED_STATUSES = frozenset({3, 4, 5, 6, 8, 9, 11, 13, 14})
# JobListener.finishJob runs (and so the callback fires) only for these (docs/bkjob.md §callback).
CALLBACK_STATUSES = frozenset({3, 4, 9, 11, 14})
JSON_CONTENT_TYPE = "application/json"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_JOBV3_APIS = frozenset(  # served by the ESB under `jobv3` (docs/apidoc/esb/jobv3-confapis)
    {"get_job_instance_list", "batch_get_job_instance_ip_log"}
)
_GET_APIS = frozenset({"get_job_detail", "get_job_instance_status", "get_job_list", "get_job_instance_log"})
# The gateway's stage root, as a site's BK_API_URL names it (docs/bkjob.md §endpoints).
APIGW_STAGE_PATH = "/api/bk-job/prod"
# APIGW v3 resources and their only method (support-files/bk-api-gateway/v3/resources.yaml).
_V3_METHODS = {
    "operate_job_instance": "POST",
    "operate_step_instance": "POST",
    "execute_job_plan": "POST",
    "get_job_plan_detail": "GET",
    "get_job_instance_status": "GET",
    "get_job_instance_list": "GET",
    "get_job_plan_list": "GET",
    "get_job_instance_ip_log": "GET",
    "batch_get_job_instance_ip_log": "POST",
}
# v3 names of the v2 APIs: tests record, wait for and inject failures by either name, so one test serves both.
_V2_NAMES = {
    "execute_job_plan": "execute_job",
    "get_job_plan_detail": "get_job_detail",
    "get_job_plan_list": "get_job_list",
}
# A handler whose answer's `data` is a JSON array (v2 get_job_list) returns `{_BARE_LIST: [...]}`.
_BARE_LIST = "__bare_list__"
_MAX_HISTORY_MS = 30 * 24 * 60 * 60 * 1000  # Consts.MAX_SEARCH_TASK_HISTORY_RANGE_MILLS
_IPV4 = re.compile(r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$")

# (zh, en) texts of JOB's message_*.properties for the codes the fake produces (docs/bkjob.md §language).
_MESSAGES: dict[str, tuple[str, str]] = {
    "bad_request": ("错误的请求", "Bad Request"),
    "bad_biz": ("非法的业务 ID", "Invalid bk_biz_id"),
    "bad_scope_type": ("非法的资源范围类型", "Invalid bk_scope_type"),
    "bad_callback": (
        "回调地址不合法或不在允许列表中，请联系平台管理员添加",
        "Callback url is invalid or not in the allowed list, please contact the platform administrator to add it",
    ),
    "no_biz": ("业务/业务集不存在或已被归档", "Business/Business Set not exist or archived"),
    "invalid_param": ("请求参数[{0}]不合法", "Invalid request parameter [{0}]"),
    "missing_param": ("请求参数[{0}]缺失或不合法", "Missing or invalid request parameter [{0}]"),
    "illegal_param": ("请求参数不合法", "Invalid request parameters"),
    "bad_length": ("单次返回最大记录数量length必须在 1-1000 之间", "The param 'length' must be in range: [1,1000]"),
    "no_plan": ("执行方案不存在", "Job plan does not exist"),
    "bad_var_id": ("非法的全局变量 ID", "Invalid id of globalVar"),
    "bad_ip": ("IP 非法", "Invalid IP"),
    "bad_cloud": ("管控区域 ID 非法", "Invalid BK-Net"),
    "no_instance": ("作业实例不存在", "Task instance does not exist"),
    "unsupported_operation": ("不支持的操作", "Unsupported operation"),
    "not_confirmer": ("只有步骤的确认人才能操作", "Only the confirmer of the step can operate"),
    "no_step": ("作业步骤实例不存在", "Task step instance does not exist"),  # message_*.properties 1244007
    "no_permission": (
        "用户({0})权限不足，请前往权限中心确认并申请补充后重试",
        "User ({0}) permission not allowed, please confirm and apply permission in IAM and try again",
    ),
}


def _scope(biz: int) -> dict[str, str]:
    """IDs 8000000–9999999 are business sets (EsbAppScopeReq; docs/bkjob.md §scope)."""
    return {"bk_scope_type": "biz_set" if 8_000_000 <= biz <= 9_999_999 else "biz", "bk_scope_id": str(biz)}


def _fmt_time(epoch: float | None) -> str | None:
    """JOB v2 times: `yyyy-MM-dd HH:mm:ss` in the server's zone, no offset."""
    return None if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _total_time(start: float | None, end: float | None) -> float | None:
    """Set when the job or step ends; null while it runs (docs/bkjob.md §instance-status)."""
    if start is None or end is None:
        return None
    return round(end - start, 3)


def _hex() -> str:
    return uuid.uuid4().hex


def _ms(epoch: float | None) -> int | None:
    """v3 times: epoch milliseconds."""
    return None if epoch is None else int(epoch * 1000)


def _canonical(api: str) -> str:
    return _V2_NAMES.get(api, api)


@dataclass(frozen=True)
class BkRequest:
    """One HTTP request as received, before any auth or validation; `body` is the query of a GET.

    `api` is the name on the wire (`execute_job_plan` through v3); `requests("execute_job")` finds either.
    """

    api: str
    method: str
    headers: Mapping[str, str]
    body: JsonDict
    version: str = "v2"
    path: str = ""


@dataclass(frozen=True)
class CallbackAttempt:
    """One POST the fake made to a `bk_callback_url`; `status` is None when the transport failed."""

    job_instance_id: int
    url: str
    content_type: str
    body: bytes
    status: int | None
    error: str | None = None


@dataclass
class StepInstance:
    step_instance_id: int
    step_id: int
    name: str
    type: int
    status: int
    hosts: list[JsonDict]
    execute_count: int = 0
    create_time: float = field(default_factory=time.time)
    start_time: float | None = None
    end_time: float | None = None
    # execute_count -> host address -> what the host did in that attempt (set by tests and the demo).
    outcomes: dict[int, dict[str, HostOutcome]] = field(default_factory=dict)
    # A manual-confirmation step's confirmers, as the plan names them (TaskApprovalStepDTO.approvalUser).
    confirm_users: list[str] = field(default_factory=list)
    confirm_roles: list[str] = field(default_factory=list)
    # A rolling step (the plan's rolling config): in manual mode it waits in 7 between batches for "continue
    # rolling" (13), which is no manual confirmation (its type is 1 or 2).
    rolling: bool = False


@dataclass
class Instance:
    """A job instance started by execute_job; tests inspect and drive it."""

    job_instance_id: int
    bk_biz_id: int
    bk_job_id: int
    name: str
    operator: str
    request: JsonDict
    headers: Mapping[str, str]
    status: int
    steps: list[StepInstance]
    callback_url: str | None
    # Plan variable name -> final value: a string for value variables, a target dict
    # `{ip_list, dynamic_group_id_list, topo_node_list}` (or None) for host variables.
    resolved_vars: dict[str, Any]
    create_time: float = field(default_factory=time.time)
    start_time: float | None = None
    end_time: float | None = None
    callbacks: list[CallbackAttempt] = field(default_factory=list)
    launch_mode: int = 2  # TaskStartupModeEnum: 1 web, 2 API, 3 cron

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def callback_body(self) -> JsonDict:
        """The JobCallbackDTO body: every step, run or not (docs/bkjob.md §callback)."""
        return {
            "job_instance_id": self.job_instance_id,
            "status": self.status,
            "step_instances": [{"step_instance_id": s.step_instance_id, "status": s.status} for s in self.steps],
        }


@dataclass
class _Plan:
    bk_biz_id: int
    bk_job_id: int
    name: str
    global_vars: list[JsonDict]
    steps: list[JsonDict]
    creator: str = "admin"
    create_time: float = field(default_factory=time.time)
    template_missing: bool = False  # its template was deleted: listed in no page, yet counted and paged over


@dataclass
class _Injection:
    times: int
    kind: str  # "fail" | "http_error" | "garbage" | "delay" | "gateway"
    code: int = 0
    message: str = ""
    status: int = 200
    body: bytes = b""
    seconds: float = 0.0
    code_name: str = ""


class _JobError(Exception):
    """A JOB business error; rendered as an HTTP 200 `result:false` envelope in the caller's language."""

    def __init__(self, code: int, key: str, *args: object, permission: JsonDict | None = None) -> None:
        super().__init__(code, key)
        self.code = code
        self.key = key
        self.args_ = args
        self.permission = permission

    def message(self, english: bool) -> str:
        return _MESSAGES[self.key][1 if english else 0].format(*self.args_)


def _as_int(value: Any) -> int | None:
    """Jackson's coercion to long: ints and digit strings; anything else is a bad request."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise _JobError(1240003, "bad_request")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _JobError(1240003, "bad_request")


def _valid_callback_url(url: str) -> bool:
    """@ValidCallbackUrl with the whitelist off: http(s), a host, no userinfo."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc


# -- per-host outcomes and logs (get_job_instance_log v2; get_job_instance_ip_log and
# batch_get_job_instance_ip_log v3, also through the ESB's `jobv3`) ----------------------------------------------


@dataclass
class HostOutcome:
    """How one host ends in one attempt of a step, and what it printed.

    `log` may be bytes that are not UTF-8: they go out as raw bytes in the answer, as a proxy or an old JOB
    would pass them on. `files` are v3 `file_logs[]` items for a file step (`src_ip`, `src_path`, `dest_ip`,
    `dest_path`, `status` 4 finished / 5 failed, `log_content`).
    """

    status: int
    exit_code: int | None = None
    error_code: int = 0
    tag: str = ""
    log: str | bytes = ""
    files: list[JsonDict] = field(default_factory=list)

    def text(self) -> str:
        """Bytes that are not UTF-8 are kept as lone surrogates, turned back into raw bytes on the wire."""
        return self.log.decode("utf-8", "surrogateescape") if isinstance(self.log, bytes) else self.log


def file_log(src: str, src_path: str, dest: str, dest_path: str, *, failed: bool = True, detail: str = "") -> JsonDict:
    """A v3 `file_logs[]` item (EsbFileLogV3DTO), its `log_content` as FileResultHandleTask words it."""
    status = 5 if failed else 4
    words = "Failed" if failed else "Finished"
    content = f"FileName: {src_path} FileSize: 1.0 KB Status: {status} StatusDesc: {words}"
    if detail:
        content += f" Detail: {detail}"
    return {
        "mode": 1,
        "src_ip": {"bk_cloud_id": 0, "ip": src},
        "src_path": src_path,
        "dest_ip": {"bk_cloud_id": 0, "ip": dest},
        "dest_path": dest_path,
        "status": status,
        "log_content": f"[{_fmt_time(time.time())}] {content}\n",
        "size": "1.0 KB",
        "speed": "0 KB/s",
        "process": "100%" if not failed else "0%",
    }


def _address(host: Mapping[str, Any]) -> str:
    cloud = host.get("bk_cloud_id") or 0
    return str(host.get("ip")) if cloud == 0 else f"{cloud}:{host.get('ip')}"


def _outcome(step: StepInstance, host: Mapping[str, Any]) -> HostOutcome | None:
    return step.outcomes.get(step.execute_count, {}).get(_address(host))


def _host_codes_v3(step: StepInstance, host: Mapping[str, Any]) -> JsonDict:
    """`step_ip_result_list[]`'s status, codes and tag for a host whose outcome a test set."""
    outcome = _outcome(step, host)
    if outcome is None:
        return {}
    return {
        "status": outcome.status,
        "exit_code": outcome.exit_code,
        "error_code": outcome.error_code,
        "tag": outcome.tag,
    }


def _file_text(outcome: HostOutcome) -> str:
    """v2 gives a file step's log as FileExecuteObjectLogContent.getContent(): the file logs' texts joined."""
    return outcome.text() + "".join(str(f.get("log_content") or "") for f in outcome.files)


# Raw bytes in log answers: lone surrogates from `HostOutcome.text` are JSON-escaped as \udcXX; put the bytes back.
_ESCAPED_BYTE = re.compile(rb"\\udc([89a-f][0-9a-f])")
_LOG_APIS = frozenset({"get_job_instance_log", "get_job_instance_ip_log", "batch_get_job_instance_ip_log"})


@web.middleware
async def _raw_log_bytes(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    if request.match_info.get("api") in _LOG_APIS and isinstance(response, web.Response) and response.body:
        body = response.body if isinstance(response.body, bytes) else b""
        if body and b"\\udc" in body:
            response.body = _ESCAPED_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]), body)
    return response


class _HostLogs:
    """The log APIs' handlers, mixed into FakeBkJob (registered in its `_apis` / `_apis_v3` tables)."""

    instances: dict[int, Instance]
    _biz_id: Callable[[Mapping[str, Any]], int]
    _check_biz: Callable[[int], None]

    def set_host_outcomes(
        self, instance_id: int, step_index: int, outcomes: Mapping[str, HostOutcome], *, attempt: int | None = None
    ) -> None:
        """What the hosts (by `ip` or `cloud:ip`) of one step did in one attempt (default: the current one).

        Hosts without an outcome keep the status the step's status implies and log nothing.
        """
        step = self.instances[instance_id].steps[step_index]
        step.outcomes.setdefault(step.execute_count if attempt is None else attempt, {}).update(outcomes)

    def _named_instance(self, params: JsonDict) -> Instance:
        """The instance a log or run-control call names, checked as JOB does: 1241007 for a bad ID, 1244006 for one
        that does not exist in this business."""
        biz = self._biz_id(params)
        self._check_biz(biz)
        instance_id = _as_int(params.get("job_instance_id"))
        if instance_id is None or instance_id < 1:
            raise _JobError(1241007, "missing_param", "job_instance_id")
        inst = self.instances.get(instance_id)
        if inst is None or inst.bk_biz_id != biz:
            raise _JobError(1244006, "no_instance")
        return inst

    def _get_job_instance_log(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        """v2: every step, hosts grouped by (ip_status, tag), the current attempt's logs HTML-encoded
        (EsbGetJobInstanceLogResourceImpl, Utils.htmlEncode); `data` is a bare list (see _BARE_LIST)."""
        inst = self._named_instance(params)
        steps: list[JsonDict] = []
        for step in inst.steps:
            groups: dict[tuple[int, str], list[JsonDict]] = {}
            if step.status != 1 and step.type in (1, 2):
                for host in step.hosts:
                    outcome = _outcome(step, host) or HostOutcome(status=_host_status(step, host))
                    text = _file_text(outcome) if step.type == 2 else outcome.text()
                    groups.setdefault((outcome.status, outcome.tag), []).append(
                        {
                            "start_time": _fmt_time(step.start_time),
                            "end_time": _fmt_time(step.end_time),
                            "total_time": _total_time(step.start_time, step.end_time),
                            "execute_count": step.execute_count,
                            "error_code": outcome.error_code,
                            "exit_code": outcome.exit_code if outcome.exit_code is not None else 0,
                            "log_content": html.escape(text),
                            "bk_cloud_id": host.get("bk_cloud_id", 0),
                            "ip": host.get("ip"),
                        }
                    )
            steps.append(
                {
                    "is_finished": step.status in FINISHED_STATUSES,
                    "step_instance_id": step.step_instance_id,
                    "name": step.name,
                    "status": step.status,
                    "step_results": [
                        {"ip_status": ip_status, "tag": tag, "ip_logs": logs}
                        for (ip_status, tag), logs in groups.items()
                    ],
                }
            )
        return {_BARE_LIST: steps}

    def _step_for_log(self, params: JsonDict) -> tuple[Instance, StepInstance]:
        inst = self._named_instance(params)
        step_id = _as_int(params.get("step_instance_id"))
        if step_id is None or step_id < 1:
            raise _JobError(1240003, "bad_request")
        step = next((s for s in inst.steps if s.step_instance_id == step_id), None)
        if step is None:
            raise _JobError(1244006, "no_instance")
        return inst, step

    def _host_log_v3(self, step: StepInstance, host: Mapping[str, Any]) -> JsonDict:
        outcome = _outcome(step, host) or HostOutcome(status=_host_status(step, host))
        where = {"bk_host_id": host.get("bk_host_id"), "bk_cloud_id": host.get("bk_cloud_id", 0), "ip": host.get("ip")}
        if step.type == 2:
            return {**where, "file_logs": list(outcome.files)}
        return {"host_id": host.get("bk_host_id"), **where, "ipv6": None, "log_content": outcome.text()}

    def _batch_get_job_instance_ip_log(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        """At most 500 hosts by `host_id_list` or `ip_list`, the current attempt (docs/bkjob.md §logs)."""
        host_ids = params.get("host_id_list") or []
        ips = params.get("ip_list") or []
        if not isinstance(host_ids, list) or not isinstance(ips, list):
            raise _JobError(1240003, "bad_request")
        asked = len(host_ids) if host_ids else len(ips)
        if asked == 0 or asked > 500:
            raise _JobError(1241007, "missing_param", "host_id_list/ip_list")
        inst, step = self._step_for_log(params)
        if host_ids:
            wanted = [h for h in step.hosts if h.get("bk_host_id") in host_ids]
        else:
            keys = {_address(ip) for ip in ips if isinstance(ip, dict)}
            wanted = [h for h in step.hosts if _address(h) in keys]
        logs = [self._host_log_v3(step, h) for h in wanted]
        file_step = step.type == 2
        return {
            "job_instance_id": inst.job_instance_id,
            "step_instance_id": step.step_instance_id,
            "log_type": 2 if file_step else 1,
            "script_task_logs": None if file_step else logs,
            "file_task_logs": logs if file_step else None,
        }

    def _get_job_instance_ip_log(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        """One host by `bk_host_id`, or `bk_cloud_id` + `ip` (EsbGetJobInstanceIpLogV3Request)."""
        _, step = self._step_for_log(params)
        host_id = _as_int(params.get("bk_host_id"))
        cloud = _as_int(params.get("bk_cloud_id")) or 0
        ip = params.get("ip")
        host = next(
            (
                h
                for h in step.hosts
                if (host_id is not None and h.get("bk_host_id") == host_id)
                or (ip and h.get("ip") == ip and (h.get("bk_cloud_id") or 0) == cloud)
            ),
            None,
        )
        if host is None:
            return {"log_type": 2 if step.type == 2 else 1, "bk_host_id": host_id, "bk_cloud_id": cloud, "ip": ip}
        return {"log_type": 2 if step.type == 2 else 1, **self._host_log_v3(step, host)}


class FakeBkJob(FakeServer, _HostLogs):
    """execute_job, get_job_detail and get_job_instance_status as the ESB + JOB answer them, or with
    `api_version="v3"` execute_job_plan, get_job_plan_detail, get_job_instance_status and get_job_instance_list
    as the API gateway + JOB answer them (only the chosen version's paths are served).

    Instances only move when a test says so (`finish`), which then delivers the completion callback with
    JOB's exact retry rule, so the bot's callback route and its status polling can both be exercised. Plans,
    instances and the test controls are the same for both versions; failures can be injected by either name.
    """

    def __init__(
        self,
        *,
        app_code: str = "bkjob-bot",
        app_secret: str = "s3cret",
        api_version: Literal["v2", "v3"] = "v2",
        skip_user_auth: bool = False,
    ) -> None:
        super().__init__()
        self.app_code = app_code
        self.app_secret = app_secret
        self.api_version = api_version
        # Whether the app is on the ESB's (or an old gateway's) skip-user-auth list, the only way a bare
        # `bk_username` is believed; new gateways have retired the list (docs/bkjob.md §auth).
        self.skip_user_auth = skip_user_auth
        self.businesses: set[int] = set()
        self.plans: dict[tuple[int, int], _Plan] = {}
        self.instances: dict[int, Instance] = {}
        self.callbacks: list[CallbackAttempt] = []
        self.denied: dict[str, set[str]] = defaultdict(set)  # IAM action -> users without it
        self._requests: list[BkRequest] = []
        self._injections: dict[str, list[_Injection]] = defaultdict(list)
        self._delays: dict[str, list[_Injection]] = defaultdict(list)
        self._lost: dict[str, int] = {}
        self._fail_after: dict[str, list[tuple[int, str]]] = defaultdict(list)
        # Run control: members of JOB roles a confirmation step may name (besides the trigger user), and whether a
        # stop stays in 10 (STOPPING) until `complete_stop` (otherwise it completes at once, after the answer).
        self.role_members: dict[str, set[str]] = defaultdict(set)
        self.hold_stops = False
        self._stopping: set[asyncio.Task[Any]] = set()
        self._instance_ids = itertools.count(10000)
        self._step_instance_ids = itertools.count(50000)
        self._ids = itertools.count(1000)
        self._changed = asyncio.Condition()
        self._request_observers: list[Callable[[BkRequest], None]] = []
        self._instance_observers: list[Callable[[Instance], None]] = []
        self._closing = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _application(self) -> web.Application:
        app = web.Application(middlewares=[_raw_log_bytes])
        if self.api_version == "v3":
            app.router.add_route("*", APIGW_STAGE_PATH + "/api/v3/{api}", self._handle_v3)
            # The app-state copy of every resource: the user comes from `X-Bk-Username` (resources.yaml).
            app.router.add_route("*", APIGW_STAGE_PATH + "/api/v3/system/{api}", self._handle_v3)
        else:
            app.router.add_route("*", "/api/c/compapi/v2/job/{api}/", self._handle)
            # BK-JOB's v3 components through the ESB (only what the bot uses: get_job_instance_list).
            app.router.add_route("*", "/api/c/compapi/v2/jobv3/{api}/", self._handle)
        return app

    async def start(self) -> None:
        await super().start()
        # JOB's HttpConPoolUtil: 15 s connect and read time-outs, no automatic retries.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(connect=15, sock_read=15))

    async def close(self) -> None:
        self._closing.set()  # wakes handlers parked in delay_next so shutdown does not wait on them
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().close()

    @property
    def base_url(self) -> str:
        """What BK_API_URL names: the ESB root, or for v3 the gateway's stage root (it has a path)."""
        return self.origin + APIGW_STAGE_PATH if self.api_version == "v3" else self.origin

    def url(self, api: str, *, app_state: bool = True) -> str:
        """v3: the app-state resource (`/api/v3/system/<api>`) unless `app_state=False`."""
        if self.api_version == "v3":
            return f"{self.base_url}/api/v3/{'system/' if app_state else ''}{api}"
        return f"{self.base_url}/api/c/compapi/v2/job/{api}/"

    # -- data setup --------------------------------------------------------------------------------------

    def add_business(self, bk_biz_id: int) -> None:
        self.businesses.add(bk_biz_id)

    def add_plan(
        self,
        bk_biz_id: int,
        bk_job_id: int,
        name: str,
        global_vars: Sequence[Mapping[str, Any]] = (),
        steps: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Register a plan (and its business); variables and steps are in get_job_detail's v2 shape.

        Missing keys get JOB's defaults. A step may carry `execute_type` (1 script, 2 file, 3 confirm) for
        get_job_instance_status, because get_job_detail's `type` of a script step is its script source.
        """
        self.businesses.add(bk_biz_id)
        if steps is None:
            steps = [{"name": "step 1"}, {"name": "step 2"}]
        self.plans[(bk_biz_id, bk_job_id)] = _Plan(
            bk_biz_id=bk_biz_id,
            bk_job_id=bk_job_id,
            name=name,
            global_vars=[self._normalise_var(v) for v in global_vars],
            steps=[self._normalise_step(i, s) for i, s in enumerate(steps, start=1)],
        )

    def lose_template(self, bk_biz_id: int, bk_job_id: int) -> None:
        """The plan's template is gone (deleted under it): the plan lists still count it and page over it, then
        drop its row after the page is cut (TaskPlanServiceImpl.fillTemplateInfo), so a page comes back short
        before the end of the list."""
        self.plans[(bk_biz_id, bk_job_id)].template_missing = True

    def deny_user(self, username: str, action: str = "launch_job_plan") -> None:
        """`username` lacks an IAM action, so the API that needs it answers 9900403 with the apply payload:
        `launch_job_plan` (execute_job), `view_job_plan` (plan detail), `view_history` (instance status),
        `access_business` (the plan lists)."""
        if action not in _ACTIONS:
            raise ValueError(f"unknown IAM action {action!r}; known: {sorted(_ACTIONS)}")
        self.denied[action].add(username)

    def _check_permission(self, action: str, operator: str, biz: int, plan: _Plan | None = None) -> None:
        if operator in self.denied[action]:
            raise _JobError(9900403, "no_permission", operator, permission=_permission(action, biz, plan))

    def _normalise_var(self, var: Mapping[str, Any]) -> JsonDict:
        out: JsonDict = {
            "id": next(self._ids),
            "name": "",
            "category": 1,
            "value": "",
            "description": "",
            "ip_list": None,
            "custom_query_id": None,
            **var,
        }
        if out["category"] == 3:
            out["ip_list"] = [
                {"bk_host_id": None, "bk_cloud_id": 0, "ip": None, "ipv6": None, **ip} for ip in (out["ip_list"] or [])
            ]
            out["custom_query_id"] = list(out["custom_query_id"] or [])
            out["topo_node_list"] = list(out.get("topo_node_list") or [])
            if "value" not in var:
                out["value"] = _target_json(out)
        else:
            out["ip_list"] = out["custom_query_id"] = None
        return out

    def _normalise_step(self, index: int, step: Mapping[str, Any]) -> JsonDict:
        return {
            "step_id": next(self._ids),
            "name": f"step {index}",
            "type": 1,
            "script_id": None,
            "script_content": "echo hello",
            "script_param": "",
            "script_timeout": 1000,
            "is_param_sensitive": 0,
            "account": "root",
            "account_id": 1,
            "ip_list": [{"bk_host_id": 101, "bk_cloud_id": 0, "ip": "10.0.0.1"}],
            "custom_query_id": None,
            "file_source": None,
            "file_target_path": None,
            "confirm_message": None,
            **step,
        }

    # -- failure injection -------------------------------------------------------------------------------

    # Every injection takes the v2 or the v3 name of an API (`execute_job` or `execute_job_plan`).

    def fail_next(self, api: str, code: int, message: str, times: int = 1) -> None:
        """A JOB business error: HTTP 200 `result: false` with `code` and `message` (v2 and v3 alike)."""
        self._injections[_canonical(api)].append(_Injection(times=times, kind="fail", code=code, message=message))

    def delay_next(self, api: str, seconds: float, times: int = 1) -> None:
        """Hold the answer for `seconds` (then answer normally) to drive the bot's client time-outs."""
        self._delays[_canonical(api)].append(_Injection(times=times, kind="delay", seconds=seconds))

    def http_error_next(self, api: str, status: int = 502, body: str = "Bad Gateway", times: int = 1) -> None:
        self._injections[_canonical(api)].append(
            _Injection(times=times, kind="http_error", status=status, body=body.encode())
        )

    def garbage_next(self, api: str, body: bytes = b"<html>oops</html>", times: int = 1) -> None:
        """HTTP 200 with a body that is not JSON, as a misbehaving proxy would send."""
        self._injections[_canonical(api)].append(_Injection(times=times, kind="garbage", body=body))

    def gateway_error_next(
        self,
        api: str,
        status: int = 429,
        code: int = 1642902,
        code_name: str = "RATE_LIMIT_RESTRICTION",
        message: str = "Request has been throttled",
        times: int = 1,
    ) -> None:
        """v3 only: the API gateway refuses before (4xx) or after (5xx) JOB: `{code_name, code, message}`."""
        self._injections[_canonical(api)].append(
            _Injection(times=times, kind="gateway", status=status, code=code, code_name=code_name, message=message)
        )

    def lose_answer_next(self, api: str, *, times: int = 1) -> None:
        """Do the work (an execute_job starts its instance), then answer 502 (v3: the gateway's 504
        REQUEST_BACKEND_TIMEOUT): the caller cannot know it ran."""
        api = _canonical(api)
        self._lost[api] = self._lost.get(api, 0) + times

    def fail_after_work_next(self, api: str, code: int = 1240002, message: str = "Internal Server Error") -> None:
        """Do the work (an execute_job starts its instance), then answer a JOB error, as JOB's 1240002
        INTERNAL_ERROR can after the instance was created: the caller cannot know it ran."""
        self._fail_after[_canonical(api)].append((code, message))

    def observe(
        self,
        *,
        request: Callable[[BkRequest], None] | None = None,
        instance: Callable[[Instance], None] | None = None,
    ) -> None:
        """Be told of every request as it arrives, and of every instance execute_job starts: the demo
        simulator shows the requests and plays BK-JOB running the instances (tests drive them by hand)."""
        if request is not None:
            self._request_observers.append(request)
        if instance is not None:
            self._instance_observers.append(instance)

    # -- recording and waiting ---------------------------------------------------------------------------

    def requests(self, api: str | None = None) -> list[BkRequest]:
        """Requests to `api` by its v2 or v3 name (`execute_job` finds `execute_job_plan` too), oldest first."""
        return [r for r in self._requests if api is None or _canonical(r.api) == _canonical(api)]

    async def wait_for_request(
        self,
        api: str,
        count: int = 1,
        timeout: float = 60.0,  # noqa: ASYNC109 - an assertion deadline, not a cancellation scope
        predicate: Callable[[BkRequest], bool] | None = None,
    ) -> list[BkRequest]:
        """Wait until `count` requests to `api` match `predicate`; returns all matching so far."""

        def matching() -> list[BkRequest]:
            return [r for r in self.requests(api) if predicate is None or predicate(r)]

        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: len(matching()) >= count)
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {count} {api!r} request(s); seen: {self._requests!r}"
                ) from None
            return matching()

    # -- driving instances -------------------------------------------------------------------------------

    async def finish(
        self,
        instance_id: int,
        status: int = 3,
        step_statuses: Sequence[int] | None = None,
        callback: bool = True,
        host_statuses: Mapping[int, Sequence[int]] | None = None,
    ) -> list[int]:
        """End an instance and deliver its callback like JOB; returns the HTTP statuses of the attempts.

        Default step statuses: all 3 for success; otherwise earlier steps 3, the running step `status`,
        later steps 1 (never run). The callback goes out only for statuses that run JOB's finishJob.
        An empty list means no callback was sent or its first attempt failed in transport (see `callbacks`).
        `host_statuses` gives a step (by index) its per-host statuses; otherwise they follow the step's status,
        except hosts in 3 (succeeded in an earlier run, see `retry_failed_hosts`), which stay so.
        """
        inst = self.instances[instance_id]
        if step_statuses is None:
            step_statuses = self._default_step_statuses(inst, status)
        if len(step_statuses) != len(inst.steps):
            raise ValueError(f"instance {instance_id} has {len(inst.steps)} steps, got {len(step_statuses)}")
        now = time.time()
        for step, step_status in zip(inst.steps, step_statuses, strict=True):
            if step_status != 1 and step.start_time is None:
                step.start_time = now
            step.status = step_status
            if step_status in FINISHED_STATUSES and step.end_time is None:
                step.end_time = now
        for index, step in enumerate(inst.steps):
            explicit = list((host_statuses or {}).get(index, ()))
            for i, host in enumerate(step.hosts):
                if i < len(explicit):
                    host["status"] = explicit[i]
                elif host.get("status") != 3:
                    host.pop("status", None)
        inst.status = status
        if status in FINISHED_STATUSES:
            inst.end_time = now
        if callback and inst.callback_url and status in CALLBACK_STATUSES:
            return await self._deliver_callback(inst)
        return []

    def retry_failed_hosts(self, instance_id: int) -> None:
        """ "Retry failed hosts" in BK-JOB's UI (operate_step_instance code 2) on the failed step: it runs again on
        its failed hosts (`execute_count` goes up, hosts that succeeded show 3, LAST_SUCCESS) and the job is running
        again; the next `finish` calls back once more (docs/bkjob.md §run-control)."""
        inst = self.instances[instance_id]
        self._revive(inst, self._failed_step(inst), 2)

    def ignore_error(self, instance_id: int) -> None:
        """ "Ignore error" in BK-JOB's UI (code 3): the failed step is marked 6 (IGNORE_ERROR) and the job runs on
        from the next step; the next `finish` calls back once more."""
        inst = self.instances[instance_id]
        self._revive(inst, self._failed_step(inst), 3)

    @staticmethod
    def _failed_step(inst: Instance) -> StepInstance:
        step = next((s for s in inst.steps if s.status == 4), None)
        if inst.status != 4 or step is None:
            raise ValueError(f"instance {inst.job_instance_id} (status {inst.status}) has no failed step to revive")
        return step

    async def send_callback(
        self,
        instance_id: int,
        body: bytes | Mapping[str, Any] | None = None,
        content_type: str = JSON_CONTENT_TYPE,
    ) -> int:
        """One raw POST to the instance's callback URL (default body: its current callback), no retry.

        For duplicates and malformed bodies; transport errors propagate.
        """
        inst = self.instances[instance_id]
        if not inst.callback_url:
            raise ValueError(f"instance {instance_id} has no bk_callback_url")
        if body is None:
            body = inst.callback_body()
        raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        attempt = await self._post_callback(inst, raw, content_type)
        if attempt.status is None:
            raise aiohttp.ClientError(attempt.error)
        return attempt.status

    def _default_step_statuses(self, inst: Instance, status: int) -> list[int]:
        if status == 3:
            return [3] * len(inst.steps)
        # The running step (else the first never-run one) ends with `status`; later steps never ran.
        current = next((i for i, s in enumerate(inst.steps) if s.status not in FINISHED_STATUSES | {1}), None)
        if current is None:
            current = next((i for i, s in enumerate(inst.steps) if s.status == 1), len(inst.steps) - 1)
        done = [s.status if s.status in FINISHED_STATUSES else 3 for s in inst.steps[:current]]
        return done + [status] + [1] * (len(inst.steps) - current - 1)

    async def _deliver_callback(self, inst: Instance) -> list[int]:
        """CallbackListener since v3.12.1: JSON once; on a non-200, the same bytes as form once; no retry
        after a transport error."""
        raw = json.dumps(inst.callback_body(), separators=(",", ":")).encode()
        statuses: list[int] = []
        for content_type in (JSON_CONTENT_TYPE, FORM_CONTENT_TYPE):
            attempt = await self._post_callback(inst, raw, content_type)
            if attempt.status is None:
                break
            statuses.append(attempt.status)
            if attempt.status == 200:
                break
        return statuses

    async def _post_callback(self, inst: Instance, raw: bytes, content_type: str) -> CallbackAttempt:
        if self._session is None:
            raise RuntimeError("FakeBkJob is not started")
        assert inst.callback_url is not None
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                inst.callback_url, data=raw, headers={"Content-Type": content_type}, allow_redirects=False
            ) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempt = CallbackAttempt(inst.job_instance_id, inst.callback_url, content_type, raw, status, error)
        inst.callbacks.append(attempt)
        self.callbacks.append(attempt)
        return attempt

    # -- HTTP --------------------------------------------------------------------------------------------

    async def _record(self, request: web.Request, api: str, version: str) -> tuple[JsonDict, bool, Mapping[str, str]]:
        """Read the parameters (query for GET, JSON body otherwise), record the request and tell the observers.

        Returns (params, whether the body was malformed, the headers) for the handler to answer from.
        """
        params: JsonDict = {}
        malformed = False
        if request.method == "GET":
            params = dict(request.query)
        else:
            raw = await request.read()
            try:
                parsed = json.loads(raw) if raw else {}
            except (json.JSONDecodeError, UnicodeDecodeError):
                parsed = None
            if isinstance(parsed, dict):
                params = parsed
            else:
                malformed = True
        headers: Mapping[str, str] = CIMultiDictProxy(CIMultiDict(request.headers))
        record = BkRequest(
            api=api, method=request.method, headers=headers, body=params, version=version, path=request.path
        )
        async with self._changed:
            self._requests.append(record)
            self._changed.notify_all()
        for observer in self._request_observers:
            observer(record)
        return params, malformed, headers

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        api = request.match_info["api"]
        handler = self._apis.get(api)
        # The ESB's `job` system has no get_job_instance_list (a v3 API, `jobv3` only), and `jobv3` none of v2's.
        jobv3 = "/compapi/v2/jobv3/" in request.path
        if handler is None or jobv3 != (api in _JOBV3_APIS):
            return web.Response(status=404, text=f"component {api} not found")
        if request.method != "POST" and not (request.method == "GET" and api in _GET_APIS):
            return web.Response(status=405, text="method not allowed")

        params, malformed, headers = await self._record(request, api, "v2")

        delay = _take(self._delays, api)
        if delay is not None:
            try:
                async with asyncio.timeout(delay.seconds):
                    await self._closing.wait()
                return web.Response(status=503, text="shutting down")
            except TimeoutError:
                pass
        injected = _take(self._injections, api)
        if injected is not None and injected.kind == "http_error":
            return web.Response(status=injected.status, body=injected.body, content_type="text/html")
        if injected is not None and injected.kind == "garbage":
            return web.Response(status=200, body=injected.body, content_type="text/html")

        auth_error, operator = self._authenticate(request, params)
        if auth_error is not None:
            return web.json_response(
                {"result": False, "code": 1306000, "data": None, "message": auth_error, "request_id": _hex()}
            )
        if injected is not None:  # kind == "fail"
            return _job_response({"code": injected.code, "result": False, "message": injected.message})

        data, error = self._run(request, handler, params, operator, headers, malformed=malformed)
        if error is not None:
            return _job_response(error)
        if self._lost.get(api):
            self._lost[api] -= 1
            return web.Response(status=502, text="Bad Gateway", content_type="text/html")
        if self._fail_after[api]:
            code, message = self._fail_after[api].pop(0)
            return _job_response({"code": code, "result": False, "message": message})
        # get_job_list's `data` is a bare list; handlers return dicts, so it comes wrapped (see _BARE_LIST).
        payload: Any = data.get(_BARE_LIST, data)
        return _job_response({"code": 0, "result": True, "data": payload, "message": ""})

    def _run(
        self,
        request: web.Request,
        handler: Callable[[FakeBkJob, JsonDict, str, Mapping[str, str]], JsonDict],
        params: JsonDict,
        operator: str,
        headers: Mapping[str, str],
        *,
        malformed: bool,
    ) -> tuple[JsonDict, JsonDict | None]:
        """(data, None) from the API's handler, or ({}, JOB's error body in the caller's language)."""
        english = request.headers.get("Blueking-Language", "").lower().startswith("en")
        try:
            if malformed:
                raise _JobError(1240003, "bad_request")
            return handler(self, params, operator, headers), None
        except _JobError as exc:
            body: JsonDict = {"code": exc.code, "result": False, "message": exc.message(english)}
            if exc.permission is not None:
                body["permission"] = exc.permission
            return {}, body

    def _authenticate(self, request: web.Request, params: Mapping[str, Any]) -> tuple[str | None, str]:
        """The ESB's app and user checks: header X-Bkapi-Authorization first, else the request params."""
        header = request.headers.get("X-Bkapi-Authorization")
        auth: Mapping[str, Any] = params
        if header is not None:
            try:
                decoded = json.loads(header)
            except json.JSONDecodeError:
                decoded = None
            if not isinstance(decoded, dict):
                return "request header X-Bkapi-Authorization is not a valid JSON format string", ""
            auth = decoded
        app_code = auth.get("bk_app_code") or auth.get("app_code")
        app_secret = auth.get("bk_app_secret") or auth.get("app_secret")
        if not app_code:
            return "APP Code [bk_app_code] cannot be empty", ""
        if not app_secret:
            return "APP Secret [bk_app_secret] cannot be empty", ""
        if app_code != self.app_code:
            return (
                f"Invalid APP Code [bk_app_code={app_code}], please confirm if the APP Code has been registered",
                "",
            )
        if app_secret != self.app_secret:
            return (
                "APP Secret verification failed, pelase confirm if the APP Secret and APP Code "
                f"[bk_app_code={app_code}] match",
                "",
            )
        # paas2/esb/esb/bkauth/validators.py UserAuthValidator: a bare username only for skip-user-auth apps.
        username = auth.get("bk_username") or auth.get("username")
        if auth.get("bk_token"):
            return None, str(username or "admin")
        if username and self.skip_user_auth:
            return None, str(username)
        return "User authentication failed, please provide a valid user identity, such as bk_token, bk_username", ""

    # -- HTTP: the API gateway (v3) ----------------------------------------------------------------------

    async def _handle_v3(self, request: web.Request) -> web.StreamResponse:
        """APIGW in front of JOB: the resource and method must match, credentials come only from the header,
        the gateway's own errors carry `code_name`, JOB's answers come back without ESB additions."""
        api = request.match_info["api"]
        handler = self._apis_v3.get(api)
        if handler is None or request.method != _V3_METHODS[api]:
            return _gateway_error(404, 1640401, "API_NOT_FOUND", f"API not found [method={request.method} api={api}]")

        params, malformed, headers = await self._record(request, api, "v3")

        name = _canonical(api)
        delay = _take(self._delays, name)
        if delay is not None:
            try:
                async with asyncio.timeout(delay.seconds):
                    await self._closing.wait()
                return web.Response(status=503, text="shutting down")
            except TimeoutError:
                pass
        app_state = request.path.startswith(APIGW_STAGE_PATH + "/api/v3/system/")
        auth_error, operator = self._authenticate_v3(request, app_state=app_state)
        if auth_error is not None:
            return _gateway_error(400, 1640001, "INVALID_ARGS", auth_error)
        if not operator:
            # job-gateway's CheckOpenApiJwtGatewayFilterFactory: no user in the JWT nor in X-Bk-Username.
            english = request.headers.get("Blueking-Language", "").lower().startswith("en")
            message = "Missing user info" if english else "缺少有效的用户信息"
            body = {"code": 1247002, "result": False, "job_request_id": _hex(), "message": message}
            return web.json_response(body, status=401)
        injected = _take(self._injections, name)
        if injected is not None and injected.kind == "gateway":
            return _gateway_error(injected.status, injected.code, injected.code_name, injected.message)
        if injected is not None and injected.kind == "http_error":
            return web.Response(status=injected.status, body=injected.body, content_type="text/html")
        if injected is not None and injected.kind == "garbage":
            return web.Response(status=200, body=injected.body, content_type="text/html")
        if injected is not None:  # kind == "fail"
            return _apigw_response({"code": injected.code, "result": False, "message": injected.message})

        data, error = self._run(request, handler, params, operator, headers, malformed=malformed)
        if error is not None:
            return _apigw_response(error)
        if self._lost.get(name):
            self._lost[name] -= 1
            return _gateway_error(
                504, 1650401, "REQUEST_BACKEND_TIMEOUT", "Request backend service timeout [backend=bk-job]"
            )
        if self._fail_after[name]:
            code, message = self._fail_after[name].pop(0)
            return _apigw_response({"code": code, "result": False, "message": message})
        return _apigw_response({"code": 0, "result": True, "data": data})

    def _authenticate_v3(self, request: web.Request, *, app_state: bool) -> tuple[str | None, str]:
        """`allow_auth_from_params: false`: only X-Bkapi-Authorization counts; credentials in a body are
        ignored, so such a request has no app code at all. A user-state resource verifies the user (a bare
        `bk_username` only with the retired skip-user-auth list); an app-state one (`/api/v3/system/`) does not,
        and JOB takes the user from `X-Bk-Username`."""
        header = request.headers.get("X-Bkapi-Authorization")
        if header is None:
            return "app code cannot be empty", ""
        try:
            auth = json.loads(header)
        except json.JSONDecodeError:
            auth = None
        if not isinstance(auth, dict):
            return "request header X-Bkapi-Authorization is not a valid JSON format string", ""
        if not auth.get("bk_app_code"):
            return "app code cannot be empty", ""
        if auth.get("bk_app_code") != self.app_code or auth.get("bk_app_secret") != self.app_secret:
            return "bk_app_code or bk_app_secret is incorrect", ""
        if app_state:
            return None, str(request.headers.get("X-Bk-Username") or "").strip()
        username = auth.get("bk_username")
        if auth.get("bk_token") or auth.get("access_token"):
            return None, str(username or "admin")
        if username and self.skip_user_auth:
            return None, str(username)
        return (
            "user authentication failed, please provide a valid user identity, such as bk_token, access_token",
            "",
        )

    # -- APIs: params, operator, headers -> data, or raise _JobError ------------------------------------

    def _biz_id(self, params: Mapping[str, Any]) -> int:
        """EsbAppScopeReq bean validation: bk_biz_id >= 1, or a scope type and ID."""
        biz = _as_int(params.get("bk_biz_id"))
        scope_type = None
        if biz is None and params.get("bk_scope_id") is not None:
            scope_type = params.get("bk_scope_type")
            if scope_type not in ("biz", "biz_set"):
                raise _JobError(1240003, "bad_scope_type")
            biz = _as_int(params["bk_scope_id"])
        if biz is None or biz < 1:
            raise _JobError(1240003, "bad_biz")
        if scope_type is not None and scope_type != _scope(biz)["bk_scope_type"]:
            raise _JobError(1243049, "no_biz")  # e.g. a business set named as a business: no such business
        return biz

    def _check_biz(self, biz: int) -> None:
        if biz not in self.businesses:
            raise _JobError(1243049, "no_biz")

    def _execute_job(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        return self._execute(params, operator, headers, v3=False)

    def _execute_job_plan(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        """v3: `job_plan_id`, `global_var_list` (bean-validated, hosts in `server`), `callback_url`."""
        return self._execute(params, operator, headers, v3=True)

    def _execute(self, params: JsonDict, operator: str, headers: Mapping[str, str], *, v3: bool) -> JsonDict:
        """Both versions call TaskExecuteService.executeJobPlan; v3 items are read into v2's shape first."""
        biz = self._biz_id(params)
        callback_url = params.get("callback_url" if v3 else "bk_callback_url") or None
        if callback_url is not None and not (isinstance(callback_url, str) and _valid_callback_url(callback_url)):
            raise _JobError(1240003, "bad_callback")
        passed = params.get("global_var_list" if v3 else "global_vars") or []
        if not isinstance(passed, list) or not all(isinstance(v, dict) for v in passed):
            raise _JobError(1240003, "bad_request")
        if v3:
            passed = [_v3_var_as_v2(item) for item in passed]
        else:  # v2's EsbServerDTO has no host IDs: Jackson drops the field
            passed = [_without_host_ids(item) for item in passed]
        self._check_biz(biz)
        job_key = "job_plan_id" if v3 else "bk_job_id"
        job_id = _as_int(params.get(job_key))
        if job_id is None or job_id < 1:
            raise _JobError(1241005, "invalid_param", job_key)
        for item in passed:  # checkExecuteTaskRequest, before the plan is looked up
            var_id = _as_int(item.get("id"))
            if (var_id is None or var_id <= 0) and not str(item.get("name") or "").strip():
                field_ = "global_var.id|global_var.name" if v3 else "global_vars.id|global_vars.name"
                raise _JobError(1241005, "invalid_param", field_)
        plan = self.plans.get((biz, job_id))
        if plan is None:
            raise _JobError(1244012, "no_plan")
        self._check_permission("launch_job_plan", operator, biz, plan)

        now = time.time()
        steps = [
            StepInstance(
                step_instance_id=next(self._step_instance_ids),
                step_id=step["step_id"],
                name=step["name"],
                type=step.get("execute_type", 1),
                status=2 if i == 0 else 1,
                hosts=[
                    {"bk_host_id": h.get("bk_host_id"), "ip": h.get("ip"), "bk_cloud_id": h.get("bk_cloud_id", 0)}
                    for h in step["ip_list"] or []
                ],
                start_time=now if i == 0 else None,
                confirm_users=list(step.get("confirm_users") or []),
                confirm_roles=list(step.get("confirm_roles") or []),
                rolling=bool(step.get("rolling")),
            )
            for i, step in enumerate(s for s in plan.steps if not s.get("disabled"))
        ]
        inst = Instance(
            job_instance_id=next(self._instance_ids),
            bk_biz_id=biz,
            bk_job_id=job_id,
            name=plan.name,
            operator=operator,
            request=params,
            headers=headers,
            status=2,
            steps=steps,
            callback_url=callback_url,
            resolved_vars=_resolve_vars(plan.global_vars, passed),
            start_time=now,
        )
        self.instances[inst.job_instance_id] = inst
        for observer in self._instance_observers:
            observer(inst)
        return {"job_instance_id": inst.job_instance_id, "job_instance_name": inst.name}

    def _get_job_detail(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        biz = self._biz_id(params)
        self._check_biz(biz)
        job_id = _as_int(params.get("bk_job_id"))
        if job_id is None or job_id < 1:
            raise _JobError(1241007, "missing_param", "bk_job_id")
        plan = self.plans.get((biz, job_id))
        if plan is None:
            raise _JobError(1243009, "no_plan")
        self._check_permission("view_job_plan", operator, biz, plan)
        return {
            "bk_biz_id": biz,
            **_scope(biz),
            "bk_job_id": job_id,
            "template_id": job_id,
            "name": plan.name,
            "creator": plan.creator,
            "last_modify_user": plan.creator,
            "create_time": _fmt_time(plan.create_time),
            "last_modify_time": _fmt_time(plan.create_time),
            # Enabled steps only (a disabled step is in v3's `step_list`, with nothing to tell it apart).
            "steps": [
                {k: v for k, v in s.items() if k not in _FAKE_STEP_KEYS} for s in plan.steps if not s.get("disabled")
            ],
            # Host defaults: topology nodes only inside `value`, JOB's TaskTargetDTO JSON (docs/bkjob.md §variables).
            "global_vars": [_v2_plan_var(v) for v in plan.global_vars],
        }

    def _get_job_instance_status(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        inst = self._named_instance(params)
        self._check_permission("view_history", operator, inst.bk_biz_id)
        current = next((s for s in inst.steps if s.status == 2), None) or next(
            (s for s in reversed(inst.steps) if s.status != 1), inst.steps[0]
        )
        return {
            "is_finished": inst.is_finished,
            "job_instance": {
                "bk_biz_id": inst.bk_biz_id,
                **_scope(inst.bk_biz_id),
                "job_instance_id": inst.job_instance_id,
                "bk_job_id": inst.bk_job_id,
                "status": inst.status,
                "name": inst.name,
                "operator": inst.operator,
                "create_time": _fmt_time(inst.create_time),
                "start_time": _fmt_time(inst.start_time),
                "end_time": _fmt_time(inst.end_time),
                "total_time": _finished_total(inst),
                "start_way": inst.launch_mode,
                "current_step_instance_id": current.step_instance_id,
            },
            "blocks": [{"step_instances": [_step_status(s, inst.operator)]} for s in inst.steps],
        }

    def _get_job_instance_list(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        """EsbGetJobInstanceListV3ResourceImpl (the ESB's jobv3 component and APIGW alike): epoch-ms times, end
        after start within 30 days, `length` 1..1000 (default 20), the filters applied, rows keyed
        `job_instance_id` with scope fields (EsbTaskInstanceV3DTO), newest first."""
        length = _as_int(params.get("length"))
        length = 20 if length is None else length
        if not 1 <= length <= 1000:
            raise _JobError(1240003, "bad_length")
        offset = _as_int(params.get("start")) or 0
        biz = self._biz_id(params)
        self._check_biz(biz)
        start, end = _as_int(params.get("create_time_start")), _as_int(params.get("create_time_end"))
        if start is None or start < 1:
            raise _JobError(1241007, "missing_param", "create_time_start")
        if end is None or end < 1:
            raise _JobError(1241007, "missing_param", "create_time_end")
        if end - start <= 0:
            raise _JobError(1241007, "missing_param", "create_time_start|create_time_end")
        if end - start > _MAX_HISTORY_MS:
            raise _JobError(1241002, "illegal_param")
        task_type = _as_int(params.get("type"))
        if task_type is not None and task_type not in (0, 1, 2):
            raise _JobError(1241002, "illegal_param")
        wanted = {
            "job_instance_id": _as_int(params.get("job_instance_id")),
            "launch_mode": _as_int(params.get("launch_mode")),
            "type": task_type,
            "status": _as_int(params.get("status")),
        }
        name = params.get("name") or None
        rows = [
            _instance_row(inst)
            for inst in sorted(self.instances.values(), key=lambda i: i.create_time, reverse=True)
            if inst.bk_biz_id == biz
            and start <= inst.create_time * 1000 <= end
            and (not params.get("operator") or params.get("operator") == inst.operator)
            and (name is None or str(name) in inst.name)
        ]
        rows = [r for r in rows if all(v is None or r[k] == v for k, v in wanted.items())]
        return {"data": rows[offset : offset + length] or None, "start": offset, "length": length, "total": len(rows)}

    def advance(self, instance_id: int, done_steps: int) -> None:
        """Move a running instance on: the first `done_steps` steps succeed, the next one runs (no callback)."""
        inst = self.instances[instance_id]
        now = time.time()
        for i, step in enumerate(inst.steps):
            if i < done_steps and step.status not in FINISHED_STATUSES:  # an ignored error (6) stays so
                step.status, step.start_time, step.end_time = 3, step.start_time or now, step.end_time or now
            elif i == done_steps:
                step.status, step.start_time = 2, step.start_time or now
                if step.type == 3:  # a manual confirmation waits for its confirmer: step and job in 7
                    step.status = inst.status = 7

    def _get_job_plan_detail(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        """v3 view of the same plan: the plan ID is `id`, variables carry `type` and hosts in `server`,
        passwords are masked, and `global_var_list` is null for a plan without variables (docs/bkjob.md §variables)."""
        biz = self._biz_id(params)
        self._check_biz(biz)
        job_id = _as_int(params.get("job_plan_id"))
        if job_id is None or job_id < 1:
            raise _JobError(1241007, "missing_param", "job_plan_id")
        plan = self.plans.get((biz, job_id))
        if plan is None:
            raise _JobError(1243009, "no_plan")
        self._check_permission("view_job_plan", operator, biz, plan)
        return {
            **_scope(biz),
            "id": job_id,
            "job_template_id": job_id,
            "name": plan.name,
            "creator": plan.creator,
            "create_time": int(plan.create_time),
            "last_modify_user": plan.creator,
            "last_modify_time": int(plan.create_time),
            "step_list": [_plan_step_v3(s) for s in plan.steps],
            "global_var_list": [_plan_var_v3(v) for v in plan.global_vars] or None,
        }

    def _get_job_instance_status_v3(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        """v3: `finished`, epoch-ms times (`total_time` too), one flat `step_instance_list`
        (docs/bkjob.md §instance-status)."""
        biz = self._biz_id(params)
        self._check_biz(biz)
        instance_id = _as_int(params.get("job_instance_id"))
        if instance_id is None or instance_id < 1:
            raise _JobError(1241007, "missing_param", "job_instance_id")
        inst = self.instances.get(instance_id)
        if inst is None or inst.bk_biz_id != biz:
            raise _JobError(1244006, "no_instance")
        self._check_permission("view_history", operator, biz)
        ip_results = str(params.get("return_ip_result", "false")).lower() == "true"
        total = _finished_total(inst)
        return {
            "finished": inst.is_finished,
            "job_instance": {
                **_scope(inst.bk_biz_id),
                "job_instance_id": inst.job_instance_id,
                "status": inst.status,
                "name": inst.name,
                "create_time": _ms(inst.create_time),
                "start_time": _ms(inst.start_time),
                "end_time": _ms(inst.end_time),
                "total_time": None if total is None else int(total * 1000),
            },
            "step_instance_list": [_step_status_v3(s, ip_results) for s in inst.steps],
        }

    # -- APIs: finding plans by name (get_job_list v2, get_job_plan_list v3) ----------------------------

    def _matching_plans(self, params: Mapping[str, Any], operator: str) -> list[_Plan]:
        """TaskPlanDAOImpl.listPageTaskPlans: the business's plans, `name LIKE '%<name>%'` (unescaped, so `%`
        and `_` are wildcards; case-insensitive under MySQL's default collation), newest change first.

        Neither list filters by the caller's permissions: whoever may access the business (AuthAppInterceptor
        checks `access_business` on every `/esb/api/**` call) sees every plan of it."""
        biz = self._biz_id(params)
        self._check_biz(biz)
        self._check_permission("access_business", operator, biz)
        name = params.get("name")
        plans = [p for p in self.plans.values() if p.bk_biz_id == biz]
        if name is not None:
            pattern = _like(str(name))
            plans = [p for p in plans if pattern.fullmatch(p.name)]
        return sorted(plans, key=lambda p: (-p.create_time, p.bk_job_id))

    def _get_job_list(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        """v2 (EsbGetJobListResourceImpl): a bare list of rows, no total; without `length`, every plan."""
        plans = self._matching_plans(params, operator)
        start = max(_as_int(params.get("start")) or 0, 0)
        length = _as_int(params.get("length"))
        page = plans[start:] if length is None else plans[start : start + max(length, 0)]
        rows = [
            {
                "bk_biz_id": p.bk_biz_id,
                "bk_job_id": p.bk_job_id,
                "name": p.name,
                "creator": p.creator,
                "last_modify_user": p.creator,
                "create_time": _fmt_time(p.create_time),
                "last_modify_time": _fmt_time(p.create_time),
            }
            for p in page
            if not p.template_missing  # dropped after the page was cut: the page comes back short
        ]
        return {_BARE_LIST: rows}

    def _get_job_plan_list(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        """v3 (EsbPlanV3ResourceImpl): EsbPageDataV3 `{start, length, total, data}`; `length` defaults to 20;
        the row's plan ID is `id`."""
        plans = self._matching_plans(params, operator)
        start = max(_as_int(params.get("start")) or 0, 0)
        length = _as_int(params.get("length"))
        length = 20 if length is None else max(length, 0)
        rows = [
            {
                **_scope(p.bk_biz_id),
                "id": p.bk_job_id,
                "job_template_id": p.bk_job_id,
                "name": p.name,
                "creator": p.creator,
                "create_time": int(p.create_time),
                "last_modify_user": p.creator,
                "last_modify_time": int(p.create_time),
            }
            for p in plans[start : start + length]
            if not p.template_missing  # dropped after the page was cut; `total` still counts it
        ]
        return {"start": start, "length": length, "total": len(plans), "data": rows}

    # -- run control: operate_job_instance and operate_step_instance (docs/bkjob.md §run-control) ----------------------

    def _operate_job_instance(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        """TaskOperationEnum: 1 terminate, only while the job runs (2) or waits for a user (7), else 1241003; the
        job goes 10 (STOPPING) and then 11 (STOP_SUCCESS), which runs finishJob and so calls back. 2 (start a
        not-started instance) never applies to an instance execute_job started. A job waiting at a manual
        confirmation goes 10 and stays there: JobListener.stopJob sends the step a stop event that
        ConfirmStepEventHandler has no case for, so the step stays 7 and nothing ends (no callback)."""
        inst = self._named_instance(params)
        code = _as_int(params.get("operation_code"))
        if code not in (1, 2):
            raise _JobError(1241002, "illegal_param")
        if code == 2 or inst.status not in (2, 7):
            raise _JobError(1241003, "unsupported_operation")
        inst.status = 10
        if _waiting_confirmation(inst) is not None:
            return {"job_instance_id": inst.job_instance_id}
        for step in inst.steps:
            if step.status in (2, 7):
                step.status = 10
        if not self.hold_stops:
            task = asyncio.get_running_loop().create_task(self.complete_stop(inst.job_instance_id))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        return {"job_instance_id": inst.job_instance_id}

    async def complete_stop(self, instance_id: int) -> list[int]:
        """A stop BK-JOB accepted ends: the job and its stopping step in 11, then the callback (never for a job
        stopped at a manual confirmation: it stays 10)."""
        await asyncio.sleep(0)  # after the operate answer has gone out, as JOB's engine does it asynchronously
        inst = self.instances[instance_id]
        if inst.status != 10 or _waiting_confirmation(inst) is not None:
            return []
        statuses = [11 if s.status == 10 else s.status for s in inst.steps]
        return await self.finish(instance_id, 11, statuses)

    def pause_rolling(self, instance_id: int, step_index: int) -> None:
        """A rolling step in manual mode between two batches: the step and the job wait in 7 (no callback)."""
        inst = self.instances[instance_id]
        step = inst.steps[step_index]
        assert step.rolling, "only a rolling step pauses between batches"
        step.status = inst.status = 7
        step.start_time = step.start_time or time.time()

    def _operate_step_instance(self, params: JsonDict, operator: str, headers: Mapping[str, str]) -> JsonDict:
        """StepOperationEnum, each checked against the step's own state (TaskExecuteServiceImpl.doStepOperation):
        2 retry failed hosts and 8 retry all in 4, 9 or 11; 3 ignore error in 4 or 9; 6 confirm and 9 end the
        confirmation on a manual-confirmation step (type 3) in 7, only by a confirmer (1244016)
        when the step names roles (with none, by anyone); 10 re-request a
        confirmation in 13; 11 next step in 11; 12 skip in 10; 13 continue rolling on a rolling step in 7. Codes
        outside the enum are 1241002, an operation the step's state does not allow is 1241003."""
        inst = self._named_instance(params)
        step_id = _as_int(params.get("step_instance_id"))
        if step_id is None or step_id < 1:
            raise _JobError(1241007, "missing_param", "step_instance_id")
        code = _as_int(params.get("operation_code"))
        if code not in _STEP_OPERATIONS:
            raise _JobError(1241002, "illegal_param")
        step = next((s for s in inst.steps if s.step_instance_id == step_id), None)
        if step is None:
            raise _JobError(1244007, "no_step")
        if not _step_allows(step, code):
            raise _JobError(1241003, "unsupported_operation")
        now = time.time()
        if code in (2, 3, 8):
            self._revive(inst, step, code)
        elif code in (6, 9):
            if not self._may_confirm(inst, step, operator):
                raise _JobError(1244016, "not_confirmer")
            self._confirmed(inst, step, code)
        elif code == 10:  # ConfirmStepEventHandler.confirmStepRestart: the step asks again
            step.status = inst.status = 7
            step.end_time = inst.end_time = None
        elif code == 11:  # the stopped step stays 11; the job goes on with the next one
            inst.end_time = None
            self._next_step(inst, step, now)
        elif code == 12:
            step.status, step.end_time = 5, now
            self._next_step(inst, step, now)
        else:  # 13: the next batch runs
            step.status = inst.status = 2
        return {"job_instance_id": inst.job_instance_id, "step_instance_id": step.step_instance_id}

    def _revive(self, inst: Instance, step: StepInstance, code: int) -> None:
        """Retry runs the step again (a new `execute_count`; with 2 the hosts that succeeded show 3); ignoring the
        error marks it 6 and moves on. Either way the job runs again and calls back when it ends again."""
        now = time.time()
        if code == 3:
            step.status = 6
            self._next_step(inst, step, now)
            return
        for host in step.hosts:
            host["status"] = 3 if code == 2 and _host_status(step, host) in (3, 9) else 7
        step.status, step.end_time = 2, None
        step.execute_count += 1
        inst.status, inst.end_time = 2, None

    def _confirmed(self, inst: Instance, step: StepInstance, code: int) -> None:
        now = time.time()
        step.end_time = now
        if code == 9:  # ConfirmStepEventHandler.confirmStepTerminate: 13 directly, no finishJob, no callback
            step.status = inst.status = 13
            inst.end_time = now
            return
        step.status = 3
        self._next_step(inst, step, now)

    def _next_step(self, inst: Instance, step: StepInstance, now: float) -> None:
        """The job goes on with the step after `step`; without one it has ended well and calls back."""
        index = inst.steps.index(step)
        if index + 1 < len(inst.steps):
            following = inst.steps[index + 1]
            following.status, following.start_time = (7 if following.type == 3 else 2), now
            inst.status, inst.end_time = following.status, None
            return
        inst.status, inst.end_time = 3, now
        if inst.callback_url:
            task = asyncio.get_running_loop().create_task(self._finished_by_operation(inst))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def _finished_by_operation(self, inst: Instance) -> None:
        await asyncio.sleep(0)
        await self._deliver_callback(inst)

    def _may_confirm(self, inst: Instance, step: StepInstance, operator: str) -> bool:
        """The step's users, the trigger user when the step names that role, and members of its other roles; when
        the step names no role (users only, or nobody), anyone: job-execute's `checkConfirmUser` checks the roles
        only when there are some, and `operate_step_instance` has no permission check of its own."""
        if operator in step.confirm_users or not step.confirm_roles:
            return True
        for role in step.confirm_roles:
            if role == TRIGGER_USER_ROLE and operator == inst.operator:
                return True
            if operator in self.role_members.get(role, ()):
                return True
        return False

    _apis_v3: dict[str, Callable[[FakeBkJob, JsonDict, str, Mapping[str, str]], JsonDict]] = {
        "operate_job_instance": _operate_job_instance,
        "operate_step_instance": _operate_step_instance,
        "execute_job_plan": _execute_job_plan,
        "get_job_plan_detail": _get_job_plan_detail,
        "get_job_instance_status": _get_job_instance_status_v3,
        "get_job_instance_list": _get_job_instance_list,
        "get_job_plan_list": _get_job_plan_list,
        "get_job_instance_ip_log": _HostLogs._get_job_instance_ip_log,
        "batch_get_job_instance_ip_log": _HostLogs._batch_get_job_instance_ip_log,
    }

    _apis: dict[str, Callable[[FakeBkJob, JsonDict, str, Mapping[str, str]], JsonDict]] = {
        "operate_job_instance": _operate_job_instance,
        "operate_step_instance": _operate_step_instance,
        "execute_job": _execute_job,
        "get_job_instance_list": _get_job_instance_list,
        "get_job_list": _get_job_list,
        "get_job_detail": _get_job_detail,
        "get_job_instance_status": _get_job_instance_status,
        "get_job_instance_log": _HostLogs._get_job_instance_log,
        "batch_get_job_instance_ip_log": _HostLogs._batch_get_job_instance_ip_log,  # ESB `jobv3`
    }


def _like(pattern: str) -> re.Pattern[str]:
    """MySQL `LIKE '%<pattern>%'`: `%` any run, `_` one character, `\\` escapes; case-insensitive."""
    out, chars = [".*"], iter(pattern)
    for ch in chars:
        if ch == "\\":
            out.append(re.escape(next(chars, "\\")))
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    out.append(".*")
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


# StepOperationEnum codes (docs/bkjob.md §run-control).
_STEP_OPERATIONS = frozenset({2, 3, 6, 8, 9, 10, 11, 12, 13})


def _step_allows(step: StepInstance, code: int) -> bool:
    """TaskExecuteServiceImpl: which step states (and types) each step operation applies to."""
    if code in (2, 8):
        return step.status in (4, 9, 11)
    if code == 3:
        return step.status in (4, 9)
    if code in (6, 9):
        return step.type == 3 and step.status == 7
    if code == 10:
        return step.type == 3 and step.status == 13
    if code == 11:
        return step.status == 11
    if code == 12:
        return step.status == 10
    return code == 13 and step.rolling and step.status == 7


def _waiting_confirmation(inst: Instance) -> StepInstance | None:
    """The manual-confirmation step the job waits at, if any."""
    return next((s for s in inst.steps if s.type == 3 and s.status == 7), None)


TRIGGER_USER_ROLE = "JOB_RESOURCE_TRIGGER_USER"
"""JOB's role for "whoever launched the job", which a confirmation step may name as its confirmer."""
# Keys add_plan takes for the fake's own use; get_job_detail (v2) does not show them.
_FAKE_STEP_KEYS = frozenset(
    {"execute_type", "confirm_users", "confirm_roles", "notify_channels", "rolling", "disabled"}
)


def _plan_step_v3(step: Mapping[str, Any]) -> JsonDict:
    """EsbStepV3DTO: a confirmation step's `approval_info` is EsbApprovalStepV3DTO, whose fields carry no
    @JsonProperty and so go out in camelCase; its `approvalUser` (EsbUserRoleInfoV3DTO) is snake_case."""
    kind = step.get("execute_type", 1)
    approval = None
    if kind == 3:
        approval = {
            "approvalType": 1,
            "approvalUser": {
                "user_list": list(step.get("confirm_users") or []),
                "role_list": list(step.get("confirm_roles") or []),
            },
            "approvalMessage": step.get("confirm_message") or "",
            "notifyChannel": list(step.get("notify_channels") or []),
        }
    return {"id": step["step_id"], "name": step["name"], "type": kind, "approval_info": approval}


def _take(queues: dict[str, list[_Injection]], api: str) -> _Injection | None:
    queue = queues.get(api)
    if not queue:
        return None
    injected = queue[0]
    injected.times -= 1
    if injected.times <= 0:
        queue.pop(0)
    return injected


def _job_response(body: JsonDict) -> web.Response:
    """JOB's EsbResp (NON_NULL) plus what the ESB adds: `request_id`, and `message` defaulting to ""."""
    envelope: JsonDict = {"code": body["code"], "result": body["result"], "job_request_id": _hex()}
    envelope.update({k: v for k, v in body.items() if k not in envelope})
    envelope["request_id"] = _hex()
    return web.json_response(envelope)


def _gateway_error(status: int, code: int, code_name: str, message: str) -> web.Response:
    """APIGW's own error body (docs/bkjob.md §gateway-errors), with the request ID header the gateway always adds."""
    body = {"code_name": code_name, "data": None, "code": code, "message": message, "result": False}
    headers = {"X-Bkapi-Request-Id": str(uuid.uuid4())}
    if status == 429:
        headers.update({"X-Bkapi-RateLimit-Limit": "10", "X-Bkapi-RateLimit-Remaining": "0"})
    return web.json_response(body, status=status, headers=headers)


def _apigw_response(body: JsonDict) -> web.Response:
    """JOB's EsbResp (NON_NULL) as the gateway passes it on: no ESB `request_id`, no `message` on success."""
    envelope: JsonDict = {"code": body["code"], "result": body["result"], "job_request_id": _hex()}
    envelope.update({k: v for k, v in body.items() if k not in envelope})
    return web.json_response(envelope, headers={"X-Bkapi-Request-Id": str(uuid.uuid4())})


def _target_json(var: Mapping[str, Any]) -> str | None:
    """A host variable's stored default: JOB's TaskTargetDTO as JSON (nonEmptyMapper, so no null or empty keys),
    which v2 get_job_detail hands out as `value` (TaskTargetDTO.java, TaskHostNodeDTO.java, ApplicationHostDTO.java).
    """
    hosts = []
    for ip in var.get("ip_list") or []:
        host = {
            "hostId": ip.get("bk_host_id"),
            "ip": ip.get("ip"),
            "ipv6": ip.get("ipv6"),
            "cloudAreaId": ip.get("bk_cloud_id", 0),
            "cloudIp": f"{ip.get('bk_cloud_id', 0)}:{ip['ip']}" if ip.get("ip") else None,
            "gseAgentAlive": False,
        }
        hosts.append({k: v for k, v in host.items() if v is not None})
    node = {
        "nodeInfoList": [{"id": n["id"], "type": n["node_type"]} for n in var.get("topo_node_list") or []],
        "dynamicGroupId": list(var.get("custom_query_id") or []),
        "hostList": hosts,
    }
    node = {k: v for k, v in node.items() if v}
    if not node:
        return None
    return json.dumps({"hostNodeList": node}, separators=(",", ":"))


def _esb_ip(ip: Mapping[str, Any]) -> JsonDict:
    """EsbIpDTO as v2 get_job_detail lists a host: `ip` is null for an IPv6-only host."""
    return {
        "bk_host_id": ip.get("bk_host_id"),
        "bk_cloud_id": ip.get("bk_cloud_id", 0),
        "bk_cloud_name": None,
        "ip": ip.get("ip"),
        "ipv6": ip.get("ipv6"),
        "bk_agent_id": None,
        "alive": None,
    }


def _v2_plan_var(var: Mapping[str, Any]) -> JsonDict:
    """EsbGetJobDetailResourceImpl.buildVariable: `value` is the raw stored default (the TaskTargetDTO JSON of a
    host variable, a password in clear), and the structured host fields have no topology nodes."""
    out = {k: v for k, v in var.items() if k != "topo_node_list"}
    if var["category"] == 3:
        out["ip_list"] = [_esb_ip(ip) for ip in var.get("ip_list") or []]
    return out


def _instance_row(inst: Instance) -> JsonDict:
    """EsbTaskInstanceV3DTO: the instance ID is `job_instance_id` (the published doc says `id`), `total_time`
    is null until the job has finished."""
    return {
        **_scope(inst.bk_biz_id),
        "job_instance_id": inst.job_instance_id,
        "job_plan_id": inst.bk_job_id,
        "job_template_id": inst.bk_job_id,
        "name": inst.name,
        "operator": inst.operator,
        "launch_mode": inst.launch_mode,
        "status": inst.status,
        "start_time": _ms(inst.start_time),
        "end_time": _ms(inst.end_time),
        "total_time": _total_ms(inst),
        "create_time": _ms(inst.create_time),
        "type": 0,
    }


def _total_ms(inst: Instance) -> int | None:
    total = _finished_total(inst)
    return None if total is None else int(total * 1000)


def _finished_total(inst: Instance) -> float | None:
    """`total_time` is set by finishJob: null while the job runs (docs/bkjob.md §instance-status)."""
    if not inst.is_finished:
        return None
    return _total_time(inst.start_time, inst.end_time)


def _v3_var_as_v2(item: Mapping[str, Any]) -> JsonDict:
    """EsbGlobalVarV3DTO's bean validation, then v2's item shape so both versions resolve alike.

    A `server` counts only with at least one non-empty list; `dynamic_group_list[{id}]` becomes v2's
    `dynamic_group_id_list`.
    """
    var_id = _as_int(item.get("id"))
    if var_id is not None and var_id < 1:
        raise _JobError(1240003, "bad_var_id")
    out: JsonDict = {"id": var_id, "name": item.get("name"), "value": item.get("value")}
    server = item.get("server")
    if server is None:
        return out
    if not isinstance(server, dict):
        raise _JobError(1240003, "bad_request")
    for host in server.get("ip_list") or []:
        cloud = host.get("bk_cloud_id") if isinstance(host, dict) else None
        if not isinstance(cloud, int) or isinstance(cloud, bool) or cloud < 0:
            raise _JobError(1240003, "bad_cloud")
        if not _IPV4.match(str(host.get("ip") or "")):
            raise _JobError(1240003, "bad_ip")
    host_ids = [_as_int(h) for h in server.get("host_id_list") or []]
    target: JsonDict = {
        "ip_list": [{"bk_cloud_id": h["bk_cloud_id"], "ip": h["ip"]} for h in server.get("ip_list") or []],
        "dynamic_group_id_list": [str(g.get("id")) for g in server.get("dynamic_group_list") or []],
        "topo_node_list": list(server.get("topo_node_list") or []),
    }
    if host_ids:  # JobExecuteCommonV3Processor: host IDs win, `ip_list` is then ignored
        target.update({"ip_list": [], "host_id_list": host_ids})
    if any(target.values()):
        out["target_server"] = target
    return out


def _plan_var_v3(var: Mapping[str, Any]) -> JsonDict:
    """TaskVariableDTO.toEsbGlobalVarV3: a v2-shaped plan variable as get_job_plan_detail shows it."""
    category = var["category"]
    server: JsonDict | None = None
    if category == 3:
        ips = [
            {
                "bk_host_id": ip.get("bk_host_id"),
                "bk_cloud_id": ip.get("bk_cloud_id", 0),
                "ip": ip.get("ip"),
                "bk_cloud_name": None,
                "ipv6": ip.get("ipv6"),
                "bk_agent_id": None,
                "alive": None,
            }
            for ip in var.get("ip_list") or []
        ]
        groups = [{"id": g} for g in var.get("custom_query_id") or []]
        nodes = list(var.get("topo_node_list") or [])
        server = {"ip_list": ips or None, "dynamic_group_list": groups or None, "topo_node_list": nodes or None}
    value = None if category == 3 else var.get("value")
    if category == 4:
        value = "******"  # JobConstants.SENSITIVE_FIELD_PLACEHOLDER, set or not (docs/bkjob.md §variables)
    return {
        "id": var["id"],
        "name": var["name"],
        "value": value,
        "server": server,
        "description": var.get("description") or "",
        "type": category,
        "required": 0,
        "used": True,
    }


def _without_host_ids(item: JsonDict) -> JsonDict:
    server = item.get("target_server")
    if not isinstance(server, dict) or "host_id_list" not in server:
        return item
    return {**item, "target_server": {k: v for k, v in server.items() if k != "host_id_list"}}


def _host_target(item: Mapping[str, Any]) -> JsonDict:
    """`{ip_list, dynamic_group_id_list, topo_node_list}`, plus `host_id_list` when hosts are named by ID (v3's
    host IDs, or a plan default's IPv6-only hosts)."""
    server = item.get("target_server")
    if server is not None:
        out = {
            "ip_list": list(server.get("ip_list") or []),
            "dynamic_group_id_list": list(server.get("dynamic_group_id_list") or []),
            "topo_node_list": list(server.get("topo_node_list") or []),
        }
        if server.get("host_id_list"):
            out["host_id_list"] = list(server["host_id_list"])
        return out
    hosts = list(item.get("ip_list") or [])  # deprecated fields, read only without target_server
    out = {
        "ip_list": [{"bk_cloud_id": h.get("bk_cloud_id", 0), "ip": h["ip"]} for h in hosts if h.get("ip")],
        "dynamic_group_id_list": list(item.get("custom_query_id") or []),
        "topo_node_list": list(item.get("topo_node_list") or []),
    }
    ipv6_only = [h["bk_host_id"] for h in hosts if not h.get("ip") and h.get("bk_host_id")]
    if ipv6_only:
        out["host_id_list"] = ipv6_only
    return out


def _resolve_vars(plan_vars: Iterable[JsonDict], passed: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """buildFinalTaskVariableValues: match by id if given (even 0), else by name; unmatched are ignored;
    a host target is used only when `value` is empty, and a host variable given a string has no target."""
    plan_vars = list(plan_vars)
    resolved: dict[str, Any] = {v["name"]: _host_target(v) if v["category"] == 3 else v["value"] for v in plan_vars}
    by_id = {v["id"]: v for v in plan_vars}
    by_name = {v["name"]: v for v in plan_vars}
    for item in passed:
        var = by_id.get(_as_int(item["id"])) if item.get("id") is not None else by_name.get(item.get("name"))
        if var is None:
            continue
        has_target = any(item.get(k) is not None for k in ("ip_list", "custom_query_id", "target_server"))
        use_target = has_target and not item.get("value")
        if var["category"] == 3:
            resolved[var["name"]] = _host_target(item) if use_target else None
        else:
            resolved[var["name"]] = item.get("value")
    return resolved


# IAM actions the fake checks: (name, resource type, its name) as JOB registers them in IAM
# (support-files/bkiam/0001_bk_job_20200808-1000_iam.json).
_ACTIONS = {
    "launch_job_plan": ("执行方案运行", "job_plan", "执行方案"),
    "view_job_plan": ("执行方案查看", "job_plan", "执行方案"),
    "view_history": ("执行历史查看", "biz", "业务"),
    "access_business": ("业务访问", "biz", "业务"),  # ActionId.LIST_BUSINESS: the plan lists need it
}


def _permission(action: str, biz: int, plan: _Plan | None) -> JsonDict:
    """The IAM apply-for-permission payload EsbResp.buildAuthFailResult attaches to 9900403
    (OpenApiApplyPermissionDTO: no apply URL of its own)."""
    name, resource_type, type_name = _ACTIONS[action]
    path = [{"id": str(biz), "type": "biz", "type_name": "业务", "name": ""}]
    if plan is not None and resource_type == "job_plan":
        path.append({"id": str(plan.bk_job_id), "type": "job_plan", "type_name": "执行方案", "name": plan.name})
    return {
        "system_id": "bk_job",
        "system_name": "作业平台",
        "actions": [
            {
                "id": action,
                "name": name,
                "related_resource_types": [
                    {
                        "system_id": "bk_job",
                        "system_name": "作业平台",
                        "type": resource_type,
                        "type_name": type_name,
                        "instances": [path],
                    }
                ],
            }
        ],
    }


# Per-host status for a step status: waiting, running, success, script exit code != 0, terminate ok.
_HOST_STATUS = {1: 5, 2: 7, 3: 9, 4: 104, 5: 5, 6: 104, 8: 403, 11: 403}


def _host_status(step: StepInstance, host: Mapping[str, Any]) -> int:
    outcome = _outcome(step, host)  # a test's HostOutcome for this attempt wins
    if outcome is not None:
        return outcome.status
    explicit = host.get("status")
    return int(explicit) if explicit is not None else _HOST_STATUS.get(step.status, 0)


def _step_status(step: StepInstance, operator: str) -> JsonDict:
    return {
        "step_instance_id": step.step_instance_id,
        "step_id": step.step_id,
        "name": step.name,
        "type": step.type,
        "operator": operator,
        "status": step.status,
        "execute_count": step.execute_count,
        "start_time": _fmt_time(step.start_time),
        "end_time": _fmt_time(step.end_time),
        "total_time": _total_time(step.start_time, step.end_time),
        "create_time": _fmt_time(step.create_time),
        "pause": None,
        "step_ip_status": [
            {"ip": h["ip"], "bk_cloud_id": h["bk_cloud_id"], "status": _host_status(step, h)} for h in step.hosts
        ],
    }


def _step_status_v3(step: StepInstance, ip_results: bool) -> JsonDict:
    total = _total_time(step.start_time, step.end_time)
    hosts = [
        {
            "bk_host_id": h.get("bk_host_id"),
            "ip": h["ip"],
            "bk_cloud_id": h["bk_cloud_id"],
            "status": _host_status(step, h),
            "tag": "",
            "exit_code": 0 if step.status == 3 else None,
            "error_code": 0,
            "start_time": _ms(step.start_time),
            "end_time": _ms(step.end_time),
            "total_time": None if total is None else int(total * 1000),
            **_host_codes_v3(step, h),
        }
        for h in step.hosts
    ]
    return {
        "step_instance_id": step.step_instance_id,
        "name": step.name,
        "status": step.status,
        "type": step.type,
        "execute_count": step.execute_count,
        "start_time": _ms(step.start_time),
        "end_time": _ms(step.end_time),
        "total_time": None if total is None else int(total * 1000),
        "create_time": _ms(step.create_time),
        "step_ip_result_list": hosts if ip_results else None,
    }
