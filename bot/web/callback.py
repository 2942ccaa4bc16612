"""The `bk_callback_url` route: authenticate by token, parse whatever the content type, answer, then report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from aiohttp import web
from cachetools import TTLCache
from pydantic import ValidationError

from bot import metrics
from bot.bkjob.models import CallbackBody
from bot.bodies import read_at_most
from bot.core.background import Background
from bot.core.results import Results
from bot.core.tokens import hash_token, is_well_formed
from bot.store import LaunchRecord, LaunchState, Store

__all__ = ["CallbackRoute"]

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 256 * 1024  # every step instance is listed; 256 KiB holds thousands of steps
"""BK-JOB ids are Java `long`s; anything larger cannot be stored (SQLite and PostgreSQL use 64-bit integers)."""
REPLAY_WINDOW_S = 60.0
REPLAYS_PER_WINDOW = 10
"""Callbacks one token may make per window: BK-JOB sends one per finish (and re-sends once); more is a replay."""
RETRY_FAILED_READ_S = 2.0
"""After a callback whose status could not be read, the poller reads again this soon (then with its back-off)."""


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
        self._recent: TTLCache[str, list[float]] = TTLCache(maxsize=10_000, ttl=REPLAY_WINDOW_S, timer=clock)
        # (launch, the callback's content, the launch's recorded end) already looked into: a replay costs nothing.
        self._seen: TTLCache[tuple[str, str, int | None, float | None], bool] = TTLCache(maxsize=10_000, ttl=3600)

    async def handle(self, request: web.Request) -> web.Response:
        response = await self._respond(request)
        metrics.callback_answered(response.status)
        return response

    async def _respond(self, request: web.Request) -> web.Response:
        token = request.match_info.get("token", "")
        well_formed = is_well_formed(token)
        if well_formed and self._replayed(hash_token(token)):
            return _answer(429, "too many callbacks for this launch; try again later", retry_after=REPLAY_WINDOW_S)
        launch = await self._store.find_launch_by_token(hash_token(token)) if well_formed else None
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
        if launch.state is LaunchState.NOT_STARTED:
            log.warning("callback for launch %s, which BK-JOB refused or never started; ignored", launch.id)
            return _answer(409, "this launch never started; a callback cannot revive it")
        if launch.job_instance_id is None:
            return await self._unanswered(launch, body)
        if launch.job_instance_id != body.job_instance_id:
            log.warning(
                "callback for launch %s names instance %s, not %s",
                launch.id,
                body.job_instance_id,
                launch.job_instance_id,
            )
            return _answer(409, "this callback URL belongs to another job instance")
        # A retry in BK-JOB's UI finishes the launch again and calls back again, so a finished launch's callback is
        # read once per recorded end; the same callback again, against the same end, is a replay.
        seen = (launch.id, body.model_dump_json(), launch.job_status, launch.finished_at)
        if launch.state is LaunchState.FINISHED and seen in self._seen:
            log.info("repeated callback for finished instance %s: nothing to read", body.job_instance_id)
            return _answer(200, "ok")
        self._seen[seen] = True
        log.info("callback for instance %s: status %s", body.job_instance_id, body.status)
        self._background.spawn(self._report(launch), name=f"report-{body.job_instance_id}")
        return _answer(200, "ok")

    def _replayed(self, key: str) -> bool:
        """Per-token rate limit, before any database or BK-JOB work; logged once per window, not per request."""
        now = self._clock()
        times = [t for t in self._recent.get(key, []) if t > now - REPLAY_WINDOW_S]
        if len(times) >= REPLAYS_PER_WINDOW:
            if len(times) == REPLAYS_PER_WINDOW:
                log.warning("callback token replayed more than %d times in %g s; refusing", len(times), REPLAY_WINDOW_S)
                times.append(now)
                self._recent[key] = times
            return True
        self._recent[key] = [*times, now]
        return False

    async def _report(self, launch: LaunchRecord) -> None:
        """The status read is the truth: the callback's own claim is never reported. When the read fails, nothing
        changes, and a running launch is handed to the poller, which reads again with back-off."""
        if await self._results.report(launch.id):
            return
        fresh = await self._store.get_launch(launch.id)
        if fresh is not None and fresh.state is LaunchState.RUNNING:
            due = self._clock() + RETRY_FAILED_READ_S
            if fresh.next_poll_at is None or fresh.next_poll_at > due:
                await self._store.schedule_poll(launch.id, at=due, attempts=fresh.poll_attempts)

    async def _unanswered(self, launch: LaunchRecord, body: CallbackBody) -> web.Response:
        """execute_job's answer is not in yet (or was lost): the callback names an instance, which is believed only
        when BK-JOB says it is this launch's plan; otherwise the poller finds the instance itself."""
        instance = await self._results.instance_plan(launch, body.job_instance_id)
        if instance is None:
            await self._store.schedule_poll(launch.id, at=self._clock(), attempts=launch.poll_attempts)
            return _answer(200, "ok")
        if instance != launch.bk_job_id or not await self._store.claim_instance(
            launch.id, body.job_instance_id, now=self._clock()
        ):
            log.warning("callback for launch %s names instance %s of another plan or launch", launch.id, instance)
            return _answer(409, "this callback URL belongs to another job instance")
        self._background.spawn(self._report(launch), name=f"report-{body.job_instance_id}")
        return _answer(200, "ok")


def _parse(raw: bytes) -> CallbackBody | None:
    """JSON whatever the Content-Type: BK-JOB's re-send says form-urlencoded but carries the same JSON text."""
    try:
        return CallbackBody.model_validate(json.loads(raw))
    except (ValueError, RecursionError, ValidationError):
        return None


def _answer(status: int, message: str, *, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
    return web.json_response({"ok": status == 200, "message": message}, status=status, headers=headers)
