"""The store interface every backend implements (SQLite now, PostgreSQL later)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from bot.store.records import LaunchRecord, LaunchState, ResultRecord

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
