"""The BK-JOB client: one interface for the bot, spoken as ESB v2 or as v3 through the API gateway.

    BkClient        what callers use: plan details (cached), launch, instance status, recent instances
    ├── EsbV2Client `<root>/api/c/compapi/v2/job/<api>/`, POST with credentials in body and header
    └── ApigwV3Client `<stage root>/api/v3/<api>`, credentials only in `X-Bkapi-Authorization`

Both return the same domain models (`bot.bk_models`); the v3 shapes are converted in `bot.bk_v3`. Failures
become the bot's `BkError`s here, so no caller ever sees aiohttp or which wire format was spoken.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import aiohttp
from cachetools import TTLCache
from pydantic import BaseModel, ValidationError

from bot import bk_v3
from bot.bk_models import Envelope, ExecuteJobData, ExecuteJobRequest, InstanceList, JobDetail, JobInstanceStatus
from bot.bodies import read_at_most
from bot.config import Settings
from bot.errors import BkApiError, BkTimeout, BkUnavailable

__all__ = ["ApigwV3Client", "BkClient", "EsbV2Client", "create_bk_client"]

log = logging.getLogger(__name__)

_Model = TypeVar("_Model", bound=BaseModel)

_MAX_RESPONSE_BYTES = 8 * 1024 * 1024


class BkClient(ABC):
    """The one interface the bot uses, whatever BK-JOB API it speaks; one shared aiohttp session.

    Nothing is retried here: a retried launch could run twice, and a read is cheap to ask for again later.
    """

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
        self._plans: TTLCache[tuple[int, int], JobDetail] = TTLCache(maxsize=512, ttl=max(plan_cache_ttl, 0.001))

    async def get_job_detail(self, *, bk_biz_id: int, bk_job_id: int, bk_username: str) -> JobDetail:
        """Plan details are cached briefly: the modal and the launch that follows read the same plan."""
        key = (bk_biz_id, bk_job_id)
        cached = self._plans.get(key)
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
    ) -> tuple[int, bytes, str | None]:
        """(HTTP status, raw body, the gateway's request ID) or a BkError; the body is read up to a bound."""
        try:
            async with self._session.request(
                method, url, params=query, json=body, headers=headers, timeout=self._timeout
            ) as resp:
                raw = await read_at_most(resp.content, _MAX_RESPONSE_BYTES)
                status = resp.status
                request_id = resp.headers.get("X-Bkapi-Request-Id")
        except TimeoutError as exc:
            raise BkTimeout(f"BK-JOB {api} did not answer within {self._timeout.total:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise BkUnavailable(f"BK-JOB {api} could not be reached", request_sent=False) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise BkUnavailable(f"BK-JOB {api} broke off its answer ({type(exc).__name__})") from exc
        if len(raw) > _MAX_RESPONSE_BYTES:
            raise BkUnavailable(f"BK-JOB {api} answered more than {_MAX_RESPONSE_BYTES} bytes")
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

    async def _call(self, api: str, params: Mapping[str, Any], *, bk_username: str, component: str = "job") -> Any:
        url = f"{self._root}/api/c/compapi/v2/{component}/{api}/"
        body = {**self._credentials(bk_username), **params}
        status, raw, _ = await self._send(api, "POST", url, headers=self._headers(bk_username), body=body)
        return self._data(api, status, self._envelope(api, status, raw))


class ApigwV3Client(BkClient):
    """Calls `<stage root>/api/v3/<api>` through the API gateway: POST for the launch, GET for the reads.

    The gateway reads credentials only from `X-Bkapi-Authorization` (`allow_auth_from_params: false`), so they
    are never put in a body or a query string. Its own refusals (`code_name`, HTTP 4xx/5xx) are told apart
    from JOB's answers.
    """

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

    async def _call(
        self,
        api: str,
        method: Literal["GET", "POST"],
        *,
        bk_username: str,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        url = f"{self._root}/api/v3/{api}"
        status, raw, request_id = await self._send(
            api, method, url, headers=self._headers(bk_username), query=query, body=body
        )
        _raise_gateway_error(api, status, raw, request_id)
        return self._data(api, status, self._envelope(api, status, raw), request_id)


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


def create_bk_client(settings: Settings, session: aiohttp.ClientSession) -> BkClient:
    """`BK_API_VERSION` picks the wire format; everything else is configured the same way for both."""
    cls: type[BkClient] = ApigwV3Client if settings.bk_api_version == "v3" else EsbV2Client
    return cls(
        session=session,
        api_root=settings.bk_api_root(),
        app_code=settings.bk_app_code,
        app_secret=settings.bk_app_secret.get_secret_value(),
        timeout=settings.bk_timeout,
        plan_cache_ttl=settings.bk_plan_cache_ttl,
    )
