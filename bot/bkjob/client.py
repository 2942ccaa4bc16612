"""The BK-JOB client: one interface for the bot, spoken as ESB v2 or as v3 through the API gateway.

    BkClient        what callers use: plan details (cached), launch, instance status, recent instances
    ├── EsbV2Client `<root>/api/c/compapi/v2/job/<api>/`, POST with credentials in body and header
    └── ApigwV3Client `<stage root>/api/v3/system/<api>` (app-state, the user in `X-Bk-Username`) or
                      `<stage root>/api/v3/<api>`; credentials only in `X-Bkapi-Authorization`

Both return the same domain models (`bot.bkjob.models`); the v3 shapes are converted in `bot.bkjob.gateway`. Failures
become the bot's `BkError`s here, so no caller ever sees aiohttp or which wire format was spoken.
"""

from __future__ import annotations

import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal, TypeVar

import aiohttp
from cachetools import TTLCache
from pydantic import BaseModel, ValidationError

from bot.bkjob import wire_v3 as bk_v3
from bot.bkjob.errors import BkApiError, BkCredentialsRefused, BkPermissionDenied, BkTimeout, BkUnavailable
from bot.bkjob.hostlogs import (
    MAX_HOSTS_PER_CALL,
    HostLogEntry,
    HostRef,
    HostResult,
    IpLogsV3,
    StepLogV2,
    batch_log_body,
    host_results_from_status,
    host_results_from_v2,
)
from bot.bkjob.models import (
    PASSWORD_PLACEHOLDER,
    Envelope,
    ExecuteJobData,
    ExecuteJobRequest,
    InstanceList,
    JobDetail,
    JobInstanceStatus,
    Permission,
    PlanPage,
    PlanSummary,
    StepInstance,
)
from bot.bodies import read_at_most
from bot.config import Settings
from bot.metrics import bk_answered

__all__ = ["ApigwV3Client", "BkClient", "EsbV2Client", "create_bk_client"]

log = logging.getLogger(__name__)

_Model = TypeVar("_Model", bound=BaseModel)

_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
# v2 get_job_instance_log answers every host of every step with its log in one body.
_MAX_LOG_RESPONSE_BYTES = 64 * 1024 * 1024
_LONE_SURROGATE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)

# What an operator must configure when the credentials are refused (reference §5, §9.7).
_HINT_APP = "Check BK_APP_CODE and BK_APP_SECRET: they must be the BlueKing app's code and secret, as a pair."
_HINT_ESB_USER = (
    "The ESB believes a bare bk_username only from apps on its skip-user-auth list: ask the BlueKing admin to add "
    "app `{app}` to the ESB's 免用户认证应用白名单, or set BK_API_VERSION=v3 to call the API gateway's app-state "
    "API (/api/v3/system/<api>, the user in X-Bk-Username), which needs no such list."
)
_HINT_APIGW_USER = (
    "This API gateway verifies the user of /api/v3/<api> and has no skip-user-auth list for app `{app}`: set "
    "BK_API_V3_PATH=system (the default) to call the app-state API /api/v3/system/<api> with the user in "
    "X-Bk-Username."
)
_HINT_APIGW_GRANT = (
    "Grant app `{app}` the bk-job gateway's resources it calls ({resources}): in the BlueKing API gateway, "
    "bk-job → permissions, or ask the admin to."
)
_HINT_NO_USER = (
    "BK-JOB received no user: the bot sends BK_USERNAME or the requester's mapped BK user in X-Bk-Username; "
    "check that the gateway passes the header to bk-job (its app-state resources do)."
)


