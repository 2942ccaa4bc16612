"""Retention trims the tables that only grow, by each one's rule, and keeps the audit trail unless told otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.retention import CLAIM_RETENTION_S, SENT_RETENTION_S, Retention
from bot.store import AuditEvent, OutboxState, SqliteStore
from tests.test_store import NOW, message

DAY = 86400.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(path=str(tmp_path / "retention.sqlite3"))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _history(store: SqliteStore) -> None:
    """A claim, a delivered message and an audit event from 400 days ago, and the same from just now."""
    for i, at in enumerate([NOW - 400 * DAY, NOW - 60]):
        await store.claim(f"command:T{i}", now=at)
        await store.enqueue(message(i, f"t{i}", created_at=at))
        await store.append_audit(AuditEvent(id=f"e{i}", at=at, actor="U0ALICE", action="launch.requested"))
    for leased in await store.lease_outbox(owner="o", now=NOW, lease=30, limit=10):
        await store.outbox_sent(leased.id, owner="o", ts="1.1", now=NOW)


async def test_claims_and_sent_messages_go_the_audit_trail_stays(store: SqliteStore) -> None:
    await _history(store)
    assert await Retention(store=store, audit_days=None, clock=lambda: NOW).sweep() == 2
    assert await store.claim("command:T0", now=NOW) is True  # forgotten: older than CLAIM_RETENTION_S
    assert await store.claim("command:T1", now=NOW) is False
    assert [m.id for m in await store.outbox_messages(state=OutboxState.SENT.value)] == [message(1, "t1").id]
    assert [e.id for e in await store.audit_events()] == ["e0", "e1"]
    assert CLAIM_RETENTION_S < SENT_RETENTION_S < 400 * DAY


async def test_audit_is_trimmed_to_the_days_asked_for(store: SqliteStore) -> None:
    await _history(store)
    await Retention(store=store, audit_days=365, clock=lambda: NOW).sweep()
    assert [e.id for e in await store.audit_events()] == ["e1"]


async def test_a_backlog_larger_than_a_batch_is_deleted_in_one_sweep(store: SqliteStore) -> None:
    for i in range(450):
        await store.claim(f"k{i}", now=NOW - 2 * DAY)
    assert await Retention(store=store, audit_days=None, clock=lambda: NOW).sweep() == 450


async def test_a_backlog_is_deleted_resting_as_long_as_each_batch_took(store: SqliteStore) -> None:
    """Two full batches and a last short one: a rest after each full batch, as long as that batch took (so the
    sweep holds the writer half the time at most); none after the last, and nothing is left."""
    for i in range(450):
        await store.claim(f"k{i}", now=NOW - 2 * DAY)
    ticks = iter([10.0, 10.25, 20.0, 20.5, 30.0, 30.125])
    rests: list[float] = []

    async def rest(seconds: float) -> None:
        rests.append(seconds)

    retention = Retention(store=store, audit_days=None, clock=lambda: NOW, timer=lambda: next(ticks), pause=rest)
    assert await retention.sweep() == 450
    assert rests == [0.25, 0.5]
    assert await retention.sweep() == 0


async def test_delivered_messages_are_kept_the_days_asked_for(store: SqliteStore) -> None:
    """OUTBOX_RETENTION_DAYS: a shorter setting deletes a delivered message a longer one keeps."""
    await store.enqueue(message(0, "t0", created_at=NOW - 3 * DAY))
    for leased in await store.lease_outbox(owner="o", now=NOW, lease=30, limit=10):
        await store.outbox_sent(leased.id, owner="o", ts="1.1", now=NOW)
    await Retention(store=store, audit_days=None, sent_days=5, clock=lambda: NOW).sweep()
    assert len(await store.outbox_messages(state=OutboxState.SENT.value)) == 1
    await Retention(store=store, audit_days=None, sent_days=2, clock=lambda: NOW).sweep()
    assert await store.outbox_messages(state=OutboxState.SENT.value) == []
