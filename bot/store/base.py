"""The store interface every backend implements (SQLite now, PostgreSQL later)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from bot.store.records import ApprovalRecord, ApprovalState, AuditEvent, LaunchRecord, LaunchState, ResultRecord, Vote

__all__ = ["Store"]


class Store(ABC):
    """Durable state: whatever must survive a restart or be shared between replicas lives here.

    Every state change that decides "who acts" (claiming a Slack delivery, recording a result) is a single
    conditional write, so that two callers racing for the same thing cannot both win.
    """

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
        """Record `key` once; True only for the first caller. Used to drop Slack retries and double clicks."""

    @abstractmethod
    async def create_launch(self, launch: LaunchRecord) -> None: ...

    @abstractmethod
    async def get_launch(self, launch_id: str) -> LaunchRecord | None: ...

    @abstractmethod
    async def find_launch_by_token(self, token_hash: str) -> LaunchRecord | None: ...

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
    async def record_result(self, launch_id: str, result_key: str, job_status: int, *, now: float) -> bool:
        """Store a final result; False when the same result was recorded before (post nothing new)."""

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
