"""BK-JOB's v2 API through the ESB: `<root>/api/c/compapi/v2/job/<api>/`, POST with credentials in body and header.

The ESB also serves JOB's v3 component under `jobv3` (the instance list and per-host logs): called the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from bot.bkjob.client import HINT_APP, MAX_RESPONSE_BYTES, BkClient
from bot.bkjob.hostlogs import (
    HostLogEntry,
    HostRef,
    HostResult,
    IpLogsV3,
    StepLogV2,
    batch_log_body,
    host_results_from_v2,
)
from bot.bkjob.models import (
    Envelope,
    ExecuteJobData,
    ExecuteJobRequest,
    InstanceList,
    JobDetail,
    JobInstanceStatus,
    PlanPage,
    PlanSummary,
    StepInstance,
)

__all__ = ["EsbV2Client"]

# v2 get_job_instance_log answers every host of every step with its log in one body.
_MAX_LOG_RESPONSE_BYTES = 64 * 1024 * 1024
_ESB_ERROR = 1306000
_HINT_ESB_USER = (
    "The ESB believes a bare bk_username only from apps on its skip-user-auth list: ask the BlueKing admin to add "
    "app `{app}` to the ESB's 免用户认证应用白名单, or set BK_API_VERSION=v3 to call the API gateway's app-state "
    "API (/api/v3/system/<api>, the user in X-Bk-Username), which needs no such list."
)


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
        """v2 `get_job_detail` returns password defaults decrypted (docs/bkjob.md §variables): read raw, never
        cached."""
        data = await self._call(
            "get_job_detail", {"bk_biz_id": bk_biz_id, "bk_job_id": bk_job_id}, bk_username=bk_username
        )
        variables = data.get("global_vars") if isinstance(data, dict) else None
        return self._secret_defaults(variables, type_key="category", names=names)

    async def _call(
        self,
        api: str,
        params: Mapping[str, Any],
        *,
        bk_username: str,
        component: str = "job",
        limit: int = MAX_RESPONSE_BYTES,
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
            hint = HINT_APP
        else:
            return
        self._refused(api, envelope.code, message, envelope.request_id, hint)


class _PlanRows(BaseModel):
    """v2 `get_job_list` data is a JSON array; wrapped so that one model validates it."""

    rows: list[PlanSummary]
