"""Reporting a launch's final result: confirm with BK-JOB, record once, queue the reply in the launch's thread."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bot.bkjob import status
from bot.bkjob.client import BkClient
from bot.bkjob.errors import BkError
from bot.bkjob.models import JobInstanceStatus
from bot.core.audit import Audit
from bot.core.cards import ResultCard
from bot.core.digest import FailureReport
from bot.core.joblogs import JobLogs
from bot.core.policy import Policy
from bot.core.ports import Messenger
from bot.store import LaunchRecord, LaunchState, Store

__all__ = ["Results"]

log = logging.getLogger(__name__)


class Results:
    """A callback is only a trigger (it carries no signature): the status posted is the one BK-JOB reports.

    Results are de-duplicated by (launch, final status, run): a callback and the poller reporting the same end,
    or two callbacks, give one reply; a job retried in BK-JOB that finishes again is reported again. The reply
    is queued in the same transaction that records the result.
    """

    def __init__(
        self,
        *,
        store: Store,
        bk: BkClient,
        messenger: Messenger,
        audit: Audit,
        clock: Callable[[], float] = time.time,
        logs: JobLogs | None = None,
        policy: Policy | None = None,
        log_budget: float = 10.0,
    ) -> None:
        self._store = store
        self._bk = bk
        self._messenger = messenger
        self._audit = audit
        self._clock = clock
        self._logs = logs
        self._policy = policy or Policy()
        self._log_budget = log_budget

    async def report(self, launch_id: str, *, detail: JobInstanceStatus | None = None) -> bool:
        """Queue the launch's final result once; False when there is nothing new to post (or BK-JOB's status could
        not be read: a callback's own claim is never reported, so the poller reads again)."""
        launch = await self._store.get_launch(launch_id)
        if launch is None or launch.job_instance_id is None:
            log.warning("no launch or no instance to report for %s", launch_id)
            return False
        if detail is None:
            detail = await self._read_status(launch)
        if detail is None or not detail.is_finished:
            # Unread, revived (a retried step) or not final yet: the poller or the next callback reports the end.
            return False
        job_status = detail.job_instance.status
        if not status.is_finished(job_status):
            return False
        # A job retried in BK-JOB's UI finishes again: each finish has its own key, so each is reported once.
        key = detail.result_key()
        report, logs_button = await self._digest(launch, detail, key)
        card = ResultCard(launch, job_status=job_status, detail=detail, report=report, logs_button=logs_button)
        reply = self._messenger.result(launch, card, key=key)
        if not await self._store.record_result(launch.id, key, job_status, now=self._clock(), reply=reply):
            log.info("result %s of instance %s was reported before", key, launch.job_instance_id)
            return False
        self._messenger.wake()
        await self._audit.record(
            "bk-job",
            "result",
            channel=launch.channel,
            approval_id=launch.approval_id,
            launch_id=launch.id,
            job_instance_id=launch.job_instance_id,
            detail=status.describe(job_status),
        )
        finished = await self._store.get_launch(launch.id)
        await self._messenger.refresh_launch(finished or launch)
        return True

    async def _digest(
        self, launch: LaunchRecord, detail: JobInstanceStatus, key: str
    ) -> tuple[FailureReport | None, bool]:
        """The failure digest and whether to offer the *Logs* button, as the channel's policy says.

        Logs are read once per finish: the first reporter claims them, a racing duplicate (whose result is
        already recorded or about to be) does not call BK-JOB again.
        """
        policy = self._policy.for_channel(launch.channel)
        if self._logs is None or policy.logs == "none" or launch.job_instance_id is None:
            return None, False
        if detail.job_instance.status in status.SUCCESSFUL or not any(
            s.status not in status.SUCCESSFUL for s in detail.steps
        ):
            return None, False
        if not await self._store.claim(f"logs:{launch.id}:{key}", now=self._clock()):
            if not (launch.state is LaunchState.FINISHED and launch.job_status == detail.job_instance.status):
                await self._other_reporter(launch)  # else a repeat of an end already reported: nothing to wait for
            return None, False
        secret = set(policy.secret_vars)
        masker = await self._logs.masker(
            bk_biz_id=launch.bk_biz_id,
            bk_job_id=launch.bk_job_id,
            bk_username=launch.bk_username,
            secret_names=sorted(secret),
            values=[v.shown for v in launch.variables if v.name in secret],
        )
        report = await self._logs.report(
            bk_biz_id=launch.bk_biz_id,
            job_instance_id=launch.job_instance_id,
            bk_username=launch.bk_username,
            detail=detail,
            masker=masker,
            budget=self._log_budget,
            full=False,
        )
        has_hosts = any(step.hosts for step in report.steps)
        return report, policy.logs == "full" and has_hosts

    async def _other_reporter(self, launch: LaunchRecord) -> None:
        """Another reporter (the callback or the poller, maybe on another replica) is reading this finish's logs:
        give it the budget to record its reply, so that this one (without a digest) does not win the race. If it
        died meanwhile, the reply goes out without the digest rather than not at all."""
        deadline = time.monotonic() + self._log_budget + 5.0
        while time.monotonic() < deadline:
            current = await self._store.get_launch(launch.id)
            if current is None or current.finished_at != launch.finished_at:
                return
            await asyncio.sleep(0.2)

    async def instance_plan(self, launch: LaunchRecord, job_instance_id: int) -> int | None:
        """The plan BK-JOB says an instance named by a callback runs, read as the launch's user; None when that
        cannot be told (a callback carries no signature: its word alone ties no instance to a launch)."""
        try:
            detail = await self._bk.get_job_instance_status(
                bk_biz_id=launch.bk_biz_id, job_instance_id=job_instance_id, bk_username=launch.bk_username
            )
        except BkError as exc:
            log.warning("instance %s named by a callback could not be read: %s", job_instance_id, exc)
            return None
        return detail.job_instance.bk_job_id

    async def _read_status(self, launch: LaunchRecord) -> JobInstanceStatus | None:
        assert launch.job_instance_id is not None
        try:
            detail = await self._bk.get_job_instance_status(
                bk_biz_id=launch.bk_biz_id, job_instance_id=launch.job_instance_id, bk_username=launch.bk_username
            )
        except BkError as exc:
            log.warning("status of instance %s could not be read: %s", launch.job_instance_id, exc)
            return None
        if not detail.is_finished:
            log.info("instance %s is not finished yet (status %s)", launch.job_instance_id, detail.job_instance.status)
        return detail
