"""The PostgreSQL backend of the store, for any number of bot replicas sharing one database.

Built on asyncpg rather than psycopg 3: it speaks PostgreSQL's binary protocol natively on asyncio (no thread pool,
no libpq), is among the fastest Python drivers, ships its own connection pool, and is actively maintained by
MagicStack. psycopg 3's async mode would do too; nothing here depends on asyncpg beyond the pool and `$n` placeholders.

How replicas stay correct:

- Every "who acts" change is one conditional statement (`INSERT ... ON CONFLICT DO NOTHING`, `UPDATE ... WHERE
  state = 'pending'`). Under READ COMMITTED a second writer waits for the first and re-checks the row it then sees,
  so exactly one caller wins.
- Polls and outbox messages are handed out by `SELECT ... FOR UPDATE SKIP LOCKED` plus a lease (owner and expiry)
  written in the same statement: replicas never wait on each other, never take the same row, and a replica that dies
  leaves only leases that run out, not locks held forever.
- Migrations run under a session advisory lock, so replicas starting together apply each one exactly once.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from bot.store.base import QueryObserver, Store
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

__all__ = ["PostgresStore"]

# pg_advisory_lock takes one bigint: a fixed, project-specific key ("bkjob" in ASCII) so that only bkjob-bot
# replicas migrating the same database serialise on it.
MIGRATION_LOCK_KEY = 0x626B6A6F62
_CLAIM_RETENTION_S = 24 * 3600.0
_PING_TIMEOUT_S = 2.0
_UNFINISHED = (LaunchState.STARTING.value, LaunchState.RUNNING.value, LaunchState.UNKNOWN.value)


def _placeholders(count: int, start: int = 1) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


def _prefixed(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


class PostgresStore(Store):
    """One asyncpg pool per replica; every transaction holds its own connection, so no in-process lock is needed."""

    kind = "postgresql"

    def __init__(
        self,
        *,
        dsn: str,
        min_size: int = 1,
        max_size: int = 10,
        server_settings: Mapping[str, str] | None = None,
        on_query: QueryObserver | None = None,
    ) -> None:
        self._dsn = dsn
        self._on_query = on_query
        self._min_size = min_size
        self._max_size = max_size
        self._server_settings = dict(server_settings or {})
        self._pool: asyncpg.Pool | None = None

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """Accept postgresql:// and postgres://; `search_path=` or libpq's `options=-csearch_path=...` pick a schema.

        Both are lifted into server_settings (rather than left to the server to parse from the startup packet) so
        that a schema given either way is applied the same, and can be seen in `server_settings` when debugging.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"not a PostgreSQL URL: {parts.scheme}://")
        settings: dict[str, str] = {}
        kept: list[tuple[str, str]] = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name == "search_path":
                settings["search_path"] = value
            elif name == "options":
                settings.update(_parse_options(value))
            else:
                kept.append((name, value))
        dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(kept), parts.fragment))
        return cls(dsn=dsn, server_settings=settings)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            dsn=self._dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            server_settings=self._server_settings or None,
            # A pool resets a connection's query loggers when it is released: add the observer at every acquire.
            setup=self._observe if self._on_query is not None else None,
        )
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def _observe(self, con: asyncpg.pool.PoolConnectionProxy) -> None:
        observe = self._on_query
        if observe is not None:
            con.add_query_logger(lambda logged: observe(logged.query, tuple(logged.args or ())))

    async def _migrate(self) -> None:
        """Under a session advisory lock: the second replica waits, then finds every migration already applied."""
        async with self.pool.acquire() as con:
            await con.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
            try:
                await con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                current = await con.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
                    async with con.transaction():
                        for statement in statements:
                            sql = statement_for(statement, self.kind)
                            if sql is not None:
                                await con.execute(sql)
                        await con.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
            finally:
                # A dropped connection releases the lock too; this is for the normal path, where it goes back
                # to the pool and must not keep the lock.
                await con.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def ping(self) -> bool:
        if self._pool is None:
            return False
        try:
            async with asyncio.timeout(_PING_TIMEOUT_S):
                return bool(await self._pool.fetchval("SELECT 1") == 1)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    async def claim(self, key: str, *, now: float) -> bool:
        # One lookup by key: a claim older than the retention is taken over here, and deleted by `prune`. A racing
        # upsert of the same key waits for the first and re-checks the WHERE on the row it committed.
        won = await self.pool.fetchval(
            "INSERT INTO claims (key, created_at) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE"
            " SET created_at = excluded.created_at WHERE claims.created_at < $3 RETURNING 1",
            key,
            now,
            now - _CLAIM_RETENTION_S,
        )
        return won is not None

    async def release(self, key: str) -> None:
        await self.pool.execute("DELETE FROM claims WHERE key = $1", key)

    async def create_launch(self, launch: LaunchRecord) -> None:
        await self.pool.execute(
            f"INSERT INTO launches ({LAUNCH_COLUMNS}) VALUES ({_placeholders(24)})",
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
                sql, args = _enqueue_sql(reply)
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

    # -- approvals ------------------------------------------------------------------------------------------

    async def create_approval(self, approval: ApprovalRecord) -> None:
        await self.pool.execute(
            f"INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ({_placeholders(21)})",
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
            f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ({_placeholders(9)})",
            *audit_values(event),
        )

    async def audit_events(self, *, limit: int = 1000) -> list[AuditEvent]:
        rows = await self.pool.fetch(f"SELECT {AUDIT_COLUMNS} FROM audit ORDER BY at, id LIMIT $1", limit)
        return [audit_from(dict(row)) for row in rows]

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
            f" RETURNING {_prefixed(LAUNCH_COLUMNS, 'l')}",
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

    # -- the Slack outbox -------------------------------------------------------------------------------------

    # -- retention ----------------------------------------------------------------------------------------------

    async def prune(self, *, claims_before: float, sent_before: float, audit_before: float | None, limit: int) -> int:
        deleted = 0
        for sql, cutoff in (
            ("DELETE FROM claims WHERE key IN (SELECT key FROM claims WHERE created_at < $1 LIMIT $2)", claims_before),
            (
                "DELETE FROM outbox WHERE id IN"
                " (SELECT id FROM outbox WHERE state = 'sent' AND created_at < $1 LIMIT $2)",
                sent_before,
            ),
            ("DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 LIMIT $2)", audit_before),
        ):
            if cutoff is not None:
                status = await self.pool.execute(sql, cutoff, limit)
                deleted += int(status.rsplit(" ", 1)[-1])
        return deleted

    async def enqueue(self, message: OutboxMessage) -> bool:
        sql, args = _enqueue_sql(message)
        return await self.pool.fetchval(sql, *args) is not None

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
        # Order per order_key rests on data, not on locks. The NOT EXISTS reads every pending message of the key
        # without locking, so a head that another replica holds (row-locked right now, or leased earlier) still
        # blocks the messages behind it. SKIP LOCKED only applies to the candidate heads themselves: it can make
        # this replica skip a head, never promote the second message of a key in its place. (Locking all pending
        # rows with SKIP LOCKED and then picking the lowest seq per key would do exactly that.) The window that
        # caps each channel's posts runs over unlocked candidates (PostgreSQL locks no rows under a window); the
        # rows are then locked and re-checked one by one.
        rows = await self.pool.fetch(
            f"WITH candidates AS ("
            f" SELECT o.id, o.seq, o.kind, ROW_NUMBER() OVER"
            f" (PARTITION BY o.channel, o.kind = 'post' ORDER BY o.seq) AS lane_rank"
            f" FROM outbox o WHERE o.state = 'pending' AND o.next_attempt_at <= $1"
            f" AND (o.lease_until IS NULL OR o.lease_until < $1)"
            f" AND NOT (o.kind = 'post' AND o.channel = ANY($7::text[]))"
            f" AND NOT (o.kind != 'post' AND o.channel = ANY($8::text[]))"
            f" AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.order_key = o.order_key"
            f" AND p.state = 'pending' AND p.seq < o.seq)),"
            f" heads AS ("
            f" SELECT o.id FROM outbox o JOIN candidates c ON c.id = o.id"
            f" WHERE c.lane_rank <= CASE WHEN c.kind = 'post' THEN $5::bigint ELSE $6::bigint END"
            f" AND o.state = 'pending' AND (o.lease_until IS NULL OR o.lease_until < $1)"
            f" ORDER BY c.seq LIMIT $2 FOR UPDATE OF o SKIP LOCKED)"
            # A leased message may already be rendering: from here on it no longer absorbs newer refreshes.
            f" UPDATE outbox m SET lease_owner = $3, lease_until = $4, dedupe_key = NULL"
            f" FROM heads WHERE m.id = heads.id"
            f" RETURNING {_prefixed(OUTBOX_COLUMNS, 'm')}",
            now,
            limit,
            owner,
            now + lease,
            posts_per_channel or limit,
            edits_per_channel or limit,
            list(skip_posts_in),
            list(skip_edits_in),
        )
        return sorted((outbox_from(dict(row)) for row in rows), key=lambda m: m.seq)

    async def outbox_sent(self, message_id: str, *, owner: str, ts: str | None, now: float) -> None:
        # Not conditional on the owner: the message did reach Slack, whoever holds the lease now.
        await self.pool.execute(
            "UPDATE outbox SET state = 'sent', sent_ts = $1, lease_owner = NULL, lease_until = NULL,"
            " attempts = attempts + 1 WHERE id = $2",
            ts,
            message_id,
        )

    async def outbox_retry(self, message_id: str, *, owner: str, error: str, at: float) -> None:
        await self.pool.execute(
            # Only the lease holder reschedules: a replica whose lease ran out must not touch another's message.
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2, lease_owner = NULL,"
            " lease_until = NULL WHERE id = $3 AND state = 'pending' AND lease_owner = $4",
            error,
            at,
            message_id,
            owner,
        )

    async def outbox_dead(self, message_id: str, *, owner: str, error: str) -> None:
        await self.pool.execute(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = $1, lease_owner = NULL,"
            " lease_until = NULL WHERE id = $2",
            error,
            message_id,
        )

    async def outbox_release(self, message_ids: Sequence[str], *, owner: str) -> None:
        await self.pool.execute(
            "UPDATE outbox SET lease_owner = NULL, lease_until = NULL"
            " WHERE id = ANY($1::text[]) AND state = 'pending' AND lease_owner = $2",
            list(message_ids),
            owner,
        )

    async def outbox_messages(self, *, state: str | None = None) -> list[OutboxMessage]:
        if state:
            rows = await self.pool.fetch(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = $1 ORDER BY seq", state)
        else:
            rows = await self.pool.fetch(f"SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY seq")
        return [outbox_from(dict(row)) for row in rows]


def _parse_options(options: str) -> dict[str, str]:
    """libpq's `options` holds command-line switches: `-c name=value` or `--name=value`, possibly several."""
    settings: dict[str, str] = {}
    words = shlex.split(options)
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            i += 1
            word = words[i]
        elif word.startswith("-c"):
            word = word[2:]
        elif word.startswith("--"):
            word = word[2:]
        else:
            raise ValueError(f"unsupported PostgreSQL option {word!r} (use -c name=value)")
        name, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"PostgreSQL option {word!r} has no value")
        settings[name.replace("-", "_")] = value
        i += 1
    return settings


def _enqueue_sql(message: OutboxMessage) -> tuple[str, list[Any]]:
    """The insert that enqueue and record_result share; RETURNING 1 tells whether a row went in.

    seq comes from one sequence shared by every replica, drawn when the row is written: a message stored after
    another was stored (committed) is numbered after it, whatever the replicas' clocks say. (A number drawn by an
    insert that then conflicts is skipped; order needs no gap-free numbers.)"""
    return (
        f"INSERT INTO outbox (seq, {OUTBOX_INSERT_COLUMNS}) VALUES (nextval('outbox_order'), {_placeholders(12)})"
        " ON CONFLICT (dedupe_key) WHERE state = 'pending' DO NOTHING RETURNING 1",
        list(outbox_insert_values(message)),
    )
