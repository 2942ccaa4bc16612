"""PostgreSQL's launches, results, reconciliation polls, approvals and audit: a part of `PostgresStore`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from bot.store.pg_outbox import enqueue_sql, placeholders, prefixed
from bot.store.records import (
    ApprovalRecord,
    ApprovalState,
    AuditEvent,
    LaunchRecord,
    LaunchState,
    OutboxMessage,
    ResultRecord,
    Vote,
)
from bot.store.rows import (
    APPROVAL_COLUMNS,
    AUDIT_COLUMNS,
    LAUNCH_COLUMNS,
    approval_from,
    approval_values,
    audit_from,
    audit_values,
    launch_from,
    launch_values,
)

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PgLaunches"]

_UNFINISHED = (LaunchState.STARTING.value, LaunchState.RUNNING.value, LaunchState.UNKNOWN.value)


class PgLaunches:
    """What people launched and approved, and what BK-JOB answered; see `bot.store.postgres` for how replicas
    stay correct."""

    if TYPE_CHECKING:

        @property
        def pool(self) -> asyncpg.Pool: ...  # PostgresStore's

    async def create_launch(self, launch: LaunchRecord) -> None:
        await self.pool.execute(
            f"INSERT INTO launches ({LAUNCH_COLUMNS}) VALUES ({placeholders(24)})",
            *launch_values(launch),
        )

    async def get_launch(self, launch_id: str) -> LaunchRecord | None:
        row = await self.pool.fetchrow(f"SELECT {LAUNCH_COLUMNS} FROM launches WHERE id = $1", launch_id)
        return launch_from(dict(row)) if row else None

    async def find_launch_by_token(self, token_hash: str) -> LaunchRecord | None:
        row = await self.pool.fetchrow(
            f"SELECT {LAUNCH_COLUMNS} FROM launches WHERE callback_token_hash = $1", token_hash
        )
        return launch_from(dict(row)) if row else None

    async def find_launch_by_instance(self, job_instance_id: int) -> LaunchRecord | None:
        row = await self.pool.fetchrow(
            f"SELECT {LAUNCH_COLUMNS} FROM launches WHERE job_instance_id = $1 ORDER BY created_at DESC LIMIT 1",
            job_instance_id,
        )
        return launch_from(dict(row)) if row else None

    async def set_message(self, launch_id: str, message_ts: str, *, now: float) -> None:
        await self.pool.execute(
            "UPDATE launches SET message_ts = $1, updated_at = $2 WHERE id = $3", message_ts, now, launch_id
        )

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
        await self.pool.execute(
            # A result may land before execute_job's answer is recorded: never move a finished launch back.
            # The CASE is evaluated on the row as it is when this update gets its lock, so a concurrent
            # record_result that committed first is seen.
            "UPDATE launches SET state = CASE WHEN state = $1 THEN state ELSE $2 END, updated_at = $3,"
            " job_instance_id = COALESCE($4, job_instance_id), job_instance_name = COALESCE($5, job_instance_name),"
            " error = $6 WHERE id = $7",
            LaunchState.FINISHED.value,
            state.value,
            now,
            job_instance_id,
            job_instance_name,
            error,
            launch_id,
        )

    async def record_result(
        self, launch_id: str, result_key: str, job_status: int, *, now: float, reply: OutboxMessage | None = None
    ) -> bool:
        async with self.pool.acquire() as con, con.transaction():
            # A concurrent insert of the same key waits on the primary key until the first commits, then does nothing.
            won = await con.fetchval(
                "INSERT INTO results (launch_id, result_key, job_status, created_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (launch_id, result_key) DO NOTHING RETURNING 1",
                launch_id,
                result_key,
                job_status,
                now,
            )
            if won is None:
                return False
            await con.execute(
                "UPDATE launches SET state = $1, job_status = $2, finished_at = $3, updated_at = $3,"
                " next_poll_at = NULL, poll_owner = NULL, poll_lease_until = NULL WHERE id = $4",
                LaunchState.FINISHED.value,
                job_status,
                now,
                launch_id,
            )
            if reply is not None:
                sql, args = enqueue_sql(reply)
                await con.execute(sql, *args)
        return True

    async def mark_result_posted(self, launch_id: str, result_key: str, reply_ts: str) -> None:
        await self.pool.execute(
            "UPDATE results SET reply_ts = $1 WHERE launch_id = $2 AND result_key = $3",
            reply_ts,
            launch_id,
            result_key,
        )

    async def unposted_results(self) -> list[ResultRecord]:
        rows = await self.pool.fetch(
            "SELECT launch_id, result_key, job_status, created_at, reply_ts FROM results"
            " WHERE reply_ts IS NULL ORDER BY created_at"
        )
        return [ResultRecord(**dict(row)) for row in rows]

    async def unfinished_launches(self) -> list[LaunchRecord]:
        rows = await self.pool.fetch(
            f"SELECT {LAUNCH_COLUMNS} FROM launches WHERE state = ANY($1::text[]) ORDER BY created_at",
            list(_UNFINISHED),
        )
        return [launch_from(dict(row)) for row in rows]

    async def recent_launches(self, channel: str, limit: int) -> list[LaunchRecord]:
        rows = await self.pool.fetch(
            f"SELECT {LAUNCH_COLUMNS} FROM launches WHERE channel = $1 ORDER BY created_at DESC LIMIT $2",
            channel,
            limit,
        )
        return [launch_from(dict(row)) for row in rows]

    # -- reconciliation polls and progress -----------------------------------------------------------------

    async def schedule_poll(self, launch_id: str, *, at: float | None, attempts: int = 0) -> None:
        await self.pool.execute(
            "UPDATE launches SET next_poll_at = $1, poll_attempts = $2, poll_owner = NULL, poll_lease_until = NULL"
            " WHERE id = $3",
            at,
            attempts,
            launch_id,
        )

    async def lease_due_polls(self, *, owner: str, now: float, lease: float, limit: int) -> list[LaunchRecord]:
        # SKIP LOCKED: a replica leasing at the same moment takes other rows instead of waiting for these. A row
        # leased and committed by another replica after this statement's snapshot is re-checked once locked, and
        # its fresh poll_lease_until drops it. The lease is written in the same statement, so nothing is held
        # after it returns: a replica that dies mid-poll only leaves a lease that runs out at now + lease.
        rows = await self.pool.fetch(
            f"WITH due AS ("
            f" SELECT id FROM launches WHERE next_poll_at IS NOT NULL AND next_poll_at <= $1"
            f" AND state = ANY($2::text[]) AND (poll_lease_until IS NULL OR poll_lease_until < $1)"
            f" ORDER BY next_poll_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
            f" UPDATE launches l SET poll_owner = $4, poll_lease_until = $5 FROM due WHERE l.id = due.id"
            f" RETURNING {prefixed(LAUNCH_COLUMNS, 'l')}",
            now,
            list(_UNFINISHED),
            limit,
            owner,
            now + lease,
        )
        return sorted((launch_from(dict(row)) for row in rows), key=lambda launch: launch.next_poll_at or 0.0)

    async def release_polls(self, *, owner: str) -> int:
        status = await self.pool.execute(
            # Only launches still to be polled hold leases (finishing clears both). Poll times are epoch seconds:
            # the range reads through launches_next_poll on both databases, where IS NOT NULL may scan the table.
            "UPDATE launches SET poll_owner = NULL, poll_lease_until = NULL"
            " WHERE next_poll_at >= 0 AND poll_owner = $1",
            owner,
        )
        return int(status.rsplit(" ", 1)[-1])  # asyncpg's status tag: `UPDATE 3`

    async def set_progress(self, launch_id: str, progress: dict[str, Any], *, now: float) -> None:
        await self.pool.execute(
            "UPDATE launches SET progress = $1, progress_at = $2, updated_at = $2 WHERE id = $3",
            json.dumps(progress),
            now,
            launch_id,
        )

    async def reopen_launch(self, launch_id: str, *, finished_at: float, job_status: int, now: float) -> bool:
        status = await self.pool.execute(
            "UPDATE launches SET state = $1, job_status = $2, finished_at = NULL, updated_at = $3, next_poll_at = $3,"
            " poll_attempts = 0, poll_owner = NULL, poll_lease_until = NULL, progress = NULL, progress_at = NULL"
            " WHERE id = $4 AND state = $5 AND finished_at = $6",
            LaunchState.RUNNING.value,
            job_status,
            now,
            launch_id,
            LaunchState.FINISHED.value,
            finished_at,
        )
        return bool(status.endswith(" 1"))

    async def claim_instance(self, launch_id: str, job_instance_id: int, *, now: float) -> bool:
        async with self.pool.acquire() as con, con.transaction():
            # job_instance_id has no unique index (old rows may share one), so two replicas reconciling two
            # launches against the same instance are serialised on a transaction lock named after the instance;
            # the check below then sees whatever the other committed.
            await con.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('bkjob-bot:instance:' || $1::bigint::text, 0))",
                job_instance_id,
            )
            taken = await con.fetchval(
                "SELECT 1 FROM launches WHERE job_instance_id = $1 AND id <> $2", job_instance_id, launch_id
            )
            if taken is not None:
                return False
            won = await con.fetchval(
                "UPDATE launches SET job_instance_id = $1, state = $2, error = NULL, updated_at = $3"
                " WHERE id = $4 AND job_instance_id IS NULL RETURNING 1",
                job_instance_id,
                LaunchState.RUNNING.value,
                now,
                launch_id,
            )
        return won is not None

    # -- approvals ------------------------------------------------------------------------------------------

    async def create_approval(self, approval: ApprovalRecord) -> None:
        await self.pool.execute(
            f"INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ({placeholders(21)})",
            *approval_values(approval),
        )

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        row = await self.pool.fetchrow(f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1", approval_id)
        return approval_from(dict(row)) if row else None

    async def set_approval_message(self, approval_id: str, message_ts: str, *, now: float) -> None:
        await self.pool.execute(
            "UPDATE approvals SET message_ts = $1, updated_at = $2 WHERE id = $3", message_ts, now, approval_id
        )

    async def add_vote(self, approval_id: str, approver: str, *, now: float) -> bool:
        # FOR SHARE makes the vote wait for a decision being written and re-check `state` afterwards: no vote is
        # counted on a request another replica has just approved, rejected or expired.
        won = await self.pool.fetchval(
            "INSERT INTO approval_votes (approval_id, approver, at)"
            " SELECT id, $1, $2 FROM approvals WHERE id = $3 AND state = $4 AND expires_at > $2 FOR SHARE"
            " ON CONFLICT (approval_id, approver) DO NOTHING RETURNING 1",
            approver,
            now,
            approval_id,
            ApprovalState.PENDING.value,
        )
        return won is not None

    async def votes(self, approval_id: str) -> list[Vote]:
        rows = await self.pool.fetch(
            "SELECT approver, at FROM approval_votes WHERE approval_id = $1 ORDER BY at", approval_id
        )
        return [Vote(approver=row["approver"], at=row["at"]) for row in rows]

    async def decide(
        self, approval_id: str, state: ApprovalState, *, by: str, now: float, reason: str | None = None
    ) -> bool:
        won = await self.pool.fetchval(
            "UPDATE approvals SET state = $1, decided_by = $2, decided_at = $3, reason = $4, updated_at = $3"
            " WHERE id = $5 AND state = $6 AND expires_at > $3 RETURNING 1",
            state.value,
            by,
            now,
            reason,
            approval_id,
            ApprovalState.PENDING.value,
        )
        return won is not None

    async def set_approval_launch(self, approval_id: str, launch_id: str, *, now: float) -> None:
        await self.pool.execute(
            "UPDATE approvals SET launch_id = $1, updated_at = $2 WHERE id = $3", launch_id, now, approval_id
        )

    async def expire_due(self, *, now: float) -> list[ApprovalRecord]:
        # One statement: every replica sweeps, and each row is returned to the single sweeper that changed it.
        rows = await self.pool.fetch(
            f"UPDATE approvals SET state = $1, decided_at = $2, updated_at = $2"
            f" WHERE state = $3 AND expires_at <= $2 RETURNING {APPROVAL_COLUMNS}",
            ApprovalState.EXPIRED.value,
            now,
            ApprovalState.PENDING.value,
        )
        return sorted((approval_from(dict(row)) for row in rows), key=lambda a: a.created_at)

    async def pending_approvals(self, channel: str) -> list[ApprovalRecord]:
        rows = await self.pool.fetch(
            f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE channel = $1 AND state = $2 ORDER BY created_at",
            channel,
            ApprovalState.PENDING.value,
        )
        return [approval_from(dict(row)) for row in rows]

    # -- audit ----------------------------------------------------------------------------------------------

    async def append_audit(self, event: AuditEvent) -> None:
        await self.pool.execute(
            f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ({placeholders(9)})",
            *audit_values(event),
        )

    async def audit_events(self, *, limit: int = 1000) -> list[AuditEvent]:
        rows = await self.pool.fetch(f"SELECT {AUDIT_COLUMNS} FROM audit ORDER BY at, id LIMIT $1", limit)
        return [audit_from(dict(row)) for row in rows]
