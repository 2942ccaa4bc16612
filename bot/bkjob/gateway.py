"""BK-JOB's v3 API through the BlueKing API gateway: `<stage root>/api/v3/system/<api>` (app-state, the user in
`X-Bk-Username`) or `<stage root>/api/v3/<api>`; credentials only in `X-Bkapi-Authorization`.

The v3 shapes and their conversion to the domain models are `bot.bkjob.wire_v3`'s.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

from bot.bkjob import wire_v3
from bot.bkjob.client import HINT_APP, BkClient
from bot.bkjob.errors import BkApiError, BkTimeout, BkUnavailable
from bot.bkjob.hostlogs import (
    HostLogEntry,
    HostRef,
    HostResult,
    IpLogsV3,
    batch_log_body,
    host_results_from_status,
)
from bot.bkjob.models import (
    ExecuteJobData,
    ExecuteJobRequest,
    InstanceList,
    JobDetail,
    JobInstanceStatus,
    PlanPage,
    StepInstance,
)

__all__ = ["ApigwV3Client"]

_APIGW_INVALID_ARGS = 1640001
_APIGW_APP_NO_PERMISSION = 1640301
_JOB_MISSING_USER = 1247002
_JOB_MISSING_APP = 1247004

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
        query = wire_v3.plan_detail_query(bk_biz_id=bk_biz_id, bk_job_id=bk_job_id)
        data = await self._call("get_job_plan_detail", "GET", bk_username=bk_username, query=query)
        return self._parse("get_job_plan_detail", wire_v3.PlanDetailV3, data).to_domain()

    async def execute_job(self, request: ExecuteJobRequest, *, bk_username: str) -> ExecuteJobData:
        body = wire_v3.execute_body(request)
        data = await self._call("execute_job_plan", "POST", bk_username=bk_username, body=body)
        return self._parse("execute_job_plan", ExecuteJobData, data)

    async def get_job_instance_status(
        self, *, bk_biz_id: int, job_instance_id: int, bk_username: str
    ) -> JobInstanceStatus:
        query = wire_v3.instance_status_query(bk_biz_id=bk_biz_id, job_instance_id=job_instance_id)
        data = await self._call("get_job_instance_status", "GET", bk_username=bk_username, query=query)
        return self._parse("get_job_instance_status", wire_v3.InstanceStatusV3, data).to_domain()

    async def get_job_instance_list(
        self,
        *,
        bk_biz_id: int,
        create_time_start_ms: int,
        create_time_end_ms: int,
        operator: str,
        bk_username: str,
    ) -> InstanceList:
        query = wire_v3.instance_list_query(
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
        query = wire_v3.plan_list_query(bk_biz_id=bk_biz_id, name=name, start=start, length=length)
        data = await self._call("get_job_plan_list", "GET", bk_username=bk_username, query=query)
        return self._parse("get_job_plan_list", wire_v3.PlanListV3, data).to_domain()

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
        body = {**wire_v3.scope(bk_biz_id), **batch_log_body(step_instance_id, job_instance_id, hosts)}
        data = await self._call(api, "POST", bk_username=bk_username, body=body, lenient=True)
        return self._parse(api, IpLogsV3, data).entries()

    async def secret_values(
        self, *, bk_biz_id: int, bk_job_id: int, names: Collection[str], bk_username: str
    ) -> list[str]:
        """v3 masks every password default as `******`: only the named (string) variables' defaults are known."""
        query = wire_v3.plan_detail_query(bk_biz_id=bk_biz_id, bk_job_id=bk_job_id)
        data = await self._call("get_job_plan_detail", "GET", bk_username=bk_username, query=query)
        variables = data.get("global_var_list") if isinstance(data, dict) else None
        return self._secret_defaults(variables, type_key="type", names=names)

    async def operate_job_instance(
        self, *, bk_biz_id: int, job_instance_id: int, operation_code: int, bk_username: str
    ) -> None:
        body = wire_v3.operate_job_body(
            bk_biz_id=bk_biz_id, job_instance_id=job_instance_id, operation_code=operation_code
        )
        await self._call("operate_job_instance", "POST", bk_username=bk_username, body=body)

    async def operate_step_instance(
        self, *, bk_biz_id: int, job_instance_id: int, step_instance_id: int, operation_code: int, bk_username: str
    ) -> None:
        body = wire_v3.operate_step_body(
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
            hint = HINT_APP
        elif code == _APIGW_APP_NO_PERMISSION:
            prefix = "/api/v3/system/" if self._path == "system" else "/api/v3/"
            hint = _HINT_APIGW_GRANT.format(app=self._app_code, resources=prefix + "*")
        elif code in (_JOB_MISSING_USER, _JOB_MISSING_APP):
            hint = _HINT_NO_USER if code == _JOB_MISSING_USER else HINT_APP
        else:
            return
        if isinstance(body.get("code_name"), str):
            message = f"API gateway {body['code_name']}: {message}"
        self._refused(api, code, message, request_id, hint)


def _raise_gateway_error(api: str, status: int, raw: bytes, request_id: str | None) -> None:
    """The gateway's own refusals carry `code_name` (APIGW "gateway error response", docs/bkjob.md §gateway-errors).

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
