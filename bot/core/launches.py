"""The launch workflow: read the plan, check the overrides, record, announce, execute_job, record the outcome."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bot.bkjob.client import BkClient
from bot.bkjob.errors import BkApiError, BkError, BkTimeout, BkUnavailable
from bot.bkjob.models import ExecuteJobRequest, JobDetail, JobInstanceStatus
from bot.bkjob.variables import Overrides, build_overrides, check_names, default_text
from bot.core.audit import Audit
from bot.core.cards import LaunchCard
from bot.core.errors import ChatError
from bot.core.identity import Identities
from bot.core.policy import Policy
from bot.core.ports import Messenger
from bot.core.presets import check_locks
from bot.core.tokens import hash_token, new_callback_token
from bot.store import ApprovalRecord, LaunchRecord, LaunchState, Store

__all__ = ["LaunchFailed", "LaunchRequest", "Launches", "Prepared"]

log = logging.getLogger(__name__)

# JOB's INTERNAL_ERROR ("Internal Server Error"): raised anywhere, also after the instance was created.
_INTERNAL_ERROR = 1240002


@dataclass(frozen=True)
class Prepared:
    """A request checked against the plan: who it runs as and what will be sent."""

    plan: JobDetail
    bk_username: str
    overrides: Overrides


@dataclass(frozen=True)
class LaunchRequest:
    """A person's request to run a plan with some variables changed."""

    requester: str
    channel: str
    bk_biz_id: int
    bk_job_id: int
    values: Mapping[str, str]
    preset: str | None = None  # launched as this preset (its own locks were applied), not by the plan's ID


class LaunchFailed(BkError):
    """The launch message is posted, but BK-JOB refused or its answer was lost; `launch` says which."""

    def __init__(self, launch: LaunchRecord, cause: BkError) -> None:
        self.launch = launch
        self.cause = cause
        super().__init__(str(cause))


