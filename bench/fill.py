"""Months of history written in bulk: finished launches with their results, claims, delivered messages and audit.

Launching a million plans over HTTP would take hours; what the figures need is the tables as a year of use leaves
them. Rows are encoded by the store's own row functions (bot/store/rows.py), so they are exactly what the bot
writes, and inserted in large transactions (SQLite) or with COPY (PostgreSQL). The schema is created first by
opening the store, so migrations run as they would.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from bot.store import (
    AuditEvent,
    LaunchRecord,
    LaunchState,
    OutboxKind,
    OutboxMessage,
    OutboxState,
    PostgresStore,
    open_store,
)
from bot.store.rows import (
    AUDIT_COLUMNS,
    LAUNCH_COLUMNS,
    OUTBOX_COLUMNS,
    audit_values,
    launch_values,
    outbox_values,
)

__all__ = ["History", "fill"]

_CHUNK = 20_000
_DAY = 86400.0


@dataclass(frozen=True)
class History:
    """`launches` finished launches spread over `days` days before `now`, each with one result, one delivered
    reply and two audit events (what a busy site's tables hold after that long without retention), and as many
    claims made within the last day (a site that busy, at its retention of claims).

    `sent_days`: delivered replies older than that are left out, as the bot's retention leaves a site that has run
    it all along (7 days by default); None keeps them all, the backlog a first sweep meets after an upgrade.
    """

    launches: int
    now: float
    days: float = 365.0
    biz: int = 3
    plan: int = 100
    channels: int = 50
    sent_days: float | None = None

    def rows(self, start: int = 0) -> Iterator[dict[str, tuple[Any, ...]]]:
        step = self.days * _DAY / max(1, self.launches)
        for i in range(start, self.launches):
            at = self.now - self.days * _DAY + i * step
            launch_id = uuid.uuid4().hex
            channel = f"CPAST{i % self.channels:02d}"
            record = LaunchRecord(
                id=launch_id,
                created_at=at,
                updated_at=at + 30,
                requester=f"U0PAST{i % 40:02d}",
                channel=channel,
                message_ts=f"{int(at)}.{i % 1_000_000:06d}",
                bk_biz_id=self.biz,
                bk_job_id=self.plan + i % 10,
                plan_name="Deploy web",
                bk_username="ops-bot",
                callback_token_hash=uuid.uuid4().hex + uuid.uuid4().hex,
                job_instance_id=1_000_000 + i,
                job_instance_name="Deploy web",
                state=LaunchState.FINISHED,
                job_status=3,
                finished_at=at + 30,
            )
            reply = OutboxMessage(
                id=uuid.uuid4().hex,
                created_at=at + 30,
                seq=i + 1,
                channel=channel,
                order_key=f"{channel}:{record.message_ts}",
                kind=OutboxKind.POST,
                payload={"text": "Finished", "thread_ts": record.message_ts},
                state=OutboxState.SENT,
                attempts=1,
                next_attempt_at=at + 30,
                sent_ts=f"{int(at) + 30}.000100",
            )
            row = {
                "launches": launch_values(record),
                "results": (launch_id, "3", 3, at + 30, reply.sent_ts),
                # Claims are kept a day: the history's claims are the last day's requests, all still held.
                "claims": (f"command:{launch_id}", self.now - 82_800 * (i + 1) / self.launches),
                "outbox": outbox_values(reply),
                "audit": audit_values(
                    AuditEvent(id=uuid.uuid4().hex, at=at, actor=record.requester, action="launch.requested")
                ),
                "audit2": audit_values(
                    AuditEvent(id=uuid.uuid4().hex, at=at + 30, actor="bkjob", action="launch.finished")
                ),
            }
            if self.sent_days is not None and reply.created_at < self.now - self.sent_days * _DAY:
                del row["outbox"]
            yield row


_TABLES = {
    "launches": LAUNCH_COLUMNS,
    "results": "launch_id, result_key, job_status, created_at, reply_ts",
    "claims": "key, created_at",
    "outbox": OUTBOX_COLUMNS,
    "audit": AUDIT_COLUMNS,
}


def _chunks(history: History) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    chunk: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _TABLES}
    for row in history.rows():
        for table, values in row.items():
            chunk["audit" if table == "audit2" else table].append(values)
        if len(chunk["launches"]) >= _CHUNK:
            yield chunk
            chunk = {table: [] for table in _TABLES}
    if chunk["launches"]:
        yield chunk


async def fill(database_url: str, history: History) -> None:
    """Create the schema through the store, then write the history in bulk."""
    store = open_store(database_url)
    await store.open()
    try:
        if isinstance(store, PostgresStore):
            async with store.pool.acquire() as con:  # the store's own connection settings (schema) apply
                await _fill_postgres(con, history)
    finally:
        await store.close()
    if database_url.startswith("sqlite:///"):
        _fill_sqlite(database_url.removeprefix("sqlite:///"), history)


def _fill_sqlite(path: str, history: History) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        for chunk in _chunks(history):
            db.execute("BEGIN")
            for table, columns in _TABLES.items():
                marks = ", ".join("?" * len(columns.split(",")))
                db.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", chunk[table])
            db.execute("COMMIT")
    finally:
        db.close()


async def _fill_postgres(con: asyncpg.pool.PoolConnectionProxy, history: History) -> None:
    for chunk in _chunks(history):
        async with con.transaction():
            for table, columns in _TABLES.items():
                await con.copy_records_to_table(
                    table, records=chunk[table], columns=[c.strip() for c in columns.split(",")]
                )
    # New messages are numbered after the history's (an older schema without the sequence has nothing to move).
    if await con.fetchval("SELECT to_regclass('outbox_order') IS NOT NULL"):
        await con.execute("SELECT setval('outbox_order', (SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox), false)")
    # Settle what a bulk load leaves to autovacuum, so it does not run during the measurements.
    await con.execute("VACUUM ANALYZE")
