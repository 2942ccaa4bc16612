"""The BK-JOB client: one interface for the bot, spoken as ESB v2 or as v3 through the API gateway.

    BkClient        what callers use: plan details (cached), launch, instance status, recent instances
    ├── EsbV2Client `<root>/api/c/compapi/v2/job/<api>/`, POST with credentials in body and header
    └── ApigwV3Client `<stage root>/api/v3/system/<api>` (app-state, the user in `X-Bk-Username`) or
                      `<stage root>/api/v3/<api>`; credentials only in `X-Bkapi-Authorization`

This module holds the interface and what both wire formats share (the transport, JOB's envelope, the errors);
`bot.bkjob.esb` and `bot.bkjob.gateway` hold the two clients, and `create_bk_client` picks one. Both return the same
domain models (`bot.bkjob.models`); the v3 shapes are converted in `bot.bkjob.wire_v3`. Failures become the bot's
`BkError`s here, so no caller ever sees aiohttp or which wire format was spoken.
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

from bot.bkjob.errors import BkApiError, BkCredentialsRefused, BkPermissionDenied, BkTimeout, BkUnavailable
from bot.bkjob.hostlogs import MAX_HOSTS_PER_CALL, HostLogEntry, HostRef, HostResult
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
    StepInstance,
)
from bot.bodies import read_at_most
from bot.config import Settings
from bot.metrics import bk_answered

__all__ = ["BkClient", "create_bk_client"]

log = logging.getLogger(__name__)

_Model = TypeVar("_Model", bound=BaseModel)

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
_LONE_SURROGATE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)

# What an operator must configure when the credentials are refused (docs/bkjob.md §auth).
HINT_APP = "Check BK_APP_CODE and BK_APP_SECRET: they must be the BlueKing app's code and secret, as a pair."


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
        limit: int = MAX_RESPONSE_BYTES,
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

    @staticmethod
    def _refused(api: str, code: int | None, message: str, request_id: str | None, hint: str) -> None:
        """Every call fails the same way until an operator fixes the settings: say so loudly, and what to set."""
        log.error("BK-JOB %s refused the bot's credentials: [%s] %s. %s", api, code, message, hint)
        raise BkCredentialsRefused(api, code, message, request_id, hint=hint)

    @staticmethod
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


_PERMISSION_DENIED = 9900403


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
    # Imported here: both clients derive from BkClient, defined above.
    from bot.bkjob.esb import EsbV2Client
    from bot.bkjob.gateway import ApigwV3Client

    if settings.bk_api_version == "v3":
        return ApigwV3Client(path=settings.bk_api_v3_path, **common)
    return EsbV2Client(**common)