class Launches:
    """Records every launch before execute_job, so a crash or lost answer leaves a record, never a silent run."""

    def __init__(
        self,
        *,
        store: Store,
        bk: BkClient,
        messenger: Messenger,
        identities: Identities,
        audit: Audit,
        public_root: str,
        policy: Policy | None = None,
        callbacks: bool = True,
        callback_grace: float = 60.0,
        progress_interval: float = 15.0,
        bk_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._progress_interval = progress_interval
        self._policy = policy
        self._messenger = messenger
        self._callbacks = callbacks
        self._callback_grace = callback_grace
        self._bk_timeout = bk_timeout
        self._store = store
        self._bk = bk
        self._identities = identities
        self._audit = audit
        self._public_root = public_root
        self._clock = clock

    async def plan(self, *, requester: str, bk_biz_id: int, bk_job_id: int, names: list[str]) -> JobDetail:
        """The plan a modal is built from, after checking the names given on the command line."""
        bk_username = await self._identities.bk_username(requester)
        plan = await self._bk.get_job_detail(bk_biz_id=bk_biz_id, bk_job_id=bk_job_id, bk_username=bk_username)
        check_names(plan, names)
        return plan

    async def instance_status(self, *, bk_biz_id: int, job_instance_id: int, bk_username: str) -> JobInstanceStatus:
        """An instance's status as BK-JOB shows it to `bk_username` (`/bkjob status`): a read, nothing recorded."""
        return await self._bk.get_job_instance_status(
            bk_biz_id=bk_biz_id, job_instance_id=job_instance_id, bk_username=bk_username
        )

    async def prepare(self, request: LaunchRequest, *, bk_username: str | None = None) -> Prepared:
        """Everything checked before anything is recorded or sent: identity, plan, variables."""
        user = bk_username or await self._identities.bk_username(request.requester)
        plan = await self._bk.get_job_detail(bk_biz_id=request.bk_biz_id, bk_job_id=request.bk_job_id, bk_username=user)
        if self._policy is not None and request.preset is None:
            applying = self._policy.presets_locking(request.channel, request.bk_biz_id, request.bk_job_id)
            if applying:
                # What the run would have: the values given, else the plan's defaults (which BK-JOB then uses).
                values = {v.name: request.values.get(v.name, default_text(v)) for v in plan.variables}
                check_locks(request.bk_job_id, applying, values)
        overrides = build_overrides(plan, request.values, host_ids=self._bk.names_hosts_by_id)
        return Prepared(plan=plan, bk_username=user, overrides=overrides)

    async def launch(
        self, request: LaunchRequest, *, approval: ApprovalRecord | None = None, approved_by: Sequence[str] = ()
    ) -> LaunchRecord:
        """After an approval, runs as the requester's BK user and reuses the approval message as its thread."""
        prepared = await self.prepare(request, bk_username=approval.bk_username if approval else None)
        token = new_callback_token()
        now = self._clock()
        record = LaunchRecord(
            id=uuid.uuid4().hex,
            created_at=now,
            updated_at=now,
            requester=request.requester,
            channel=request.channel,
            message_ts=approval.message_ts if approval else None,
            bk_biz_id=request.bk_biz_id,
            bk_job_id=request.bk_job_id,
            plan_name=prepared.plan.name,
            bk_username=prepared.bk_username,
            variables=prepared.overrides.shown,
            callback_token_hash=hash_token(token),
            approval_id=approval.id if approval else None,
            approved_by=list(approved_by),
            # Should the process die inside execute_job, the poller finds this record and reconciles it.
            next_poll_at=now + self._bk_timeout + self._callback_grace,
        )
        await self._store.create_launch(record)
        record = await self._announce(record)
        body = ExecuteJobRequest(
            bk_biz_id=request.bk_biz_id,
            bk_job_id=request.bk_job_id,
            global_vars=prepared.overrides.global_vars,
            bk_callback_url=f"{self._public_root}/bkjob/callback/{token}" if self._callbacks else None,
        )
        try:
            data = await self._bk.execute_job(body, bk_username=prepared.bk_username)
        except BkError as exc:
            record = await self._settle_failure(record, exc)
            await self._audit.record(
                request.requester,
                f"launch_{record.state.value}",
                channel=record.channel,
                approval_id=record.approval_id,
                launch_id=record.id,
                detail=record.error,
            )
            raise LaunchFailed(record, exc) from exc
        await self._audit.record(
            request.requester,
            "launched",
            channel=record.channel,
            approval_id=record.approval_id,
            launch_id=record.id,
            job_instance_id=data.job_instance_id,
            detail=f"plan {request.bk_job_id} in business {request.bk_biz_id} as {prepared.bk_username}",
        )
        # With callbacks the poller only steps in once BK-JOB has been quiet for the grace period; but the first
        # progress read comes within one progress interval, so the message shows the job moving.
        grace = self._callback_grace if self._callbacks else min(self._callback_grace, 5.0)
        if any(step.is_confirmation for step in prepared.plan.plan_steps()):
            # A manual confirmation stops the job in 7 without a callback: watch it from the start.
            grace = min(grace, self._progress_interval)
        return await self._settle(
            record,
            LaunchState.RUNNING,
            job_instance_id=data.job_instance_id,
            job_instance_name=data.job_instance_name,
            poll_at=self._clock() + min(grace, self._progress_interval),
        )

    async def _announce(self, record: LaunchRecord) -> LaunchRecord:
        """The launch message comes first: it is the thread the result will be posted in."""
        if record.message_ts is not None:
            await self.refresh_message(record)
            return record
        try:
            ts = await self._messenger.announce(record.channel, LaunchCard(record), requester=record.requester)
        except ChatError as exc:
            await self._store.set_outcome(
                record.id, LaunchState.NOT_STARTED, now=self._clock(), error=f"Slack: {exc.error}"
            )
            raise
        await self._store.set_message(record.id, ts, now=self._clock())
        return record.model_copy(update={"message_ts": ts})

    async def _settle_failure(self, record: LaunchRecord, exc: BkError) -> LaunchRecord:
        if isinstance(exc, BkApiError) and exc.code == _INTERNAL_ERROR:
            # JOB failed inside: the instance may have been created before it did. Look for it, never retry.
            log.warning("execute_job outcome unknown for launch %s: %s", record.id, exc)
            return await self._settle(
                record,
                LaunchState.UNKNOWN,
                error=f"BK-JOB answered [{exc.code}] {exc.message}; it may or may not be running",
                poll_at=self._clock() + self._bk_timeout,
            )
        if isinstance(exc, BkApiError):
            return await self._settle(
                record, LaunchState.NOT_STARTED, error=f"[{exc.code}] {exc.message}", poll_at=None
            )
        if isinstance(exc, BkUnavailable) and not exc.request_sent:
            return await self._settle(record, LaunchState.NOT_STARTED, error=str(exc), poll_at=None)
        # A time-out or a broken answer: BK-JOB may have started the job. Never retried: it could run twice.
        kind = "did not answer in time" if isinstance(exc, BkTimeout) else "answer was lost"
        log.warning("execute_job outcome unknown for launch %s: %s", record.id, exc)
        return await self._settle(
            record,
            LaunchState.UNKNOWN,
            error=f"BK-JOB {kind}; it may or may not be running",
            poll_at=self._clock() + self._bk_timeout,
        )

    async def _settle(
        self,
        record: LaunchRecord,
        state: LaunchState,
        *,
        job_instance_id: int | None = None,
        job_instance_name: str | None = None,
        error: str | None = None,
        poll_at: float | None,
    ) -> LaunchRecord:
        now = self._clock()
        await self._store.set_outcome(
            record.id,
            state,
            now=now,
            job_instance_id=job_instance_id,
            job_instance_name=job_instance_name,
            error=error,
        )
        # Read back rather than patch the copy: a callback may have finished the launch meanwhile.
        settled = await self._store.get_launch(record.id) or record
        if settled.state is not LaunchState.FINISHED:
            await self._store.schedule_poll(record.id, at=poll_at)
        await self.refresh_message(settled)
        return settled

    async def refresh_message(self, record: LaunchRecord) -> None:
        """Bring the launch message's status line up to date (the messenger's outbox survives 429s and restarts)."""
        await self._messenger.refresh_launch(record)
