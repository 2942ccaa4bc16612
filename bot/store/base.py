"""The store interface every backend implements (SQLite now, PostgreSQL later)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from typing import Any

from bot.store.records import (
    ApprovalRecord,
    ApprovalState,
    AuditEvent,
    Backlog,
    LaunchRecord,
    LaunchState,
    OutboxMessage,
    ResultRecord,
    Vote,
)

__all__ = ["QueryObserver", "Store"]

QueryObserver = Callable[[str, tuple[Any, ...]], None]
"""Told every statement a store runs, with its arguments: for debugging, and for the query-plan tests."""


class Store(ABC):
    """Durable state: whatever must survive a restart or be shared between replicas lives here.

    Every state change that decides "who acts" (claiming a Slack delivery, recording a result) is a single
    conditional write, so that two callers racing for the same thing cannot both win.
    """

    kind: str = "unknown"  # "sqlite" or "postgresql", shown on /healthz

    @abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> bool:
        """True when the database answers a trivial query."""

    @abstractmethod
    async def claim(self, key: str, *, now: float) -> bool:
        """Record `key` once; True only for the first caller. Used to drop Slack retries and double clicks.
        A claim older than a day is forgotten (Slack retries within minutes)."""

    @abstractmethod
    async def release(self, key: str) -> None:
        """Give a claim back: what it was taken for did not happen (BK-JOB refused it), so it may be tried again."""

    @abstractmethod
    async def create_launch(self, launch: LaunchRecord) -> None: ...

    @abstractmethod
    async def get_launch(self, launch_id: str) -> LaunchRecord | None: ...

    @abstractmethod
    async def find_launch_by_token(self, token_hash: str) -> LaunchRecord | None: ...

    @abstractmethod
    async def find_launch_by_instance(self, job_instance_id: int) -> LaunchRecord | None:
        """The launch that started a BK-JOB instance (the newest, should two ever name it), read by index."""

    @abstractmethod
    async def set_message(self, launch_id: str, message_ts: str, *, now: float) -> None: ...

    @abstractmethod
    async def set_outcome(
        self,
        launch_id: str,
        state: LaunchState,
        *,
        now: float,
        job_instance_id: int | None = None,
        job_instance_name: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record what execute_job said (or that its answer was lost)."""

    @abstractmethod
    async def record_result(
        self, launch_id: str, result_key: str, job_status: int, *, now: float, reply: OutboxMessage | None = None
    ) -> bool:
        """Store a final result and queue its reply in one transaction; False when it was recorded before."""

    @abstractmethod
    async def mark_result_posted(self, launch_id: str, result_key: str, reply_ts: str) -> None: ...

    @abstractmethod
    async def unposted_results(self) -> list[ResultRecord]:
        """Results recorded but not yet in Slack (the bot stopped in between): posted again at start-up."""

    @abstractmethod
    async def unfinished_launches(self) -> list[LaunchRecord]: ...

    @abstractmethod
    async def recent_launches(self, channel: str, limit: int) -> list[LaunchRecord]:
        """The newest launches in a channel, newest first."""

    # -- approvals ------------------------------------------------------------------------------------------

    @abstractmethod
    async def create_approval(self, approval: ApprovalRecord) -> None: ...

    @abstractmethod
    async def get_approval(self, approval_id: str) -> ApprovalRecord | None: ...

    @abstractmethod
    async def set_approval_message(self, approval_id: str, message_ts: str, *, now: float) -> None: ...

    @abstractmethod
    async def add_vote(self, approval_id: str, approver: str, *, now: float) -> bool:
        """Count one approver once, only while the request is pending and not past its deadline."""

    @abstractmethod
    async def votes(self, approval_id: str) -> list[Vote]: ...

    @abstractmethod
    async def decide(
        self, approval_id: str, state: ApprovalState, *, by: str, now: float, reason: str | None = None
    ) -> bool:
        """pending -> `state` as one conditional update; True only for the single caller that made the change."""

    @abstractmethod
    async def set_approval_launch(self, approval_id: str, launch_id: str, *, now: float) -> None: ...

    @abstractmethod
    async def expire_due(self, *, now: float) -> list[ApprovalRecord]:
        """Move every pending request past its deadline to expired; returns those this caller expired."""

    @abstractmethod
    async def pending_approvals(self, channel: str) -> list[ApprovalRecord]: ...

    # -- audit ----------------------------------------------------------------------------------------------

    @abstractmethod
    async def append_audit(self, event: AuditEvent) -> None: ...

    @abstractmethod
    async def audit_events(self, *, limit: int = 1000) -> list[AuditEvent]:
        """Oldest first."""

    # -- reconciliation polls and progress -----------------------------------------------------------------

    @abstractmethod
    async def schedule_poll(self, launch_id: str, *, at: float | None, attempts: int = 0) -> None:
        """When the poller should look at this launch next (None: never again); releases any lease."""

    @abstractmethod
    async def lease_due_polls(self, *, owner: str, now: float, lease: float, limit: int) -> list[LaunchRecord]:
        """Launches whose poll is due, leased to `owner` so that one replica at a time polls each."""

    @abstractmethod
    async def release_polls(self, *, owner: str) -> int:
        """Drop every poll lease `owner` holds (it is shutting down): another replica polls those launches at its
        next round instead of when the lease runs out. Returns how many were released."""

    @abstractmethod
    async def set_progress(self, launch_id: str, progress: dict[str, Any], *, now: float) -> None: ...

    @abstractmethod
    async def reopen_launch(self, launch_id: str, *, finished_at: float, job_status: int, now: float) -> bool:
        """A finished launch runs again (a step retried or its error ignored from Slack): back to running and
        polled now, unless another end was recorded since `finished_at` (the new run ended first)."""

    @abstractmethod
    async def claim_instance(self, launch_id: str, job_instance_id: int, *, now: float) -> bool:
        """Attach a job instance found by reconciliation, unless another launch already has it."""

    # -- the Slack outbox -------------------------------------------------------------------------------------

    @abstractmethod
    async def enqueue(self, message: OutboxMessage) -> bool:
        """Store a message to send; False when a pending message with the same dedupe_key exists.

        The database numbers it (`seq`, ignoring the message's own): a message stored after another one was
        stored is delivered after it, whichever replica stored each and whatever their clocks say."""

    @abstractmethod
    async def lease_outbox(
        self,
        *,
        owner: str,
        now: float,
        lease: float,
        limit: int,
        posts_per_channel: int | None = None,
        edits_per_channel: int | None = None,
        skip_posts_in: Collection[str] = (),
        skip_edits_in: Collection[str] = (),
    ) -> list[OutboxMessage]:
        """The first pending, due message of each order_key, leased to `owner` (messages behind it wait).

        `posts_per_channel` and `edits_per_channel` cap one channel's posts and edits in a batch (None: no cap): a
        channel's posts wait for their slots and its edits go one after another, so a batch holds no more of them
        than the worker can start soon. Posts to the channels in `skip_posts_in` (and edits in `skip_edits_in`)
        are left alone: the worker already holds the next ones there."""

    @abstractmethod
    async def outbox_sent(self, message_id: str, *, owner: str, ts: str | None, now: float) -> None: ...

    @abstractmethod
    async def outbox_retry(self, message_id: str, *, owner: str, error: str, at: float) -> None: ...

    @abstractmethod
    async def outbox_dead(self, message_id: str, *, owner: str, error: str) -> None: ...

    @abstractmethod
    async def outbox_release(self, message_ids: Sequence[str], *, owner: str) -> None:
        """Give back leases `owner` holds on messages it has not tried to send (a replica stopping), so another
        replica sends them now instead of when the lease runs out."""

    # -- retention ----------------------------------------------------------------------------------------------

    @abstractmethod
    async def prune(self, *, claims_before: float, sent_before: float, audit_before: float | None, limit: int) -> int:
        """Delete up to `limit` rows of each table that only grows: claims and sent outbox messages older than
        their cut-offs, audit events older than `audit_before` (None: audit is kept). Returns the rows deleted;
        small batches, so that no sweep holds the database for long."""

    @abstractmethod
    async def backlog(self, *, now: float) -> Backlog:
        """How many messages wait for Slack, since when, and how overdue the most overdue poll is: counted by the
        database, so that a scrape costs the same with 50,000 messages waiting as with none."""

    @abstractmethod
    async def outbox_messages(self, *, state: str | None = None) -> list[OutboxMessage]:
        """For status pages and tests, oldest first."""
