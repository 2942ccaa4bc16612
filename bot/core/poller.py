"""Reconciliation: watch every launch without a final status, so a lost callback or answer never loses a result."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from bot.bkjob import status
from bot.bkjob.client import BkClient
from bot.bkjob.errors import BkError
from bot.bkjob.models import InstanceSummary, JobInstanceStatus, StepInstance
from bot.core.background import Background, failure_delay
from bot.core.cards import Note
from bot.core.launches import Launches
from bot.core.ports import Messenger
from bot.core.reasons import Moment, Plain, Quoted, Reason, Tone, plain_time, say
from bot.core.results import Results
from bot.core.runcontrol import Operations
from bot.store import LaunchRecord, LaunchState, Store

__all__ = ["Poller"]

log = logging.getLogger(__name__)

_LEASE_S = 120.0
_BATCH = 20
_MAX_INTERVAL_S = 120.0
_PROGRESS_EDITS_PER_MIN = 30
_RECONCILE_WINDOW_S = 120.0  # how long after a lost answer an instance may still show up in BK-JOB's list
_MAX_RECONCILE_ATTEMPTS = 8
_REPORTS_IN_FLIGHT = 8  # finished launches reported at once (each may read BK-JOB's logs for LOG_DIGEST_BUDGET)


class Poller:
    """BK-JOB calls back once, never after a connection error, and not at all for some statuses: the poller
    reads `get_job_instance_status` for launches that went quiet, and finds instances whose answer was lost."""

    def __init__(
        self,
        *,
        store: Store,
        bk: BkClient,
        results: Results,
        launches: Launches,
        messenger: Messenger,
        tick: float,
        progress_interval: float,
        bk_timeout: float,
        reconcile_window: float = _RECONCILE_WINDOW_S,
        lease: float = _LEASE_S,
        heartbeat: Callable[[], None] = lambda: None,
        operations: Operations | None = None,
        background: Background,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._background = background
        self._reports = asyncio.Semaphore(_REPORTS_IN_FLIGHT)
        self._heartbeat = heartbeat
        self._operations = operations
        self._lease = lease
        self._window = reconcile_window
        self._store = store
        self._bk = bk
        self._results = results
        self._launches = launches
        self._messenger = messenger
        self._tick = tick
        self._progress_interval = progress_interval
        self._bk_timeout = bk_timeout
        self._clock = clock
        self._edits: deque[float] = deque()
        self._owner = f"poller-{uuid.uuid4().hex[:12]}"

    async def run(self) -> None:
        """Never ends but by cancellation: a failed round is logged at ERROR and retried with back-off; the
        launches it had leased are polled again once their lease runs out."""
        failures = 0
        while True:
            try:
                await self.poll_once()
            except Exception:
                failures += 1
                delay = failure_delay(failures, base=self._tick)
                log.error("poll round failed (%d in a row); next try in %.1f s", failures, delay, exc_info=True)
                await asyncio.sleep(delay)
                continue
            failures = 0
            self._heartbeat()
            await asyncio.sleep(self._tick)

    async def release_leases(self) -> int:
        """Shutting down, once `run` and the reports have stopped: another replica polls the launches this one
        held at its next round, not when the lease runs out. A poll repeated is harmless (a result is recorded
        once, an instance claimed once)."""
        return await self._store.release_polls(owner=self._owner)

    async def poll_once(self) -> int:
        due = await self._store.lease_due_polls(owner=self._owner, now=self._clock(), lease=self._lease, limit=_BATCH)
        # Every check runs to its end even when another fails; the first failure then fails the round.
        outcomes = await asyncio.gather(*(self._check(launch) for launch in due), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return len(due)

    async def _check(self, launch: LaunchRecord) -> None:
        if launch.job_instance_id is None:
            await self._reconcile(launch)
            return
        try:
            detail = await self._bk.get_job_instance_status(
                bk_biz_id=launch.bk_biz_id, job_instance_id=launch.job_instance_id, bk_username=launch.bk_username
            )
        except BkError as exc:
            log.warning("poll of instance %s failed: %s", launch.job_instance_id, exc)
            await self._again(launch)
            return
        if detail.is_finished and status.is_finished(detail.job_instance.status):
            # Reported outside the round: a failed job's log read (up to LOG_DIGEST_BUDGET) must not hold back
            # the next round's results. The lease keeps the launch out of later rounds meanwhile, and a report
            # that fails leaves it to be polled again when the lease runs out.
            self._background.spawn(self._report(launch, detail), name=f"poll-report-{launch.job_instance_id}")
            return
        await self._progress(launch, detail)
        if detail.job_instance.status == 7 and self._operations is not None:
            # A job waiting for its confirmer sends no callback: the thread is told here, once per step run.
            await self._operations.show_confirmation(launch, detail)
        # A manual confirmation still ahead (step type 3) can stop the job in 7 at any moment, without a callback.
        await self._again(
            launch, steady=any(s.type == 3 and not status.is_finished(s.status) for s in detail.steps), live=True
        )

    async def _report(self, launch: LaunchRecord, detail: JobInstanceStatus) -> None:
        async with self._reports:
            await self._results.report(launch.id, detail=detail)

    async def _again(self, launch: LaunchRecord, *, steady: bool = False, live: bool = False) -> None:
        """A job with a manual confirmation ahead is read every `progress_interval` (it waits in 7 without calling
        back, and must be seen within that); other reads back off, since a callback will come."""
        attempts = launch.poll_attempts + 1
        interval = min(_MAX_INTERVAL_S, self._progress_interval * 1.5 ** min(attempts, 12))
        if live:
            # A running job's message stays live: read at least every second progress interval (15-30 s).
            interval = min(interval, 2 * self._progress_interval)
        if steady:
            interval = self._progress_interval
        await self._store.schedule_poll(launch.id, at=self._clock() + interval, attempts=attempts)

    async def _progress(self, launch: LaunchRecord, detail: JobInstanceStatus) -> None:
        """Live progress on the launch message: edited when a step moves on, and at most every
        `progress_interval` otherwise (for the elapsed time), so a long job does not flood Slack."""
        now = self._clock()
        progress = _progress(detail)
        changed = progress != {k: v for k, v in (launch.progress or {}).items() if k != "elapsed"}
        stale = launch.progress_at is None or now - launch.progress_at >= self._progress_interval
        if not (changed or stale) or not self._edit_allowed(now):
            return
        await self._store.set_progress(launch.id, {**progress, "elapsed": _elapsed(launch, detail, now)}, now=now)
        fresh = await self._store.get_launch(launch.id)
        await self._messenger.refresh_launch(fresh or launch)

    def _edit_allowed(self, now: float) -> bool:
        """chat.update is Slack's Tier 3 (about 50 a minute per workspace, shared with result and approval edits):
        progress edits from this process stay within `_PROGRESS_EDITS_PER_MIN`, however many jobs run."""
        while self._edits and self._edits[0] <= now - 60.0:
            self._edits.popleft()
        if len(self._edits) >= _PROGRESS_EDITS_PER_MIN:
            return False
        self._edits.append(now)
        return True

    async def _reconcile(self, launch: LaunchRecord) -> None:
        """execute_job's answer was lost: find the instance by plan, operator and time, or say it never started."""
        started = launch.created_at
        if self._clock() < started + self._bk_timeout:
            await self._store.schedule_poll(launch.id, at=started + self._bk_timeout + 1, attempts=launch.poll_attempts)
            return
        try:
            listing = await self._bk.get_job_instance_list(
                bk_biz_id=launch.bk_biz_id,
                create_time_start_ms=int((started - 60) * 1000),
                create_time_end_ms=int((started + self._bk_timeout + self._window) * 1000),
                operator=launch.bk_username,
                bk_username=launch.bk_username,
            )
        except BkError as exc:
            await self._reconcile_failed(launch, str(exc))
            return
        known = {other.job_instance_id for other in await self._store.recent_launches(launch.channel, 500)}
        candidates = [
            i for i in listing.data or [] if i.job_plan_id == launch.bk_job_id and i.job_instance_id not in known
        ]
        if not candidates:
            await self._not_found(launch)
        elif len(candidates) > 1:
            ids = ", ".join(str(i.job_instance_id) for i in candidates)
            await self._say(
                launch,
                say(
                    "Several instances of this plan match the lost launch: {ids}. Check BK-JOB; I will not guess.",
                    Tone.UNKNOWN,
                    ids=ids,
                ),
            )
            await self._store.schedule_poll(launch.id, at=None)
        elif await self._store.claim_instance(launch.id, candidates[0].job_instance_id, now=self._clock()):
            await self._found(launch, candidates[0])
        else:
            await self._store.schedule_poll(launch.id, at=self._clock() + 15, attempts=launch.poll_attempts + 1)

    async def _found(self, launch: LaunchRecord, instance: InstanceSummary) -> None:
        at = Moment(instance.create_time / 1000) if instance.create_time else "the launch time"
        await self._say(
            launch,
            say(
                "Found it: BK-JOB started instance {instance} ({at}) (matched by plan {plan}, operator `{operator}` "
                "and time).",
                Tone.FOUND,
                instance=instance.job_instance_id,
                at=at,
                plan=launch.bk_job_id,
                operator=Quoted(launch.bk_username),
            ),
        )
        await self._store.schedule_poll(launch.id, at=self._clock(), attempts=0)
        fresh = await self._store.get_launch(launch.id)
        await self._messenger.refresh_launch(fresh or launch)

    async def _not_found(self, launch: LaunchRecord) -> None:
        if self._clock() < launch.created_at + self._bk_timeout + self._window:
            await self._store.schedule_poll(
                launch.id, at=self._clock() + min(15.0, self._window / 4), attempts=launch.poll_attempts + 1
            )
            return
        error = (
            f"BK-JOB has no instance of plan {launch.bk_job_id} started by `{launch.bk_username}` around "
            f"{plain_time(launch.created_at)}: it was not launched"
        )
        await self._store.set_outcome(launch.id, LaunchState.NOT_STARTED, now=self._clock(), error=error)
        await self._store.schedule_poll(launch.id, at=None)
        await self._say(
            launch, say("{error}. Launch it again if it is still needed.", Tone.REFUSED, error=Plain(error))
        )
        fresh = await self._store.get_launch(launch.id)
        await self._messenger.refresh_launch(fresh or launch)

    async def _reconcile_failed(self, launch: LaunchRecord, why: str) -> None:
        attempts = launch.poll_attempts + 1
        if attempts >= _MAX_RECONCILE_ATTEMPTS:
            await self._say(
                launch,
                say(
                    "I could not find out whether the launch started ({why}). Check BK-JOB.",
                    Tone.UNKNOWN,
                    why=Plain(why),
                ),
            )
            await self._store.schedule_poll(launch.id, at=None)
            return
        await self._store.schedule_poll(launch.id, at=self._clock() + min(300, 10 * 2**attempts), attempts=attempts)

    async def _say(self, launch: LaunchRecord, reason: Reason) -> None:
        if launch.message_ts is None:
            log.warning("launch %s has no message to reply to: %s", launch.id, reason)
            return
        await self._messenger.post(launch.channel, Note(reason), thread_ts=launch.message_ts)


def _progress(detail: JobInstanceStatus) -> dict[str, Any]:
    steps = detail.steps
    done = sum(1 for s in steps if status.is_finished(s.status))
    current = next((s for s in steps if not status.is_finished(s.status) and s.status != 1), None)
    return {
        "status": detail.job_instance.status,
        "done": done,
        "total": len(steps),
        "current": (current.name or str(current.step_instance_id)) if current else None,
        # What a job in 7 waits for: a manual confirmation (type 3; BK-JOB cannot force-stop it there) or a
        # rolling step's next batch. The launch message offers what BK-JOB allows in each.
        "waiting": _waiting(current) if current is not None and current.status == 7 else None,
    }


def _waiting(step: StepInstance) -> str:
    return "rolling" if step.type not in (None, 3) else "confirmation"


def _elapsed(launch: LaunchRecord, detail: JobInstanceStatus, now: float) -> float:
    """BK-JOB's `total_time` is null until the job finishes: count from its start time, or from the launch when
    that time has no zone (v2)."""
    job = detail.job_instance
    if job.total_time is not None:
        return job.total_time
    started = job.started_at() or launch.created_at
    return max(0.0, now - started)