class BkClient(ABC):
    """The one interface the bot uses, whatever BK-JOB API it speaks; one shared aiohttp session.

    Nothing is retried here: a retried launch could run twice, and a read is cheap to ask for again later.
    """

    names_hosts_by_id = False
    """Whether execute_job can take hosts by host ID (v3's `host_id_list`): how IPv6-only hosts are sent."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        api_root: str,
        app_code: str,
        app_secret: str,
        timeout: float,
        plan_cache_ttl: float,
        language: str = "en",
    ) -> None:
        self._session = session
        self._root = api_root.rstrip("/")
        self._app_code = app_code
        self._app_secret = app_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._language = language
        self._plans: TTLCache[tuple[int, int, str], JobDetail] = TTLCache(maxsize=512, ttl=max(plan_cache_ttl, 0.001))

    async def get_job_detail(
        self, *, bk_biz_id: int, bk_job_id: int, bk_username: str, fresh: bool = False
    ) -> JobDetail:
        """Plan details are cached briefly: the modal and the launch that follows read the same plan. Per BK user,
        since BK-JOB checks `view_job_plan` for each: one user's read must not show the plan to another.
        `fresh` reads past the cache (an approval checks the plan as it is now)."""
        key = (bk_biz_id, bk_job_id, bk_username)
        cached = None if fresh else self._plans.get(key)
        if cached is not None:
            return cached
        detail = await self._fetch_job_detail(bk_biz_id=bk_biz_id, bk_job_id=bk_job_id, bk_username=bk_username)
        self._plans[key] = detail
        return detail

    @abstractmethod
    async def _fetch_job_detail(self, *, bk_biz_id: int, bk_job_id: int, bk_username: str) -> JobDetail: ...

    @abstractmethod
    async def execute_job(self, request: ExecuteJobRequest, *, bk_username: str) -> ExecuteJobData:
        """Never retried: a retry after a lost answer could start the job twice."""

    @abstractmethod
    async def get_job_instance_status(
        self, *, bk_biz_id: int, job_instance_id: int, bk_username: str
    ) -> JobInstanceStatus: ...

    @abstractmethod
    async def get_job_instance_list(
        self,
        *,
        bk_biz_id: int,
        create_time_start_ms: int,
        create_time_end_ms: int,
        operator: str,
        bk_username: str,
    ) -> InstanceList:
        """Recent API-launched job instances of an operator: how a launch whose answer was lost is found."""

    @abstractmethod
    async def list_plans(
        self, *, bk_biz_id: int, bk_username: str, name: str | None = None, start: int = 0, length: int = 1000
    ) -> PlanPage:
        """One page of the business's plans, newest change first, `name` matched like SQL `LIKE %name%`."""

    # -- per-host results and logs (bot.bkjob.hostlogs) ------------------------------------------------------------

    @abstractmethod
    async def failed_host_results(
        self, *, bk_biz_id: int, job_instance_id: int, steps: Sequence[StepInstance], bk_username: str
    ) -> list[HostResult]:
        """The failed hosts of those steps (of a finished job's status) with their exit and error codes, and from
        v2 with their logs too."""

    @abstractmethod
    async def host_logs(
        self,
        *,
        bk_biz_id: int,
        job_instance_id: int,
        step_instance_id: int,
        hosts: Sequence[HostRef],
        bk_username: str,
    ) -> list[HostLogEntry]:
        """The latest attempt's log of at most 500 hosts of one step (`batch_get_job_instance_ip_log`)."""

    @abstractmethod
    async def secret_values(
        self, *, bk_biz_id: int, bk_job_id: int, names: Collection[str], bk_username: str
    ) -> list[str]:
        """Password defaults BK-JOB reveals (v2 only) and the defaults of the named variables, to mask in logs.

        Never cached and never logged: held only while one log is being cleaned.
        """

    @staticmethod
    def _lenient_envelope(api: str, status: int, raw: bytes) -> Envelope:
        """Logs carry whatever bytes a host printed: invalid UTF-8, and lone surrogates escaped as `\\udcXX`, become
        U+FFFD instead of making the whole answer unreadable."""
        # Most answers need neither repair: checking costs a scan, repairing a 4 MB answer of 5,000 hosts' logs
        # (the regex starts with a look-behind, so it is tried at every character) cost ~100 ms of CPU.
        try:
            text = raw.decode("utf-8")
            repaired = False
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            repaired = True
        if "\\ud" in text or "\\uD" in text:
            text = _LONE_SURROGATE.sub(r"\\ufffd", text)
            repaired = True
        return BkClient._envelope(api, status, text.encode("utf-8") if repaired else raw)

    @staticmethod
    def _check_batch(hosts: Sequence[HostRef]) -> None:
        if not hosts or len(hosts) > MAX_HOSTS_PER_CALL:
            raise ValueError(f"a batch log read takes 1 to {MAX_HOSTS_PER_CALL} hosts, not {len(hosts)}")

    @abstractmethod
    async def operate_job_instance(
        self, *, bk_biz_id: int, job_instance_id: int, operation_code: int, bk_username: str
    ) -> None:
        """Run control of a whole job (1: terminate). Never retried: an operation must reach BK-JOB once."""

    @abstractmethod
    async def operate_step_instance(
        self, *, bk_biz_id: int, job_instance_id: int, step_instance_id: int, operation_code: int, bk_username: str
    ) -> None:
        """Run control of one step (2 retry failed hosts, 3 ignore error, 6 confirm, 8 retry all, 9 end the
        confirmation). Never retried, like `operate_job_instance`."""

    # -- shared by both wire formats --------------------------------------------------------------------------

    def _credentials(self, bk_username: str) -> dict[str, str]:
        return {"bk_app_code": self._app_code, "bk_app_secret": self._app_secret, "bk_username": bk_username}

    def _headers(self, bk_username: str) -> dict[str, str]:
        return {
            "X-Bkapi-Authorization": json.dumps(self._credentials(bk_username)),
            "Blueking-Language": self._language,
            "Accept": "application/json",
        }

    async def _send(
        self,
        api: str,
        method: Literal["GET", "POST"],
        url: str,
        *,
        headers: Mapping[str, str],
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        limit: int = _MAX_RESPONSE_BYTES,
    ) -> tuple[int, bytes, str | None]:
        """(HTTP status, raw body, the gateway's request ID) or a BkError; the body is read up to a bound."""
        try:
            async with self._session.request(
                method, url, params=query, json=body, headers=headers, timeout=self._timeout
            ) as resp:
                raw = await read_at_most(resp.content, limit)
                status = resp.status
                request_id = resp.headers.get("X-Bkapi-Request-Id")
        except TimeoutError as exc:
            raise BkTimeout(f"BK-JOB {api} did not answer within {self._timeout.total:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise BkUnavailable(f"BK-JOB {api} could not be reached", request_sent=False) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise BkUnavailable(f"BK-JOB {api} broke off its answer ({type(exc).__name__})") from exc
        if len(raw) > limit:
            raise BkUnavailable(f"BK-JOB {api} answered more than {limit} bytes")
        return status, raw, request_id

    @staticmethod
    def _envelope(api: str, status: int, raw: bytes) -> Envelope:
        try:
            return Envelope.model_validate_json(raw)
        except ValidationError as exc:
            log.warning("bk api %s answered HTTP %s with a body that is not its envelope", api, status)
            raise BkUnavailable(f"BK-JOB {api} answered HTTP {status} with an unreadable body") from exc

    @staticmethod
    def _data(api: str, status: int, envelope: Envelope, request_id: str | None = None) -> Any:
        """JOB's business errors come as `result: false` (HTTP 200 for v2 and v3 alike)."""
        bk_answered(api, envelope.code, ok=envelope.result and envelope.code in (None, 0))
        if envelope.code == _PERMISSION_DENIED:
            _raise_permission_denied(api, status, envelope, request_id)
        if not envelope.result or (envelope.code not in (None, 0)):
            raise BkApiError(
                api,
                envelope.code,
                envelope.message or f"HTTP {status}",
                envelope.job_request_id or envelope.request_id or request_id,
            )
        if status != 200:
            raise BkUnavailable(f"BK-JOB {api} answered HTTP {status}")
        return envelope.data

    @staticmethod
    def _parse(api: str, model: type[_Model], data: Any) -> _Model:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise BkUnavailable(f"BK-JOB {api} answered data this bot cannot read") from exc


class EsbV2Client(BkClient):
    """Calls `<root>/api/c/compapi/v2/job/<api>/` with POST and a JSON body.

    POST even for the read APIs the ESB suggests GET for: the ESB accepts both, and a GET would put the app
    secret in a query string that proxies log. Credentials go in the body and in `X-Bkapi-Authorization`,
    which the ESB reads first.
    """

    async def _fetch_job_detail(self, *, bk_biz_id: int, bk_job_id: int, bk_username: str) -> JobDetail:
        data = await self._call(
            "get_job_detail", {"bk_biz_id": bk_biz_id, "bk_job_id": bk_job_id}, bk_username=bk_username
        )
        return self._parse("get_job_detail", JobDetail, data)

    async def execute_job(self, request: ExecuteJobRequest, *, bk_username: str) -> ExecuteJobData:
        data = await self._call("execute_job", request.wire(), bk_username=bk_username)
        return self._parse("execute_job", ExecuteJobData, data)

    async def get_job_instance_status(
        self, *, bk_biz_id: int, job_instance_id: int, bk_username: str
    ) -> JobInstanceStatus:
        data = await self._call(
            "get_job_instance_status",
            {"bk_biz_id": bk_biz_id, "job_instance_id": job_instance_id},
            bk_username=bk_username,
        )
        return self._parse("get_job_instance_status", JobInstanceStatus, data)

    async def get_job_instance_list(
        self,
        *,
        bk_biz_id: int,
        create_time_start_ms: int,
        create_time_end_ms: int,
        operator: str,
        bk_username: str,
    ) -> InstanceList:
        """Only BK-JOB's v3 component offers it; through the ESB it lives under `jobv3`."""
        data = await self._call(
            "get_job_instance_list",
            {
                "bk_biz_id": bk_biz_id,
                "create_time_start": create_time_start_ms,
                "create_time_end": create_time_end_ms,
                "operator": operator,
                "launch_mode": 2,
                "type": 0,
                "start": 0,
                "length": 1000,
            },
            bk_username=bk_username,
            component="jobv3",
        )
        return self._parse("get_job_instance_list", InstanceList, data)

    async def list_plans(
        self, *, bk_biz_id: int, bk_username: str, name: str | None = None, start: int = 0, length: int = 1000
    ) -> PlanPage:
        """`get_job_list` answers a bare list of rows (`bk_job_id`) and no total: a short page is the last."""
        params: dict[str, Any] = {"bk_biz_id": bk_biz_id, "start": start, "length": length}
        if name:
            params["name"] = name
        data = await self._call("get_job_list", params, bk_username=bk_username)
        rows = self._parse("get_job_list", _PlanRows, {"rows": data or []}).rows
        return PlanPage(plans=rows)

    async def operate_job_instance(
        self, *, bk_biz_id: int, job_instance_id: int, operation_code: int, bk_username: str
    ) -> None:
        params = {"bk_biz_id": bk_biz_id, "job_instance_id": job_instance_id, "operation_code": operation_code}
        await self._call("operate_job_instance", params, bk_username=bk_username)

    async def operate_step_instance(
        self, *, bk_biz_id: int, job_instance_id: int, step_instance_id: int, operation_code: int, bk_username: str
    ) -> None:
        params = {
            "bk_biz_id": bk_biz_id,
            "job_instance_id": job_instance_id,
            "step_instance_id": step_instance_id,
            "operation_code": operation_code,
        }
        await self._call("operate_step_instance", params, bk_username=bk_username)

    async def failed_host_results(
        self, *, bk_biz_id: int, job_instance_id: int, steps: Sequence[StepInstance], bk_username: str
    ) -> list[HostResult]:
        """One `get_job_instance_log` call: every step and host of the latest attempt, logs included."""
        api = "get_job_instance_log"
        params = {"bk_biz_id": bk_biz_id, "job_instance_id": job_instance_id}
        data = await self._call(api, params, bk_username=bk_username, limit=_MAX_LOG_RESPONSE_BYTES, lenient=True)
        parsed = [self._parse(api, StepLogV2, item) for item in data or []]
        return host_results_from_v2(parsed, [s.step_instance_id for s in steps])

    async def host_logs(
        self,
        *,
        bk_biz_id: int,
        job_instance_id: int,
        step_instance_id: int,
        hosts: Sequence[HostRef],
        bk_username: str,
    ) -> list[HostLogEntry]:
        """v2 has no per-host log API; the ESB serves JOB's v3 one under `jobv3`, with `bk_biz_id`."""
        self._check_batch(hosts)
        api = "batch_get_job_instance_ip_log"
        params = {"bk_biz_id": bk_biz_id, **batch_log_body(step_instance_id, job_instance_id, hosts)}
        data = await self._call(api, params, bk_username=bk_username, component="jobv3", lenient=True)
        return self._parse(api, IpLogsV3, data).entries()

    async def secret_values(
        self, *, bk_biz_id: int, bk_job_id: int, names: Collection[str], bk_username: str
    ) -> list[str]:
        """v2 `get_job_detail` returns password defaults decrypted (reference §9.2): read raw, never cached."""
        data = await self._call(
            "get_job_detail", {"bk_biz_id": bk_biz_id, "bk_job_id": bk_job_id}, bk_username=bk_username
        )
        variables = data.get("global_vars") if isinstance(data, dict) else None
        return _secret_defaults(variables, type_key="category", names=names)

    async def _call(
        self,
        api: str,
        params: Mapping[str, Any],
        *,
        bk_username: str,
        component: str = "job",
        limit: int = _MAX_RESPONSE_BYTES,
        lenient: bool = False,
    ) -> Any:
        """`lenient` for answers carrying logs (bytes a host printed); `limit` for the ones that carry them all."""
        url = f"{self._root}/api/c/compapi/v2/{component}/{api}/"
        body = {**self._credentials(bk_username), **params}
        status, raw, _ = await self._send(api, "POST", url, headers=self._headers(bk_username), body=body, limit=limit)
        envelope = self._lenient_envelope(api, status, raw) if lenient else self._envelope(api, status, raw)
        self._raise_refused_credentials(api, envelope)
        return self._data(api, status, envelope)

    def _raise_refused_credentials(self, api: str, envelope: Envelope) -> None:
        """The ESB's own refusals (code 1306000, paas2/esb bkauth and bkapp validators) say which credential."""
        message = envelope.message or ""
        if envelope.result or envelope.code != _ESB_ERROR:
            return
        if message.startswith("User authentication failed"):
            hint = _HINT_ESB_USER.format(app=self._app_code)
        elif message.startswith(("APP Secret", "Invalid APP Code", "APP Code")):
            hint = _HINT_APP
        else:
            return
        _refused(api, envelope.code, message, envelope.request_id, hint)


class ApigwV3Client(BkClient):
    """Calls the API gateway: POST for the launch, GET for the reads.

    By default the app-state resources `<stage root>/api/v3/system/<api>`: the gateway checks only the app, and
    JOB takes the user from `X-Bk-Username` (a current gateway has no skip-user-auth list for the user-state
    `/api/v3/<api>`, which `path="user"` calls with `bk_username` in the auth header, for old gateways).
    The gateway reads credentials only from `X-Bkapi-Authorization` (`allow_auth_from_params: false`), so they
    are never put in a body or a query string. Its own refusals (`code_name`, HTTP 4xx/5xx) are told apart
    from JOB's answers.
    """

    names_hosts_by_id = True

    def __init__(self, *, path: Literal["system", "user"] = "system", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._path = path

    def _headers(self, bk_username: str) -> dict[str, str]:
        if self._path == "user":
            return super()._headers(bk_username)
        app = {"bk_app_code": self._app_code, "bk_app_secret": self._app_secret}
        return {
            "X-Bkapi-Authorization": json.dumps(app),
            "X-Bk-Username": bk_username,
            "Blueking-Language": self._language,
            "Accept": "application/json",
        }

    async def _fetch_job_detail(self, *, bk_biz_id: int, bk_job_id: int, bk_username: str) -> JobDetail:
        query = bk_v3.plan_detail_query(bk_biz_id=bk_biz_id, bk_job_id=bk_job_id)
        data = await self._call("get_job_plan_detail", "GET", bk_username=bk_username, query=query)
        return self._parse("get_job_plan_detail", bk_v3.PlanDetailV3, data).to_domain()

    async def execute_job(self, request: ExecuteJobRequest, *, bk_username: str) -> ExecuteJobData:
        body = bk_v3.execute_body(request)
        data = await self._call("execute_job_plan", "POST", bk_username=bk_username, body=body)
        return self._parse("execute_job_plan", ExecuteJobData, data)

    async def get_job_instance_status(
        self, *, bk_biz_id: int, job_instance_id: int, bk_username: str
    ) -> JobInstanceStatus:
        query = bk_v3.instance_status_query(bk_biz_id=bk_biz_id, job_instance_id=job_instance_id)
        data = await self._call("get_job_instance_status", "GET", bk_username=bk_username, query=query)
        return self._parse("get_job_instance_status", bk_v3.InstanceStatusV3, data).to_domain()

    async def get_job_instance_list(
        self,
        *,
        bk_biz_id: int,
        create_time_start_ms: int,
        create_time_end_ms: int,
        operator: str,
        bk_username: str,
    ) -> InstanceList:
        query = bk_v3.instance_list_query(
            bk_biz_id=bk_biz_id,
            create_time_start_ms=create_time_start_ms,
            create_time_end_ms=create_time_end_ms,
            operator=operator,
        )
        data = await self._call("get_job_instance_list", "GET", bk_username=bk_username, query=query)
        return self._parse("get_job_instance_list", InstanceList, data)

    async def list_plans(
        self, *, bk_biz_id: int, bk_username: str, name: str | None = None, start: int = 0, length: int = 1000
    ) -> PlanPage:
        query = bk_v3.plan_list_query(bk_biz_id=bk_biz_id, name=name, start=start, length=length)
        data = await self._call("get_job_plan_list", "GET", bk_username=bk_username, query=query)
        return self._parse("get_job_plan_list", bk_v3.PlanListV3, data).to_domain()

    async def failed_host_results(
        self, *, bk_biz_id: int, job_instance_id: int, steps: Sequence[StepInstance], bk_username: str
    ) -> list[HostResult]:
        """v3's status answer already carries each host's exit and error code: no call; logs are read per host."""
        return host_results_from_status(steps)

    async def host_logs(
        self,
        *,
        bk_biz_id: int,
        job_instance_id: int,
        step_instance_id: int,
        hosts: Sequence[HostRef],
        bk_username: str,
    ) -> list[HostLogEntry]:
        self._check_batch(hosts)
        api = "batch_get_job_instance_ip_log"
        body = {**bk_v3.scope(bk_biz_id), **batch_log_body(step_instance_id, job_instance_id, hosts)}
        data = await self._call(api, "POST", bk_username=bk_username, body=body, lenient=True)
        return self._parse(api, IpLogsV3, data).entries()

    async def secret_values(
        self, *, bk_biz_id: int, bk_job_id: int, names: Collection[str], bk_username: str
    ) -> list[str]:
        """v3 masks every password default as `******`: only the named (string) variables' defaults are known."""
        query = bk_v3.plan_detail_query(bk_biz_id=bk_biz_id, bk_job_id=bk_job_id)
        data = await self._call("get_job_plan_detail", "GET", bk_username=bk_username, query=query)
        variables = data.get("global_var_list") if isinstance(data, dict) else None
        return _secret_defaults(variables, type_key="type", names=names)

    async def operate_job_instance(
        self, *, bk_biz_id: int, job_instance_id: int, operation_code: int, bk_username: str
    ) -> None:
        body = bk_v3.operate_job_body(
            bk_biz_id=bk_biz_id, job_instance_id=job_instance_id, operation_code=operation_code
        )
        await self._call("operate_job_instance", "POST", bk_username=bk_username, body=body)

    async def operate_step_instance(
        self, *, bk_biz_id: int, job_instance_id: int, step_instance_id: int, operation_code: int, bk_username: str
    ) -> None:
        body = bk_v3.operate_step_body(
            bk_biz_id=bk_biz_id,
            job_instance_id=job_instance_id,
            step_instance_id=step_instance_id,
            operation_code=operation_code,
        )
        await self._call("operate_step_instance", "POST", bk_username=bk_username, body=body)

    async def _call(
        self,
        api: str,
        method: Literal["GET", "POST"],
        *,
        bk_username: str,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        lenient: bool = False,
    ) -> Any:
        prefix = "/api/v3/system" if self._path == "system" else "/api/v3"
        url = f"{self._root}{prefix}/{api}"
        status, raw, request_id = await self._send(
            api, method, url, headers=self._headers(bk_username), query=query, body=body
        )
        self._raise_refused_credentials(api, status, raw, request_id)
        _raise_gateway_error(api, status, raw, request_id)
        envelope = self._lenient_envelope(api, status, raw) if lenient else self._envelope(api, status, raw)
        return self._data(api, status, envelope, request_id)

    def _raise_refused_credentials(self, api: str, status: int, raw: bytes, request_id: str | None) -> None:
        """The gateway's INVALID_ARGS / APP_NO_PERMISSION, and job-gateway's 401 without a user or app."""
        if status not in (400, 401, 403):
            return
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return
        if not isinstance(body, dict):
            return
        code = body.get("code") if isinstance(body.get("code"), int) else None
        message = str(body.get("message") or "")
        if code == _APIGW_INVALID_ARGS and "user authentication failed" in message.lower():
            hint = _HINT_APIGW_USER.format(app=self._app_code)
        elif code == _APIGW_INVALID_ARGS and "app" in message.lower():
            hint = _HINT_APP
        elif code == _APIGW_APP_NO_PERMISSION:
            prefix = "/api/v3/system/" if self._path == "system" else "/api/v3/"
            hint = _HINT_APIGW_GRANT.format(app=self._app_code, resources=prefix + "*")
        elif code in (_JOB_MISSING_USER, _JOB_MISSING_APP):
            hint = _HINT_NO_USER if code == _JOB_MISSING_USER else _HINT_APP
        else:
            return
        if isinstance(body.get("code_name"), str):
            message = f"API gateway {body['code_name']}: {message}"
        _refused(api, code, message, request_id, hint)


_PERMISSION_DENIED = 9900403
_ESB_ERROR = 1306000
_APIGW_INVALID_ARGS = 1640001
_APIGW_APP_NO_PERMISSION = 1640301
_JOB_MISSING_USER = 1247002
_JOB_MISSING_APP = 1247004


def _raise_permission_denied(api: str, status: int, envelope: Envelope, request_id: str | None) -> None:
    """9900403 from any API (launch, plan detail, status): the missing IAM actions and resources, by name."""
    try:
        permission = Permission.model_validate(envelope.permission or {})
    except ValidationError:
        permission = Permission()
    raise BkPermissionDenied(
        api,
        envelope.code,
        envelope.message or f"HTTP {status}",
        envelope.job_request_id or envelope.request_id or request_id,
        missing=permission.missing(),
        apply_url=permission.apply_url,
    )


def _refused(api: str, code: int | None, message: str, request_id: str | None, hint: str) -> None:
    """Every call fails the same way until an operator fixes the settings: say so loudly, and what to set."""
    log.error("BK-JOB %s refused the bot's credentials: [%s] %s. %s", api, code, message, hint)
    raise BkCredentialsRefused(api, code, message, request_id, hint=hint)


class _PlanRows(BaseModel):
    """v2 `get_job_list` data is a JSON array; wrapped so that one model validates it."""

    rows: list[PlanSummary]


def _raise_gateway_error(api: str, status: int, raw: bytes, request_id: str | None) -> None:
    """The gateway's own refusals carry `code_name` (APIGW "gateway error response", reference §5.2).

    A 4xx means the request never reached JOB: a `BkApiError`, so a launch is reported as not started. A 5xx
    (BAD_GATEWAY, REQUEST_BACKEND_TIMEOUT) may come after JOB acted on it, so it is reported like a lost
    answer: `BkTimeout` or `BkUnavailable`, which make the bot look for the instance instead of saying
    nothing ran.
    """
    if status < 400:
        return
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return
    if not isinstance(body, dict) or not isinstance(body.get("code_name"), str):
        return
    code_name = body["code_name"]
    code = body.get("code") if isinstance(body.get("code"), int) else None
    message = str(body.get("message") or "").strip()
    said = f"API gateway {code_name}" + (f": {message}" if message else "")
    if status < 500:
        raise BkApiError(api, code, said, request_id)
    text = f"BK-JOB {api}: HTTP {status} [{code}] {said}"
    if status == 504 or code_name == "REQUEST_BACKEND_TIMEOUT":
        raise BkTimeout(text)
    raise BkUnavailable(text)


def _secret_defaults(variables: Any, *, type_key: str, names: Collection[str]) -> list[str]:
    """Values of password variables (type 4) and of the named ones, as far as BK-JOB shows them."""
    out: list[str] = []
    for var in variables if isinstance(variables, list) else []:
        if not isinstance(var, dict):
            continue
        value = var.get("value")
        if not isinstance(value, str) or not value or value == PASSWORD_PLACEHOLDER:
            continue
        if var.get(type_key) == 4 or var.get("name") in names:
            out.append(value)
    return out


def create_bk_client(settings: Settings, session: aiohttp.ClientSession) -> BkClient:
    """`BK_API_VERSION` picks the wire format; everything else is configured the same way for both."""
    common: dict[str, Any] = {
        "session": session,
        "api_root": settings.bk_api_root(),
        "app_code": settings.bk_app_code,
        "app_secret": settings.bk_app_secret.get_secret_value(),
        "timeout": settings.bk_timeout,
        "plan_cache_ttl": settings.bk_plan_cache_ttl,
    }
    if settings.bk_api_version == "v3":
        return ApigwV3Client(path=settings.bk_api_v3_path, **common)
    return EsbV2Client(**common)
