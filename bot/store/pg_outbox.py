"""PostgreSQL's Slack outbox: messages handed out by `SELECT ... FOR UPDATE SKIP LOCKED` and a lease, in order per
key; a part of `PostgresStore`."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from bot.store.records import Backlog, OutboxMessage
from bot.store.rows import BACKLOG, OUTBOX_COLUMNS, OUTBOX_INSERT_COLUMNS, outbox_from, outbox_insert_values

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PgOutbox", "enqueue_sql", "placeholders", "prefixed"]


def placeholders(count: int, start: int = 1) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


def prefixed(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


class PgOutbox:
    """The outbox's queue; see `bot.store.postgres` for how replicas share it."""

    if TYPE_CHECKING:

        @property
        def pool(self) -> asyncpg.Pool: ...  # PostgresStore's

    async def enqueue(self, message: OutboxMessage) -> bool:
        sql, args = enqueue_sql(message)
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
            f" RETURNING {prefixed(OUTBOX_COLUMNS, 'm')}",
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

    async def backlog(self, *, now: float) -> Backlog:
        row = await self.pool.fetchrow(BACKLOG.format(now="$1"), now)
        assert row is not None
        return Backlog(pending_messages=int(row[0]), oldest_pending_at=row[1], oldest_due_poll_at=row[2])

    async def outbox_messages(self, *, state: str | None = None) -> list[OutboxMessage]:
        if state:
            rows = await self.pool.fetch(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = $1 ORDER BY seq", state)
        else:
            rows = await self.pool.fetch(f"SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY seq")
        return [outbox_from(dict(row)) for row in rows]


def enqueue_sql(message: OutboxMessage) -> tuple[str, list[Any]]:
    """The insert that enqueue and record_result share; RETURNING 1 tells whether a row went in.

    seq comes from one sequence shared by every replica, drawn when the row is written: a message stored after
    another was stored (committed) is numbered after it, whatever the replicas' clocks say. (A number drawn by an
    insert that then conflicts is skipped; order needs no gap-free numbers.)"""
    return (
        f"INSERT INTO outbox (seq, {OUTBOX_INSERT_COLUMNS}) VALUES (nextval('outbox_order'), {placeholders(12)})"
        " ON CONFLICT (dedupe_key) WHERE state = 'pending' DO NOTHING RETURNING 1",
        list(outbox_insert_values(message)),
    )
