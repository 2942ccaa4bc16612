"""The embedded SQLite backend of the store (one process; PostgreSQL is for several replicas)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from bot.store.base import QueryObserver, Store
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
from bot.store.rows import (
    APPROVAL_COLUMNS,
    AUDIT_COLUMNS,
    BACKLOG,
    LAUNCH_COLUMNS,
    OUTBOX_COLUMNS,
    OUTBOX_INSERT_COLUMNS,
    approval_from,
    approval_values,
    audit_from,
    audit_values,
    launch_from,
    launch_values,
    outbox_from,
    outbox_insert_values,
)
from bot.store.schema import MIGRATIONS, statement_for

__all__ = ["SqliteStore"]

_CLAIM_RETENTION_S = 24 * 3600.0
_T = TypeVar("_T")


class SqliteStore(Store):
    """aiosqlite keeps the blocking sqlite3 calls off the event loop; WAL lets readers run beside the writer.

    Every operation is one call queued to the connection's own thread (`_call`): a transaction runs whole inside
    its call, so no other coroutine's statement can land inside it, and no asyncio lock is needed. Writes queue in
    that thread rather than on a lock handed over once per turn of the event loop: under a storm of callbacks, a
    lock held across a transaction's five statements (and a lease's one UPDATE per message) made each result wait
    seconds for its turn. A read is one call too, not three (execute, fetch, close).
    """

    kind = "sqlite"

    def __init__(self, *, path: str, on_query: QueryObserver | None = None) -> None:
        self._path = path
        self._on_query = on_query
        self._db: aiosqlite.Connection | None = None
        # /healthz asks its own connection whether the database answers: on the main one it would queue behind
        # writes waiting out another process's lock (busy_timeout each), and time out instead of answering.
        self._pinger: aiosqlite.Connection | None = None
        self._writes: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None

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
        if self._on_query is not None:
            observe = self._on_query
            # sqlite3 hands over each statement with its values bound in (no separate arguments).
            trace: Callable[[str], None] = lambda sql: observe(sql, ())  # noqa: E731
            await self._db.set_trace_callback(trace)
        if self._path != ":memory:":  # another connection to :memory: would be another database
            self._pinger = await aiosqlite.connect(self._path, isolation_level=None)

    async def _migrate(self) -> None:
        await self._write("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", ())
        row = await self._row("SELECT MAX(version) FROM schema_version", ())
        current = int(row[0]) if row and row[0] is not None else 0
        for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):

            def migrate(db: sqlite3.Connection, version: int = version, statements: Any = statements) -> None:
                for statement in statements:
                    sql = statement_for(statement, self.kind)
                    if sql is not None:
                        db.execute(sql)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

            await self._transaction(migrate)

    async def _call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` against the connection on its own thread, as one queued call (see the class docstring)."""
        db = self.db
        # aiosqlite's own queue (what its execute() uses): calls run one at a time, in the order they were queued.
        run = cast(Callable[[Callable[[], _T]], Awaitable[_T]], db._execute)
        connection = db._conn
        return await run(lambda: work(connection))

    async def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """`work` as one atomic write, durable when this returns. Writes that arrive while a group of them is being
        committed go together in the next group (group commit): one transaction, so one sync to disk, for all of
        them, each inside a savepoint of its own, so that one which fails is undone alone. A commit's sync was
        most of a result's cost in the database thread (a millisecond and more on a busy disk, six per result)."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writes.append((work, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._commit_writes(), name="sqlite-writes")
        return cast(_T, await done)

    async def _commit_writes(self) -> None:
        try:
            while self._writes:
                group, self._writes = self._writes, []
                try:
                    outcomes = await self._call(partial(_commit_group, works=[work for work, _ in group]))
                except asyncio.CancelledError:
                    for _, done in group + self._writes:
                        done.cancel()
                    raise
                except Exception as exc:  # the group's own transaction failed (a lock not granted in time)
                    for _, done in group:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for (_, done), (value, error) in zip(group, outcomes, strict=True):
                    if done.done():
                        continue
                    if error is None:
                        done.set_result(value)
                    else:
                        done.set_exception(error)
        finally:
            self._writer = None

    async def _write(self, sql: str, args: Sequence[Any]) -> int:
        """One statement; the rows it changed."""
        return await self._transaction(lambda db: db.execute(sql, args).rowcount)

    async def _rows(self, sql: str, args: Sequence[Any]) -> list[sqlite3.Row]:
        return await self._call(lambda db: db.execute(sql, args).fetchall())

    async def _row(self, sql: str, args: Sequence[Any]) -> sqlite3.Row | None:
        row: sqlite3.Row | None = await self._call(lambda db: db.execute(sql, args).fetchone())
        return row

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._pinger is not None:
            await self._pinger.close()
            self._pinger = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> bool:
        try:
            if self._pinger is None:
                return await self._row("SELECT 1", ()) is not None
            # A read of the schema: the file is there and readable (WAL: a writer's lock does not stop it).
            async with self._pinger.execute("SELECT MAX(version) FROM schema_version") as cur:
                return (await cur.fetchone()) is not None
        except (sqlite3.Error, RuntimeError, ValueError):
            return False

    async def claim(self, key: str, *, now: float) -> bool:
        # One lookup by key: a claim older than the retention is taken over here, and deleted by `prune`.
        changed = await self._write(
            "INSERT INTO claims (key, created_at) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
            " SET created_at = excluded.created_at WHERE claims.created_at < ?",
            (key, now, now - _CLAIM_RETENTION_S),
        )
        return changed == 1

    async def release(self, key: str) -> None:
        await self._write("DELETE FROM claims WHERE key = ?", (key,))

    async def create_launch(self, launch: LaunchRecord) -> None:
        await self._write(
            f"INSERT INTO launches ({LAUNCH_COLUMNS}) VALUES ({', '.join('?' * 24)})",
            launch_values(launch),
        )

    async def get_launch(self, launch_id: str) -> LaunchRecord | None:
        return await self._one_launch("id = ?", launch_id)

    async def find_launch_by_token(self, token_hash: str) -> LaunchRecord | None:
        return await self._one_launch("callback_token_hash = ?", token_hash)

    async def find_launch_by_instance(self, job_instance_id: int) -> LaunchRecord | None:
        return await self._one_launch("job_instance_id = ? ORDER BY created_at DESC LIMIT 1", job_instance_id)

    async def _one_launch(self, where: str, arg: Any) -> LaunchRecord | None:
        row = await self._row(f"SELECT {LAUNCH_COLUMNS} FROM launches WHERE {where}", (arg,))
        return launch_from(dict(row)) if row else None

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

    async def record_result(
        self, launch_id: str, result_key: str, job_status: int, *, now: float, reply: OutboxMessage | None = None
    ) -> bool:
        def record(db: sqlite3.Connection) -> bool:
            won = (
                db.execute(
                    "INSERT INTO results (launch_id, result_key, job_status, created_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (launch_id, result_key) DO NOTHING",
                    (launch_id, result_key, job_status, now),
                ).rowcount
                == 1
            )
            if won:
                db.execute(
                    "UPDATE launches SET state = ?, job_status = ?, finished_at = ?, updated_at = ?,"
                    " next_poll_at = NULL, poll_owner = NULL, poll_lease_until = NULL WHERE id = ?",
                    (LaunchState.FINISHED.value, job_status, now, now, launch_id),
                )
                if reply is not None:
                    db.execute(*_enqueue_sql(reply))
            return won

        return await self._transaction(record)

    async def mark_result_posted(self, launch_id: str, result_key: str, reply_ts: str) -> None:
        await self._write(
            "UPDATE results SET reply_ts = ? WHERE launch_id = ? AND result_key = ?",
            (reply_ts, launch_id, result_key),
        )

    async def unposted_results(self) -> list[ResultRecord]:
        rows = await self._rows(
            "SELECT launch_id, result_key, job_status, created_at, reply_ts FROM results"
            " WHERE reply_ts IS NULL ORDER BY created_at",
            (),
        )
        return [ResultRecord(**dict(row)) for row in rows]

    async def unfinished_launches(self) -> list[LaunchRecord]:
        rows = await self._rows(
            f"SELECT {LAUNCH_COLUMNS} FROM launches WHERE state IN (?, ?, ?) ORDER BY created_at",
            (LaunchState.STARTING.value, LaunchState.RUNNING.value, LaunchState.UNKNOWN.value),
        )
        return [launch_from(dict(row)) for row in rows]

    async def recent_launches(self, channel: str, limit: int) -> list[LaunchRecord]:
        rows = await self._rows(
            f"SELECT {LAUNCH_COLUMNS} FROM launches WHERE channel = ? ORDER BY created_at DESC LIMIT ?",
            (channel, limit),
        )
        return [launch_from(dict(row)) for row in rows]

    async def create_approval(self, approval: ApprovalRecord) -> None:
        await self._write(
            f"INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ({', '.join('?' * 21)})",
            approval_values(approval),
        )

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        row = await self._row(f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?", (approval_id,))
        return approval_from(dict(row)) if row else None

    async def set_approval_message(self, approval_id: str, message_ts: str, *, now: float) -> None:
        await self._write(
            "UPDATE approvals SET message_ts = ?, updated_at = ? WHERE id = ?", (message_ts, now, approval_id)
        )

    async def add_vote(self, approval_id: str, approver: str, *, now: float) -> bool:
        changed = await self._write(
            "INSERT INTO approval_votes (approval_id, approver, at)"
            " SELECT id, ?, ? FROM approvals WHERE id = ? AND state = ? AND expires_at > ?"
            " ON CONFLICT (approval_id, approver) DO NOTHING",
            (approver, now, approval_id, ApprovalState.PENDING.value, now),
        )
        return changed == 1

    async def votes(self, approval_id: str) -> list[Vote]:
        rows = await self._rows(
            "SELECT approver, at FROM approval_votes WHERE approval_id = ? ORDER BY at", (approval_id,)
        )
        return [Vote(approver=row["approver"], at=row["at"]) for row in rows]

    async def decide(
        self, approval_id: str, state: ApprovalState, *, by: str, now: float, reason: str | None = None
    ) -> bool:
        changed = await self._write(
            "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?, reason = ?, updated_at = ?"
            " WHERE id = ? AND state = ? AND expires_at > ?",
            (state.value, by, now, reason, now, approval_id, ApprovalState.PENDING.value, now),
        )
        return changed == 1

    async def set_approval_launch(self, approval_id: str, launch_id: str, *, now: float) -> None:
        await self._write(
            "UPDATE approvals SET launch_id = ?, updated_at = ? WHERE id = ?", (launch_id, now, approval_id)
        )

    async def expire_due(self, *, now: float) -> list[ApprovalRecord]:
        rows = await self._rows(
            f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE state = ? AND expires_at <= ?",
            (ApprovalState.PENDING.value, now),
        )
        expired = []
        for approval in (approval_from(dict(row)) for row in rows):
            changed = await self._write(
                "UPDATE approvals SET state = ?, decided_at = ?, updated_at = ? WHERE id = ? AND state = ?",
                (ApprovalState.EXPIRED.value, now, now, approval.id, ApprovalState.PENDING.value),
            )
            if changed == 1:
                expired.append(
                    approval.model_copy(update={"state": ApprovalState.EXPIRED, "decided_at": now, "updated_at": now})
                )
        return expired

    async def pending_approvals(self, channel: str) -> list[ApprovalRecord]:
        rows = await self._rows(
            f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE channel = ? AND state = ? ORDER BY created_at",
            (channel, ApprovalState.PENDING.value),
        )
        return [approval_from(dict(row)) for row in rows]

    async def append_audit(self, event: AuditEvent) -> None:
        await self._write(
            f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ({', '.join('?' * 9)})",
            audit_values(event),
        )

    async def audit_events(self, *, limit: int = 1000) -> list[AuditEvent]:
        rows = await self._rows(f"SELECT {AUDIT_COLUMNS} FROM audit ORDER BY at, id LIMIT ?", (limit,))
        return [audit_from(dict(row)) for row in rows]

    async def schedule_poll(self, launch_id: str, *, at: float | None, attempts: int = 0) -> None:
        await self._write(
            "UPDATE launches SET next_poll_at = ?, poll_attempts = ?, poll_owner = NULL, poll_lease_until = NULL"
            " WHERE id = ?",
            (at, attempts, launch_id),
        )

    async def lease_due_polls(self, *, owner: str, now: float, lease: float, limit: int) -> list[LaunchRecord]:
        def take(db: sqlite3.Connection) -> list[sqlite3.Row]:
            ids = [
                row["id"]
                for row in db.execute(
                    "SELECT id FROM launches WHERE next_poll_at IS NOT NULL AND next_poll_at <= ?"
                    " AND state IN (?, ?, ?) AND (poll_lease_until IS NULL OR poll_lease_until < ?)"
                    " ORDER BY next_poll_at LIMIT ?",
                    (
                        now,
                        LaunchState.STARTING.value,
                        LaunchState.RUNNING.value,
                        LaunchState.UNKNOWN.value,
                        now,
                        limit,
                    ),
                ).fetchall()
            ]
            leased = []
            for launch_id in ids:
                db.execute(
                    "UPDATE launches SET poll_owner = ?, poll_lease_until = ? WHERE id = ?",
                    (owner, now + lease, launch_id),
                )
                row = db.execute(f"SELECT {LAUNCH_COLUMNS} FROM launches WHERE id = ?", (launch_id,)).fetchone()
                if row is not None:
                    leased.append(row)
            return leased

        return [launch_from(dict(row)) for row in await self._transaction(take)]

    async def release_polls(self, *, owner: str) -> int:
        return await self._write(
            # Only launches still to be polled hold leases (finishing clears both). Poll times are epoch seconds:
            # the range reads through launches_next_poll on both databases, where IS NOT NULL may scan the table.
            "UPDATE launches SET poll_owner = NULL, poll_lease_until = NULL WHERE next_poll_at >= 0 AND poll_owner = ?",
            (owner,),
        )

    async def set_progress(self, launch_id: str, progress: dict[str, Any], *, now: float) -> None:
        await self._write(
            "UPDATE launches SET progress = ?, progress_at = ?, updated_at = ? WHERE id = ?",
            (json.dumps(progress), now, now, launch_id),
        )

    async def reopen_launch(self, launch_id: str, *, finished_at: float, job_status: int, now: float) -> bool:
        changed = await self._write(
            "UPDATE launches SET state = ?, job_status = ?, finished_at = NULL, updated_at = ?, next_poll_at = ?,"
            " poll_attempts = 0, poll_owner = NULL, poll_lease_until = NULL, progress = NULL, progress_at = NULL"
            " WHERE id = ? AND state = ? AND finished_at = ?",
            (LaunchState.RUNNING.value, job_status, now, now, launch_id, LaunchState.FINISHED.value, finished_at),
        )
        return changed == 1

    async def claim_instance(self, launch_id: str, job_instance_id: int, *, now: float) -> bool:
        def claim(db: sqlite3.Connection) -> bool:
            taken = db.execute(
                "SELECT 1 FROM launches WHERE job_instance_id = ? AND id != ?", (job_instance_id, launch_id)
            ).fetchone()
            if taken is not None:
                return False
            changed: int = db.execute(
                "UPDATE launches SET job_instance_id = ?, state = ?, error = NULL, updated_at = ?"
                " WHERE id = ? AND job_instance_id IS NULL",
                (job_instance_id, LaunchState.RUNNING.value, now, launch_id),
            ).rowcount
            return changed == 1

        return await self._transaction(claim)

    async def prune(self, *, claims_before: float, sent_before: float, audit_before: float | None, limit: int) -> int:
        deleted = 0
        for sql, cutoff in (
            (
                "DELETE FROM claims WHERE rowid IN (SELECT rowid FROM claims WHERE created_at < ? LIMIT ?)",
                claims_before,
            ),
            (
                "DELETE FROM outbox WHERE rowid IN"
                " (SELECT rowid FROM outbox WHERE state = 'sent' AND created_at < ? LIMIT ?)",
                sent_before,
            ),
            ("DELETE FROM audit WHERE rowid IN (SELECT rowid FROM audit WHERE at < ? LIMIT ?)", audit_before),
        ):
            if cutoff is not None:
                deleted += max(0, await self._write(sql, (cutoff, limit)))
        return deleted

    async def enqueue(self, message: OutboxMessage) -> bool:
        return await self._write(*_enqueue_sql(message)) == 1

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
        skip = ""
        skipped: list[Any] = []
        for kind, channels in (("o.kind = 'post'", skip_posts_in), ("o.kind != 'post'", skip_edits_in)):
            if channels:
                skip += f" AND NOT ({kind} AND o.channel IN ({', '.join('?' * len(channels))}))"
                skipped.extend(channels)
        sql = (
            # lane_rank numbers each channel's posts (and, apart, its edits) in seq order. One statement: the due
            # heads are chosen and leased together, whatever their number.
            # A leased message may already be rendering: from here on it no longer absorbs newer refreshes.
            f"UPDATE outbox SET lease_owner = ?, lease_until = ?, dedupe_key = NULL WHERE id IN"
            f" (SELECT id FROM (SELECT o.id, o.seq, o.kind, ROW_NUMBER() OVER"
            f" (PARTITION BY o.channel, o.kind = 'post' ORDER BY o.seq) AS lane_rank"
            f" FROM outbox o WHERE state = 'pending' AND next_attempt_at <= ?"
            f" AND (lease_until IS NULL OR lease_until < ?){skip}"
            f" AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.order_key = o.order_key"
            f" AND p.state = 'pending' AND p.seq < o.seq))"
            f" WHERE lane_rank <= CASE WHEN kind = 'post' THEN ? ELSE ? END ORDER BY seq LIMIT ?)"
            f" RETURNING {OUTBOX_COLUMNS}"
        )
        args = (owner, now + lease, now, now, *skipped, posts_per_channel or limit, edits_per_channel or limit, limit)
        rows: list[sqlite3.Row] = await self._transaction(lambda db: db.execute(sql, args).fetchall())
        return sorted((outbox_from(dict(row)) for row in rows), key=lambda m: m.seq)

    async def outbox_sent(self, message_id: str, *, owner: str, ts: str | None, now: float) -> None:
        await self._write(
            "UPDATE outbox SET state = 'sent', sent_ts = ?, lease_owner = NULL, lease_until = NULL,"
            " attempts = attempts + 1 WHERE id = ?",
            (ts, message_id),
        )

    async def outbox_retry(self, message_id: str, *, owner: str, error: str, at: float) -> None:
        await self._write(
            # Only the lease holder reschedules: a replica whose lease ran out must not touch another's message.
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, lease_owner = NULL,"
            " lease_until = NULL WHERE id = ? AND state = 'pending' AND lease_owner = ?",
            (error, at, message_id, owner),
        )

    async def outbox_dead(self, message_id: str, *, owner: str, error: str) -> None:
        await self._write(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?, lease_owner = NULL,"
            " lease_until = NULL WHERE id = ?",
            (error, message_id),
        )

    async def outbox_release(self, message_ids: Sequence[str], *, owner: str) -> None:
        if not message_ids:
            return
        marks = ", ".join("?" for _ in message_ids)
        await self._write(
            f"UPDATE outbox SET lease_owner = NULL, lease_until = NULL"
            f" WHERE id IN ({marks}) AND state = 'pending' AND lease_owner = ?",
            (*message_ids, owner),
        )

    async def backlog(self, *, now: float) -> Backlog:
        row = await self._row(BACKLOG.format(now="?"), (now,))
        assert row is not None
        return Backlog(pending_messages=int(row[0]), oldest_pending_at=row[1], oldest_due_poll_at=row[2])

    async def outbox_messages(self, *, state: str | None = None) -> list[OutboxMessage]:
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        rows = await self._rows(f"SELECT {OUTBOX_COLUMNS} FROM outbox {where} ORDER BY seq", args)
        return [outbox_from(dict(row)) for row in rows]


def _commit_group(
    db: sqlite3.Connection, works: Sequence[Callable[[sqlite3.Connection], Any]]
) -> list[tuple[Any, Exception | None]]:
    """Run each write in a savepoint of one transaction: what each returned, or the error that undid it alone."""
    outcomes: list[tuple[Any, Exception | None]] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for work in works:
            db.execute("SAVEPOINT write")
            try:
                outcomes.append((work(db), None))
            except Exception as exc:
                db.execute("ROLLBACK TO write")
                outcomes.append((None, exc))
            db.execute("RELEASE write")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return outcomes


def _enqueue_sql(message: OutboxMessage) -> tuple[str, tuple[Any, ...]]:
    """seq is the next number after every stored one, read and written in this one statement: SQLite runs one
    writer at a time, so no two messages get the same number, and order follows the order messages were stored."""
    return (
        f"INSERT INTO outbox (seq, {OUTBOX_INSERT_COLUMNS})"
        f" VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox), {', '.join('?' * 12)})"
        " ON CONFLICT (dedupe_key) WHERE state = 'pending' DO NOTHING",
        outbox_insert_values(message),
    )
