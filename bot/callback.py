"""The `bk_callback_url` route: authenticate by token, parse whatever the content type, answer, then report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from aiohttp import web
from pydantic import ValidationError

from bot.background import Background
from bot.bk_models import CallbackBody
from bot.bodies import read_at_most
from bot.results import Results
from bot.store import LaunchState, Store
from bot.tokens import hash_token, is_well_formed

__all__ = ["CallbackRoute"]

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 256 * 1024  # every step instance is listed; 256 KiB holds thousands of steps
"""BK-JOB ids are Java `long`s; anything larger cannot be stored (SQLite and PostgreSQL use 64-bit integers)."""


class CallbackRoute:
    """BK-JOB counts only HTTP 200 as delivered and re-sends once with a form content type otherwise."""

    def __init__(
        self,
        *,
        store: Store,
        results: Results,
        background: Background,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._results = results
        self._background = background
        self._clock = clock

    async def handle(self, request: web.Request) -> web.Response:
        token = request.match_info.get("token", "")
        launch = await self._store.find_launch_by_token(hash_token(token)) if is_well_formed(token) else None
        if launch is None:
            log.warning("callback with an unknown token from %s", request.remote)
            return _answer(404, "unknown callback token")
        if (request.content_length or 0) > MAX_CALLBACK_BYTES:
            return _answer(413, f"callback body larger than {MAX_CALLBACK_BYTES} bytes")
        raw = await read_at_most(request.content, MAX_CALLBACK_BYTES)
        if len(raw) > MAX_CALLBACK_BYTES:
            return _answer(413, f"callback body larger than {MAX_CALLBACK_BYTES} bytes")
        body = _parse(raw)
        if body is None:
            log.warning("unreadable callback body for launch %s", launch.id)
            return _answer(400, "body is not a BK-JOB callback: expected JSON with job_instance_id and status")
        if launch.job_instance_id is None:
            # The callback beat execute_job's answer (or that answer was lost): it names the instance.
            await self._store.set_outcome(
                launch.id, LaunchState.RUNNING, now=self._clock(), job_instance_id=body.job_instance_id
            )
        elif launch.job_instance_id != body.job_instance_id:
            log.warning(
                "callback for launch %s names instance %s, not %s",
                launch.id,
                body.job_instance_id,
                launch.job_instance_id,
            )
            return _answer(409, "this callback URL belongs to another job instance")
        log.info("callback for instance %s: status %s", body.job_instance_id, body.status)
        self._background.spawn(
            self._results.report(launch.id, hinted_status=body.status), name=f"report-{body.job_instance_id}"
        )
        return _answer(200, "ok")


def _parse(raw: bytes) -> CallbackBody | None:
    """JSON whatever the Content-Type: BK-JOB's re-send says form-urlencoded but carries the same JSON text."""
    try:
        return CallbackBody.model_validate(json.loads(raw))
    except (ValueError, RecursionError, ValidationError):
        return None


def _answer(status: int, message: str) -> web.Response:
    return web.json_response({"ok": status == 200, "message": message}, status=status)
