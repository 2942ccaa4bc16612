"""The embedded SQLite backend of the store (one process; PostgreSQL is for several replicas)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite

from bot.store.base import Store
from bot.store.records import (
    ApprovalRecord,
    ApprovalState,
    AuditEvent,
    LaunchRecord,
    LaunchState,
    ResultRecord,
    SentVariable,
    Vote,
)
from bot.store.schema import MIGRATIONS

__all__ = ["SqliteStore"]

_CLAIM_RETENTION_S = 24 * 3600.0
_LAUNCH_COLUMNS = (
    "id, created_at, updated_at, requester, channel, message_ts, bk_biz_id, bk_job_id, plan_name, bk_username,"
    " variables, callback_token_hash, job_instance_id, job_instance_name, state, job_status, error, finished_at,"
    " approval_id, approved_by"
)
_APPROVAL_COLUMNS = (
    "id, created_at, updated_at, requester, channel, message_ts, bk_biz_id, bk_job_id, plan_name, bk_username,"
    " request_values, variables, approvers, min_approvals, expires_at, state, decided_by, decided_at, reason,"
    " launch_id"
)
_AUDIT_COLUMNS = "id, at, actor, action, channel, approval_id, launch_id, job_instance_id, detail"


class SqliteStore(Store):
    """aiosqlite keeps the blocking sqlite3 calls off the event loop; WAL lets readers run beside the writer."""

    def __init__(self, *, path: str) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        # One connection is shared by every coroutine: a transaction must not let another's statements in.
        self._tx = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        path = url.removeprefix("sqlite:///")
        return cls(path=path or ":memory:")

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._migrate()

    async def _migrate(self) -> None:
        await self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        async with self.db.execute("SELECT MAX(version) FROM schema_version") as cur:
            row = await cur.fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    await self.db.execute(statement)
                await self.db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise

    async def _write(self, sql: str, args: tuple[Any, ...]) -> aiosqlite.Cursor:
        async with self._tx:
            return await self.db.execute(sql, args)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> bool:
        try:
            async with self.db.execute("SELECT 1") as cur:
                return (await cur.fetchone()) is not None
        except (sqlite3.Error, RuntimeError, ValueError):
            return False

    async def claim(self, key: str, *, now: float) -> bool:
        await self._write("DELETE FROM claims WHERE created_at < ?", (now - _CLAIM_RETENTION_S,))
        cur = await self._write(
            "INSERT INTO claims (key, created_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, now)
        )
        return cur.rowcount == 1

    async def create_launch(self, launch: LaunchRecord) -> None:
        await self._write(
            f"INSERT INTO launches ({_LAUNCH_COLUMNS}) VALUES ({', '.join('?' * 20)})",
            (
                launch.id,
                launch.created_at,
                launch.updated_at,
                launch.requester,
                launch.channel,
                launch.message_ts,
                launch.bk_biz_id,
                launch.bk_job_id,
                launch.plan_name,
                launch.bk_username,
                json.dumps([v.model_dump() for v in launch.variables]),
                launch.callback_token_hash,
                launch.job_instance_id,
                launch.job_instance_name,
                launch.state.value,
                launch.job_status,
                launch.error,
                launch.finished_at,
                launch.approval_id,
                json.dumps(launch.approved_by),
            ),
        )

    async def get_launch(self, launch_id: str) -> LaunchRecord | None:
        return await self._one_launch("id = ?", launch_id)

    async def find_launch_by_token(self, token_hash: str) -> LaunchRecord | None:
        return await self._one_launch("callback_token_hash = ?", token_hash)

    async def _one_launch(self, where: str, arg: Any) -> LaunchRecord | None:
        async with self.db.execute(f"SELECT {_LAUNCH_COLUMNS} FROM launches WHERE {where}", (arg,)) as cur:
            row = await cur.fetchone()
        return _launch(row) if row else None

    async def set_message(self, launch_id: str, message_ts: str, *, now: float) -> None:
        await self._write(
            "UPDATE launches SET message_ts = ?, updated_at = ? WHERE id = ?", (message_ts, now, launch_id)
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
        await self._write(
            # A result may land before execute_job's answer is recorded: never move a finished launch back.
            "UPDATE launches SET state = CASE WHEN state = ? THEN state ELSE ? END, updated_at = ?,"
            " job_instance_id = COALESCE(?, job_instance_id), job_instance_name = COALESCE(?, job_instance_name),"
            " error = ? WHERE id = ?",
            (
                LaunchState.FINISHED.value,
                state.value,
                now,
                job_instance_id,
                job_instance_name,
                error,
                launch_id,
            ),
        )

    async def record_result(self, launch_id: str, result_key: str, job_status: int, *, now: float) -> bool:
        async with self._tx:
            return await self._record_result(launch_id, result_key, job_status, now=now)

    async def _record_result(self, launch_id: str, result_key: str, job_status: int, *, now: float) -> bool:
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            cur = await self.db.execute(
                "INSERT INTO results (launch_id, result_key, job_status, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (launch_id, result_key) DO NOTHING",
                (launch_id, result_key, job_status, now),
            )
            won = cur.rowcount == 1
            if won:
                await self.db.execute(
                    "UPDATE launches SET state = ?, job_status = ?, finished_at = ?, updated_at = ? WHERE id = ?",
                    (LaunchState.FINISHED.value, job_status, now, now, launch_id),
                )
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        return won

    async def mark_result_posted(self, launch_id: str, result_key: str, reply_ts: str) -> None:
        await self._write(
            "UPDATE results SET reply_ts = ? WHERE launch_id = ? AND result_key = ?",
            (reply_ts, launch_id, result_key),
        )

    async def unposted_results(self) -> list[ResultRecord]:
        async with self.db.execute(
            "SELECT launch_id, result_key, job_status, created_at, reply_ts FROM results"
            " WHERE reply_ts IS NULL ORDER BY created_at"
        ) as cur:
            rows = await cur.fetchall()
        return [ResultRecord(**dict(row)) for row in rows]

    async def unfinished_launches(self) -> list[LaunchRecord]:
        async with self.db.execute(
            f"SELECT {_LAUNCH_COLUMNS} FROM launches WHERE state IN (?, ?, ?) ORDER BY created_at",
            (LaunchState.STARTING.value, LaunchState.RUNNING.value, LaunchState.UNKNOWN.value),
        ) as cur:
            rows = await cur.fetchall()
        return [_launch(row) for row in rows]

    async def recent_launches(self, channel: str, limit: int) -> list[LaunchRecord]:
        async with self.db.execute(
            f"SELECT {_LAUNCH_COLUMNS} FROM launches WHERE channel = ? ORDER BY created_at DESC LIMIT ?",
            (channel, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [_launch(row) for row in rows]

    async def create_approval(self, approval: ApprovalRecord) -> None:
        await self._write(
            f"INSERT INTO approvals ({_APPROVAL_COLUMNS}) VALUES ({', '.join('?' * 20)})",
            (
                approval.id,
                approval.created_at,
                approval.updated_at,
                approval.requester,
                approval.channel,
                approval.message_ts,
                approval.bk_biz_id,
                approval.bk_job_id,
                approval.plan_name,
                approval.bk_username,
                json.dumps(approval.values),
                json.dumps([v.model_dump() for v in approval.variables]),
                json.dumps(approval.approvers),
                approval.min_approvals,
                approval.expires_at,
                approval.state.value,
                approval.decided_by,
                approval.decided_at,
                approval.reason,
                approval.launch_id,
            ),
        )

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        async with self.db.execute(f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)) as cur:
            row = await cur.fetchone()
        return _approval(row) if row else None

    async def set_approval_message(self, approval_id: str, message_ts: str, *, now: float) -> None:
        await self._write(
            "UPDATE approvals SET message_ts = ?, updated_at = ? WHERE id = ?", (message_ts, now, approval_id)
        )

    async def add_vote(self, approval_id: str, approver: str, *, now: float) -> bool:
        cur = await self._write(
            "INSERT INTO approval_votes (approval_id, approver, at)"
            " SELECT id, ?, ? FROM approvals WHERE id = ? AND state = ? AND expires_at > ?"
            " ON CONFLICT (approval_id, approver) DO NOTHING",
            (approver, now, approval_id, ApprovalState.PENDING.value, now),
        )
        return cur.rowcount == 1

    async def votes(self, approval_id: str) -> list[Vote]:
        async with self.db.execute(
            "SELECT approver, at FROM approval_votes WHERE approval_id = ? ORDER BY at", (approval_id,)
        ) as cur:
            rows = await cur.fetchall()
        return [Vote(approver=row["approver"], at=row["at"]) for row in rows]

    async def decide(
        self, approval_id: str, state: ApprovalState, *, by: str, now: float, reason: str | None = None
    ) -> bool:
        cur = await self._write(
            "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?, reason = ?, updated_at = ?"
            " WHERE id = ? AND state = ? AND expires_at > ?",
            (state.value, by, now, reason, now, approval_id, ApprovalState.PENDING.value, now),
        )
        return cur.rowcount == 1

    async def set_approval_launch(self, approval_id: str, launch_id: str, *, now: float) -> None:
        await self._write(
            "UPDATE approvals SET launch_id = ?, updated_at = ? WHERE id = ?", (launch_id, now, approval_id)
        )

    async def expire_due(self, *, now: float) -> list[ApprovalRecord]:
        async with self.db.execute(
            f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE state = ? AND expires_at <= ?",
            (ApprovalState.PENDING.value, now),
        ) as cur:
            due = [_approval(row) for row in await cur.fetchall()]
        expired = []
        for approval in due:
            cur = await self._write(
                "UPDATE approvals SET state = ?, decided_at = ?, updated_at = ? WHERE id = ? AND state = ?",
                (ApprovalState.EXPIRED.value, now, now, approval.id, ApprovalState.PENDING.value),
            )
            if cur.rowcount == 1:
                expired.append(
                    approval.model_copy(update={"state": ApprovalState.EXPIRED, "decided_at": now, "updated_at": now})
                )
        return expired

    async def pending_approvals(self, channel: str) -> list[ApprovalRecord]:
        async with self.db.execute(
            f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE channel = ? AND state = ? ORDER BY created_at",
            (channel, ApprovalState.PENDING.value),
        ) as cur:
            rows = await cur.fetchall()
        return [_approval(row) for row in rows]

    async def append_audit(self, event: AuditEvent) -> None:
        await self._write(
            f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES ({', '.join('?' * 9)})",
            (
                event.id,
                event.at,
                event.actor,
                event.action,
                event.channel,
                event.approval_id,
                event.launch_id,
                event.job_instance_id,
                event.detail,
            ),
        )

    async def audit_events(self, *, limit: int = 1000) -> list[AuditEvent]:
        async with self.db.execute(f"SELECT {_AUDIT_COLUMNS} FROM audit ORDER BY at, id LIMIT ?", (limit,)) as cur:
            rows = await cur.fetchall()
        return [AuditEvent(**dict(row)) for row in rows]


def _launch(row: sqlite3.Row) -> LaunchRecord:
    data = dict(row)
    data["variables"] = [SentVariable(**v) for v in json.loads(data["variables"])]
    data["approved_by"] = json.loads(data["approved_by"] or "[]")
    return LaunchRecord(**data)


def _approval(row: sqlite3.Row) -> ApprovalRecord:
    data = dict(row)
    data["values"] = json.loads(data.pop("request_values"))
    data["variables"] = [SentVariable(**v) for v in json.loads(data["variables"])]
    data["approvers"] = json.loads(data["approvers"])
    return ApprovalRecord(**data)
