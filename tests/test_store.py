"""The store test-suite, run against every backend: SQLite always, PostgreSQL when TEST_DATABASE_URL reaches one.

Tests that need several replicas (two pools on one database) run on PostgreSQL only: SQLite is the one-process
backend. Each PostgreSQL test gets a schema of its own, dropped afterwards, so tests never see each other's rows.
The backends are in `tests/stores.py`; the `store` (every backend) and `pg` (PostgreSQL only) fixtures in
`tests/conftest.py`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from pathlib import Path

import asyncpg
import pytest

from bot.errors import ConfigError
from bot.store import (
    ApprovalRecord,
    ApprovalState,
    AuditEvent,
    Backlog,
    LaunchRecord,
    LaunchState,
    OutboxKind,
    OutboxMessage,
    OutboxState,
    PostgresStore,
    SentVariable,
    SqliteStore,
    Store,
    open_store,
)
from bot.store.schema import MIGRATIONS
from tests.stores import PgSchema

NOW = 1_000_000.0


# -- records -----------------------------------------------------------------------------------------------------


def launch(launch_id: str = "L1", **changes: object) -> LaunchRecord:
    base = LaunchRecord(
        id=launch_id,
        created_at=NOW,
        updated_at=NOW,
        requester="U0ALICE",
        channel="C0OPS",
        bk_biz_id=3,
        bk_job_id=100,
        plan_name="Deploy web",
        bk_username="alice",
        variables=[SentVariable(id=437, name="version", category=1, shown="2.0")],
        callback_token_hash=f"hash-{launch_id}",
    )
    return base.model_copy(update=changes)


def approval(approval_id: str = "A1", **changes: object) -> ApprovalRecord:
    base = ApprovalRecord(
        id=approval_id,
        created_at=NOW,
        updated_at=NOW,
        requester="U0ALICE",
        channel="C0OPS",
        bk_biz_id=3,
        bk_job_id=100,
        plan_name="Deploy web",
        bk_username="alice",
        values={"version": "2.0"},
        variables=[SentVariable(id=437, name="version", category=1, shown="2.0")],
        approvers=["U0BOB", "U0CAROL"],
        expires_at=NOW + 600,
    )
    return base.model_copy(update=changes)


def message(seq: int, order_key: str = "C0OPS:1.0", **changes: object) -> OutboxMessage:
    base = OutboxMessage(
        id=f"m{seq}-{order_key}",
        created_at=NOW,
        seq=seq,
        channel="C0OPS",
        order_key=order_key,
        kind=OutboxKind.POST,
        payload={"text": f"message {seq}"},
    )
    return base.model_copy(update=changes)


# -- the shared suite --------------------------------------------------------------------------------------------


async def test_ping(store: Store) -> None:
    assert await store.ping() is True


async def test_claim_is_true_once(store: Store) -> None:
    assert await store.claim("k", now=NOW) is True
    assert await store.claim("k", now=NOW + 1) is False
    assert await store.claim("other", now=NOW) is True


async def test_old_claims_are_forgotten_after_a_day(store: Store) -> None:
    assert await store.claim("k", now=NOW)
    assert await store.claim("k", now=NOW + 25 * 3600) is True


async def test_launch_round_trip_and_lookups(store: Store) -> None:
    record = launch(approval_id="A9", approved_by=["U0BOB"], progress={"step": 1})
    await store.create_launch(record)
    assert await store.get_launch("L1") == record
    assert await store.find_launch_by_token("hash-L1") == record
    assert await store.get_launch("nope") is None
    assert await store.find_launch_by_token("nope") is None
    await store.set_message("L1", "111.222", now=NOW + 1)
    got = await store.get_launch("L1")
    assert got is not None and got.message_ts == "111.222" and got.updated_at == NOW + 1


async def test_set_outcome_never_moves_a_finished_launch_back(store: Store) -> None:
    await store.create_launch(launch())
    await store.set_outcome("L1", LaunchState.RUNNING, now=NOW, job_instance_id=42, job_instance_name="run 1")
    got = await store.get_launch("L1")
    assert got is not None and (got.state, got.job_instance_id, got.job_instance_name) == (
        LaunchState.RUNNING,
        42,
        "run 1",
    )
    assert await store.record_result("L1", "3", 3, now=NOW + 1)
    await store.set_outcome("L1", LaunchState.UNKNOWN, now=NOW + 2, error="lost")
    got = await store.get_launch("L1")
    assert got is not None
    assert got.state == LaunchState.FINISHED and got.job_status == 3 and got.job_instance_id == 42
    assert got.error == "lost"


async def test_record_result_once_with_its_reply(store: Store) -> None:
    await store.create_launch(launch())
    reply = message(1, "C0OPS:9.9")
    assert await store.record_result("L1", "3", 3, now=NOW, reply=reply) is True
    assert await store.record_result("L1", "3", 3, now=NOW, reply=message(2, "C0OPS:9.9")) is False
    assert [m.id for m in await store.outbox_messages()] == [reply.id]
    got = await store.get_launch("L1")
    assert got is not None and got.state == LaunchState.FINISHED and got.finished_at == NOW
    (unposted,) = await store.unposted_results()
    assert (unposted.launch_id, unposted.result_key, unposted.job_status) == ("L1", "3", 3)
    await store.mark_result_posted("L1", "3", "5.5")
    assert await store.unposted_results() == []


async def test_record_result_is_atomic_with_its_reply(store: Store) -> None:
    """When the reply cannot be queued, the result is not recorded either: the next report tries again."""
    await store.create_launch(launch())
    await store.enqueue(message(1, "C0OPS:9.9"))
    clash = message(1, "C0OPS:9.9")  # same id as the queued message: the insert fails
    with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
        await store.record_result("L1", "3", 3, now=NOW, reply=clash)
    assert await store.unposted_results() == []
    got = await store.get_launch("L1")
    assert got is not None and got.state == LaunchState.STARTING
    assert await store.record_result("L1", "3", 3, now=NOW, reply=message(2, "C0OPS:9.9")) is True
    assert len(await store.outbox_messages()) == 2


async def test_unfinished_and_recent_launches(store: Store) -> None:
    for i, state in enumerate(
        [LaunchState.RUNNING, LaunchState.NOT_STARTED, LaunchState.UNKNOWN, LaunchState.FINISHED]
    ):
        await store.create_launch(launch(f"L{i}", created_at=NOW + i, state=state))
    await store.create_launch(launch("X", channel="C0ELSE", created_at=NOW + 9))
    assert [lr.id for lr in await store.unfinished_launches()] == ["L0", "L2", "X"]
    assert [lr.id for lr in await store.recent_launches("C0OPS", 3)] == ["L3", "L2", "L1"]


async def test_approval_round_trip(store: Store) -> None:
    record = approval()
    await store.create_approval(record)
    assert await store.get_approval("A1") == record
    assert await store.get_approval("nope") is None
    await store.set_approval_message("A1", "7.7", now=NOW + 1)
    await store.set_approval_launch("A1", "L1", now=NOW + 2)
    got = await store.get_approval("A1")
    assert got is not None and got.message_ts == "7.7" and got.launch_id == "L1" and got.updated_at == NOW + 2
    assert [a.id for a in await store.pending_approvals("C0OPS")] == ["A1"]
    assert await store.pending_approvals("C0ELSE") == []


async def test_votes_count_once_and_only_while_pending(store: Store) -> None:
    await store.create_approval(approval())
    assert await store.add_vote("A1", "U0BOB", now=NOW + 1) is True
    assert await store.add_vote("A1", "U0BOB", now=NOW + 2) is False
    assert await store.add_vote("A1", "U0CAROL", now=NOW + 3) is True
    assert [(v.approver, v.at) for v in await store.votes("A1")] == [("U0BOB", NOW + 1), ("U0CAROL", NOW + 3)]
    assert await store.add_vote("A1", "U0DAVE", now=NOW + 600) is False  # past the deadline
    assert await store.decide("A1", ApprovalState.REJECTED, by="U0BOB", now=NOW + 4, reason="no")
    assert await store.add_vote("A1", "U0DAVE", now=NOW + 5) is False
    assert await store.add_vote("nope", "U0DAVE", now=NOW) is False


async def test_decide_is_conditional(store: Store) -> None:
    await store.create_approval(approval())
    assert await store.decide("A1", ApprovalState.APPROVED, by="U0BOB", now=NOW + 1) is True
    assert await store.decide("A1", ApprovalState.REJECTED, by="U0CAROL", now=NOW + 2) is False
    got = await store.get_approval("A1")
    assert got is not None and (got.state, got.decided_by, got.decided_at) == (ApprovalState.APPROVED, "U0BOB", NOW + 1)
    await store.create_approval(approval("A2"))
    assert await store.decide("A2", ApprovalState.APPROVED, by="U0BOB", now=NOW + 600) is False  # expired


async def test_expire_due_returns_each_expired_request_once(store: Store) -> None:
    await store.create_approval(approval("A1", expires_at=NOW + 10))
    await store.create_approval(approval("A2", expires_at=NOW + 20, created_at=NOW + 1))
    await store.create_approval(approval("A3", expires_at=NOW + 99))
    expired = await store.expire_due(now=NOW + 20)
    assert [(a.id, a.state, a.decided_at) for a in expired] == [
        ("A1", ApprovalState.EXPIRED, NOW + 20),
        ("A2", ApprovalState.EXPIRED, NOW + 20),
    ]
    assert await store.expire_due(now=NOW + 21) == []
    got = await store.get_approval("A2")
    assert got is not None and got.state == ApprovalState.EXPIRED
    assert [a.id for a in await store.pending_approvals("C0OPS")] == ["A3"]


async def test_audit_is_oldest_first(store: Store) -> None:
    for i, at in enumerate([NOW + 2, NOW, NOW + 1]):
        await store.append_audit(AuditEvent(id=f"e{i}", at=at, actor="U0BOB", action="x", job_instance_id=7))
    events = await store.audit_events()
    assert [e.id for e in events] == ["e1", "e2", "e0"]
    assert events[0].job_instance_id == 7
    assert len(await store.audit_events(limit=2)) == 2


async def test_polls_are_leased_and_the_lease_expires(store: Store) -> None:
    await store.create_launch(launch("L1", state=LaunchState.RUNNING))
    await store.create_launch(launch("L2", state=LaunchState.UNKNOWN))
    await store.create_launch(launch("L3", state=LaunchState.RUNNING))
    await store.schedule_poll("L1", at=NOW + 5, attempts=1)
    await store.schedule_poll("L2", at=NOW)
    await store.schedule_poll("L3", at=NOW + 100)
    leased = await store.lease_due_polls(owner="a", now=NOW + 10, lease=30, limit=10)
    assert [lr.id for lr in leased] == ["L2", "L1"]
    assert leased[1].poll_attempts == 1
    assert await store.lease_due_polls(owner="b", now=NOW + 20, lease=30, limit=10) == []
    # "a" died: its leases run out and "b" takes the work over.
    assert [lr.id for lr in await store.lease_due_polls(owner="b", now=NOW + 41, lease=30, limit=10)] == ["L2", "L1"]
    await store.schedule_poll("L2", at=None)
    assert await store.record_result("L1", "3", 3, now=NOW + 42)
    assert [lr.id for lr in await store.lease_due_polls(owner="c", now=NOW + 200, lease=30, limit=10)] == ["L3"]


async def test_schedule_poll_releases_the_lease(store: Store) -> None:
    await store.create_launch(launch("L1", state=LaunchState.RUNNING))
    await store.schedule_poll("L1", at=NOW)
    assert len(await store.lease_due_polls(owner="a", now=NOW, lease=30, limit=10)) == 1
    await store.schedule_poll("L1", at=NOW + 1, attempts=2)
    (again,) = await store.lease_due_polls(owner="b", now=NOW + 1, lease=30, limit=10)
    assert again.poll_attempts == 2


async def test_progress(store: Store) -> None:
    await store.create_launch(launch())
    await store.set_progress("L1", {"steps": [{"name": "a", "status": 2}]}, now=NOW + 3)
    got = await store.get_launch("L1")
    assert got is not None and got.progress == {"steps": [{"name": "a", "status": 2}]} and got.progress_at == NOW + 3


async def test_claim_instance_once_per_instance(store: Store) -> None:
    await store.create_launch(launch("L1", state=LaunchState.UNKNOWN))
    await store.create_launch(launch("L2", state=LaunchState.UNKNOWN))
    assert await store.claim_instance("L1", 77, now=NOW) is True
    assert await store.claim_instance("L2", 77, now=NOW) is False
    assert await store.claim_instance("L1", 78, now=NOW) is False  # L1 has one already
    got = await store.get_launch("L1")
    assert got is not None and got.job_instance_id == 77 and got.state == LaunchState.RUNNING


async def test_enqueue_coalesces_on_a_pending_dedupe_key(store: Store) -> None:
    assert await store.enqueue(message(1, dedupe_key="refresh:L1")) is True
    assert await store.enqueue(message(2, dedupe_key="refresh:L1")) is False
    (leased,) = await store.lease_outbox(owner="a", now=NOW, lease=30, limit=10)
    await store.outbox_sent(leased.id, owner="a", ts="1.1", now=NOW)
    assert await store.enqueue(message(3, dedupe_key="refresh:L1")) is True  # the first one is no longer pending


async def test_outbox_hands_out_only_the_head_of_each_order_key(store: Store) -> None:
    for seq, key in [(1, "t1"), (2, "t1"), (3, "t2"), (4, "t1"), (5, "t3")]:
        await store.enqueue(message(seq, key))
    await store.enqueue(message(6, "t4", next_attempt_at=NOW + 100))  # not due yet
    first = await store.lease_outbox(owner="a", now=NOW, lease=30, limit=10)
    assert [(m.seq, m.order_key) for m in first] == [(1, "t1"), (3, "t2"), (5, "t3")]
    assert await store.lease_outbox(owner="b", now=NOW, lease=30, limit=10) == []
    await store.outbox_sent(first[0].id, owner="a", ts="9.1", now=NOW)
    assert [m.seq for m in await store.lease_outbox(owner="b", now=NOW, lease=30, limit=10)] == [2]
    (sent,) = await store.outbox_messages(state=OutboxState.SENT.value)
    assert sent.sent_ts == "9.1" and sent.attempts == 1


async def test_backlog_is_counted_by_the_database(store: Store) -> None:
    """What /metrics shows of the store: pending messages (not sent or dead ones), the oldest's age, and the most
    overdue poll of an unfinished launch (not of a finished one, nor one not yet due)."""
    assert await store.backlog(now=NOW) == Backlog(pending_messages=0, oldest_pending_at=None, oldest_due_poll_at=None)
    for seq in range(5):
        await store.enqueue(message(seq, f"t{seq}", created_at=NOW + 10 + seq))
    (sent, dead, *_) = await store.lease_outbox(owner="a", now=NOW + 20, lease=30, limit=10)
    await store.outbox_sent(sent.id, owner="a", ts="9.1", now=NOW + 20)
    await store.outbox_dead(dead.id, owner="a", error="is_archived")
    for launch_id, due, state in [("L1", 50.0, LaunchState.RUNNING), ("L2", 30.0, LaunchState.FINISHED)]:
        await store.create_launch(launch(launch_id, state=state))
        await store.schedule_poll(launch_id, at=NOW + due)
    await store.create_launch(launch("L3", state=LaunchState.UNKNOWN))
    await store.schedule_poll("L3", at=NOW + 500)
    assert await store.backlog(now=NOW + 100) == Backlog(
        pending_messages=3, oldest_pending_at=NOW + 12, oldest_due_poll_at=NOW + 50
    )


async def test_outbox_retry_keeps_the_messages_behind_waiting(store: Store) -> None:
    await store.enqueue(message(1, "t1"))
    await store.enqueue(message(2, "t1"))
    (head,) = await store.lease_outbox(owner="a", now=NOW, lease=30, limit=10)
    await store.outbox_retry(head.id, owner="a", error="ratelimited", at=NOW + 60)
    assert await store.lease_outbox(owner="a", now=NOW + 1, lease=30, limit=10) == []
    (again,) = await store.lease_outbox(owner="a", now=NOW + 60, lease=30, limit=10)
    assert again.id == head.id and again.attempts == 1 and again.last_error == "ratelimited"
    await store.outbox_dead(head.id, owner="a", error="channel_not_found")
    (next_one,) = await store.lease_outbox(owner="a", now=NOW + 61, lease=30, limit=10)
    assert next_one.seq == 2
    (dead,) = await store.outbox_messages(state=OutboxState.DEAD.value)
    assert dead.last_error == "channel_not_found" and dead.attempts == 2


async def test_outbox_lease_of_a_dead_owner_is_handed_out_again(store: Store) -> None:
    await store.enqueue(message(1, "t1"))
    (leased,) = await store.lease_outbox(owner="dead", now=NOW, lease=30, limit=10)
    assert await store.lease_outbox(owner="b", now=NOW + 29, lease=30, limit=10) == []
    (again,) = await store.lease_outbox(owner="b", now=NOW + 31, lease=30, limit=10)
    assert again.id == leased.id


async def test_released_polls_go_to_another_owner_at_once(store: Store) -> None:
    """A replica stopping gives back the launches it was polling, and only its own."""
    await store.create_launch(launch("L1", state=LaunchState.RUNNING))
    await store.create_launch(launch("L2", state=LaunchState.RUNNING))
    await store.schedule_poll("L1", at=NOW)
    await store.schedule_poll("L2", at=NOW)
    (held,) = await store.lease_due_polls(owner="a", now=NOW, lease=120, limit=1)
    assert len(await store.lease_due_polls(owner="b", now=NOW, lease=120, limit=1)) == 1  # another replica's
    assert await store.release_polls(owner="a") == 1
    assert await store.release_polls(owner="a") == 0
    # Long before the 120 s leases run out, "c" takes over what "a" gave back, and only that.
    (polled,) = await store.lease_due_polls(owner="c", now=NOW + 1, lease=120, limit=10)
    assert polled.id == held.id


async def test_outbox_released_messages_go_to_another_owner_at_once(store: Store) -> None:
    """A replica stopping gives back what it leased but did not try; a message sent meanwhile stays sent."""
    for seq, key in enumerate(["t1", "t2", "t3"], start=1):
        await store.enqueue(message(seq, key))
    leased = await store.lease_outbox(owner="a", now=NOW, lease=60, limit=10)
    assert len(leased) == 3
    await store.outbox_sent(leased[0].id, owner="a", ts="1.0", now=NOW)
    await store.outbox_release([m.id for m in leased], owner="b")  # not b's leases: nothing changes
    assert await store.lease_outbox(owner="b", now=NOW + 1, lease=60, limit=10) == []
    await store.outbox_release([m.id for m in leased], owner="a")
    taken = await store.lease_outbox(owner="b", now=NOW + 1, lease=60, limit=10)
    assert sorted(m.id for m in taken) == sorted(m.id for m in leased[1:])


async def test_outbox_limit(store: Store) -> None:
    for seq in range(1, 6):
        await store.enqueue(message(seq, f"t{seq}"))
    assert [m.seq for m in await store.lease_outbox(owner="a", now=NOW, lease=30, limit=2)] == [1, 2]
    assert [m.seq for m in await store.lease_outbox(owner="b", now=NOW, lease=30, limit=10)] == [3, 4, 5]


async def test_ping_is_false_when_closed(store: Store) -> None:
    await store.close()
    assert await store.ping() is False


# -- the factory and URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_open_store_picks_postgres(scheme: str) -> None:
    store = open_store(f"{scheme}://postgres@db.example:5432/bot")
    assert isinstance(store, PostgresStore)


def test_open_store_picks_sqlite_and_refuses_others() -> None:
    assert isinstance(open_store("sqlite:///x.sqlite3"), SqliteStore)
    with pytest.raises(ConfigError, match="mysql"):
        open_store("mysql://x")
    with pytest.raises(ConfigError, match="unsupported PostgreSQL option"):
        open_store("postgresql://db/bot?options=-x")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("options=-csearch_path%3Dbots", {"search_path": "bots"}),
        (
            "options=-c%20search_path%3Dbots%20-c%20statement_timeout%3D5000",
            {"search_path": "bots", "statement_timeout": "5000"},
        ),
        ("options=--search-path%3Dbots", {"search_path": "bots"}),
        ("search_path=bots&sslmode=disable", {"search_path": "bots"}),
        ("", {}),
    ],
)
def test_from_url_lifts_the_schema_into_server_settings(query: str, expected: dict[str, str]) -> None:
    store = PostgresStore.from_url(f"postgres://u:p@db.example:5433/bot?{query}")
    assert store._server_settings == expected
    assert store._dsn.startswith("postgresql://u:p@db.example:5433/bot")
    assert "search_path" not in store._dsn and "options" not in store._dsn


async def test_ping_is_false_when_nothing_answers() -> None:
    store = PostgresStore(dsn="postgresql://postgres@127.0.0.1:1/none")
    assert await store.ping() is False


# -- several replicas on one PostgreSQL --------------------------------------------------------------------------


async def test_url_schema_is_used(pg: PgSchema) -> None:
    store = PostgresStore.from_url(pg.url)
    await store.open()
    try:
        await store.create_launch(launch())
    finally:
        await store.close()
    rows = await pg.fetch("SELECT id FROM launches")
    assert [r["id"] for r in rows] == ["L1"]


async def test_five_replicas_migrate_one_fresh_schema_once(pg: PgSchema) -> None:
    stores = [pg.store(min_size=1, max_size=2) for _ in range(5)]
    await asyncio.gather(*(s.open() for s in stores))
    rows = await pg.fetch("SELECT version, COUNT(*) AS n FROM schema_version GROUP BY version ORDER BY version")
    assert [(r["version"], r["n"]) for r in rows] == [(v, 1) for v in range(1, len(MIGRATIONS) + 1)]
    assert all([await s.ping() for s in stores])
    # A restart finds nothing to do.
    again = pg.store()
    await again.open()
    assert len(await pg.fetch("SELECT version FROM schema_version")) == len(MIGRATIONS)


async def test_fifty_concurrent_claims_on_two_replicas_have_one_winner(pg: PgSchema) -> None:
    a, b = await pg.open_store(), await pg.open_store()
    results = await asyncio.gather(*((a if i % 2 else b).claim("action:1", now=NOW) for i in range(50)))
    assert results.count(True) == 1


async def test_fifty_concurrent_decisions_on_two_replicas_have_one_winner(pg: PgSchema) -> None:
    a, b = await pg.open_store(), await pg.open_store()
    await a.create_approval(approval())
    states = [ApprovalState.APPROVED, ApprovalState.REJECTED]
    results = await asyncio.gather(
        *((a if i % 2 else b).decide("A1", states[i % 2], by=f"U{i}", now=NOW + 1) for i in range(50))
    )
    assert results.count(True) == 1
    winner = results.index(True)
    got = await b.get_approval("A1")
    assert got is not None and got.decided_by == f"U{winner}" and got.state == states[winner % 2]


async def test_votes_and_a_decision_racing_on_two_replicas(pg: PgSchema) -> None:
    """A vote either lands before the decision or is refused: none is counted on a decided request after it."""
    a, b = await pg.open_store(), await pg.open_store()
    await a.create_approval(approval(approvers=[f"U{i}" for i in range(40)]))
    voted = await asyncio.gather(
        *(a.add_vote("A1", f"U{i}", now=NOW + 1) for i in range(40)),
        b.decide("A1", ApprovalState.REJECTED, by="U0BOB", now=NOW + 1),
    )
    assert voted[-1] is True
    assert len(await a.votes("A1")) == voted[:-1].count(True)


async def test_concurrent_results_on_two_replicas_record_and_queue_once(pg: PgSchema) -> None:
    a, b = await pg.open_store(), await pg.open_store()
    await a.create_launch(launch())
    results = await asyncio.gather(
        *((a if i % 2 else b).record_result("L1", "3", 3, now=NOW, reply=message(i, "t")) for i in range(20))
    )
    assert results.count(True) == 1
    (queued,) = await a.outbox_messages()
    assert queued.id == message(results.index(True), "t").id


async def test_concurrent_instance_claims_on_two_replicas(pg: PgSchema) -> None:
    a, b = await pg.open_store(), await pg.open_store()
    for i in range(10):
        await a.create_launch(launch(f"L{i}", state=LaunchState.UNKNOWN))
    results = await asyncio.gather(*((a if i % 2 else b).claim_instance(f"L{i}", 77, now=NOW) for i in range(10)))
    assert results.count(True) == 1


async def test_concurrent_sweeps_on_two_replicas_expire_each_request_once(pg: PgSchema) -> None:
    a, b = await pg.open_store(), await pg.open_store()
    for i in range(30):
        await a.create_approval(approval(f"A{i}", expires_at=NOW))
    swept = await asyncio.gather(*((a if i % 2 else b).expire_due(now=NOW + 1) for i in range(6)))
    ids = [x.id for batch in swept for x in batch]
    assert sorted(ids) == sorted(f"A{i}" for i in range(30))


async def test_due_polls_are_leased_to_one_replica_each(pg: PgSchema) -> None:
    a, b = await pg.open_store(), await pg.open_store()
    for i in range(40):
        await a.create_launch(launch(f"L{i}", state=LaunchState.RUNNING))
        await a.schedule_poll(f"L{i}", at=NOW + i / 100)
    batches = await asyncio.gather(
        *((a if i % 2 else b).lease_due_polls(owner=f"r{i % 2}", now=NOW + 1, lease=30, limit=7) for i in range(10))
    )
    ids = [lr.id for batch in batches for lr in batch]
    assert len(ids) == len(set(ids)) == 40
    assert await a.lease_due_polls(owner="r0", now=NOW + 2, lease=30, limit=100) == []
    # Both replicas died: after the leases run out a third one takes every poll over.
    c = await pg.open_store()
    assert len(await c.lease_due_polls(owner="r2", now=NOW + 32, lease=30, limit=100)) == 40


async def test_outbox_on_two_replicas_sends_each_message_once_in_order(pg: PgSchema) -> None:
    """Two workers lease, "send" and mark sent concurrently; per order_key only one message is ever in flight."""
    a, b = await pg.open_store(), await pg.open_store()
    keys = [f"thread-{k}" for k in range(8)]
    seq = 0
    for _ in range(6):
        for key in keys:
            seq += 1
            await a.enqueue(message(seq, key))
    total = seq
    sent: list[OutboxMessage] = []
    in_flight: dict[str, str] = {}
    leased_twice: list[str] = []

    async def worker(store: Store, owner: str) -> None:
        while len(sent) < total:
            batch = await store.lease_outbox(owner=owner, now=NOW, lease=300, limit=5)
            for m in batch:
                if m.order_key in in_flight:
                    leased_twice.append(f"{m.id} while {in_flight[m.order_key]}")
                in_flight[m.order_key] = m.id
            await asyncio.sleep(0)  # let the other replica lease while these are "being sent"
            for m in batch:
                sent.append(m)
                del in_flight[m.order_key]
                await store.outbox_sent(m.id, owner=owner, ts=f"{m.seq}.0", now=NOW)

    await asyncio.wait_for(asyncio.gather(worker(a, "a"), worker(b, "b"), worker(a, "a2"), worker(b, "b2")), 30)
    assert leased_twice == []
    assert len(sent) == len({m.id for m in sent}) == total
    by_key: dict[str, list[int]] = defaultdict(list)
    for m in sent:
        by_key[m.order_key].append(m.seq)
    assert all(seqs == sorted(seqs) and len(seqs) == 6 for seqs in by_key.values())
    assert await a.outbox_messages(state=OutboxState.PENDING.value) == []


async def test_outbox_lease_of_a_dead_replica_goes_to_another(pg: PgSchema) -> None:
    a, b = await pg.open_store(), await pg.open_store()
    await a.enqueue(message(1, "t1"))
    await a.enqueue(message(2, "t1"))
    (head,) = await a.lease_outbox(owner="a", now=NOW, lease=30, limit=10)
    await a.close()  # replica a is gone without marking anything
    assert await b.lease_outbox(owner="b", now=NOW + 10, lease=30, limit=10) == []
    (taken,) = await b.lease_outbox(owner="b", now=NOW + 31, lease=30, limit=10)
    assert taken.id == head.id


# -- SQLite: reopening and racing on one file --------------------------------------------------------------------


async def test_sqlite_reopen_keeps_data_and_migrates_once(tmp_path: Path) -> None:
    path = str(tmp_path / "reopen.sqlite3")
    first = SqliteStore(path=path)
    await first.open()
    await first.create_launch(launch())
    assert await first.record_result("L1", "3", 3, now=NOW)
    await first.close()
    for _ in range(3):  # every start-up runs the migrations again: they must be no-ops
        again = SqliteStore(path=path)
        await again.open()
        await again.close()
    reopened = SqliteStore(path=path)
    await reopened.open()
    try:
        got = await reopened.get_launch("L1")
        assert got is not None and got.state == LaunchState.FINISHED
        assert await reopened.record_result("L1", "3", 3, now=NOW + 1) is False
        assert await reopened.claim("k", now=NOW) is True
    finally:
        await reopened.close()
    with sqlite3.connect(path) as db:
        versions = [row[0] for row in db.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


async def test_fifty_concurrent_claims_have_one_winner(store: Store) -> None:
    results = await asyncio.gather(*(store.claim("command:T1", now=NOW) for _ in range(50)))
    assert results.count(True) == 1


async def test_concurrent_results_for_one_launch_are_recorded_once(store: Store) -> None:
    await store.create_launch(launch())
    results = await asyncio.gather(*(store.record_result("L1", "4", 4, now=NOW) for _ in range(20)))
    assert results.count(True) == 1
    (unposted,) = await store.unposted_results()
    assert unposted.job_status == 4


async def test_set_outcome_on_a_finished_launch_keeps_its_status(store: Store) -> None:
    await store.create_launch(launch())
    assert await store.record_result("L1", "4", 4, now=NOW)
    await store.set_outcome("L1", LaunchState.RUNNING, now=NOW + 1, job_instance_id=7)
    got = await store.get_launch("L1")
    assert got is not None and (got.state, got.job_status, got.job_instance_id) == (LaunchState.FINISHED, 4, 7)


async def test_a_leased_refresh_no_longer_absorbs_newer_ones(store: Store) -> None:
    """A refresh being delivered may have rendered the old state already: a newer refresh must queue behind it."""
    first = message(1, "C0OPS:edit:1.0", dedupe_key="refresh-launch:L1")
    assert await store.enqueue(first)
    assert not await store.enqueue(message(2, "C0OPS:edit:1.0", dedupe_key="refresh-launch:L1"))
    (leased,) = await store.lease_outbox(owner="w1", now=NOW, lease=60, limit=10)
    assert leased.id == first.id
    newer = message(3, "C0OPS:edit:1.0", dedupe_key="refresh-launch:L1")
    assert await store.enqueue(newer)
    assert await store.lease_outbox(owner="w2", now=NOW, lease=60, limit=10) == []  # it waits behind the first
    await store.outbox_sent(first.id, owner="w1", ts="1.0", now=NOW)
    (after,) = await store.lease_outbox(owner="w2", now=NOW, lease=60, limit=10)
    assert after.id == newer.id


# -- outbox order from the database, retention -------------------------------------------------------------------


async def test_outbox_numbers_messages_in_the_order_they_are_stored(store: Store) -> None:
    """A message's own seq (a clock's reading) is ignored: the one stored first is delivered first."""
    await store.enqueue(message(9_000_000, "t1"))
    await store.enqueue(message(5, "t1"))
    await store.enqueue(message(7, "t2"))
    queued = await store.outbox_messages()
    assert [m.id for m in queued] == [message(9_000_000, "t1").id, message(5, "t1").id, message(7, "t2").id]
    assert [m.seq for m in queued] == sorted({m.seq for m in queued})


async def test_outbox_order_across_replicas_does_not_follow_their_clocks(pg: PgSchema) -> None:
    """Replica a's clock runs an hour ahead of b's. a queues the first message of a thread, b the second: the
    thread still gets them in that order, and a third replica delivers them in that order."""
    a, b, c = await pg.open_store(), await pg.open_store(), await pg.open_store()
    ahead_ns, behind_ns = (int((NOW + 3600) * 1e9), int(NOW * 1e9))
    first = message(ahead_ns, "C0OPS:1.0", created_at=NOW + 3600, payload={"text": "launched"})
    second = message(behind_ns, "C0OPS:1.0", created_at=NOW, payload={"text": "finished"})
    assert await a.enqueue(first)
    assert await b.enqueue(second)
    delivered = []
    for _ in range(2):
        (head,) = await c.lease_outbox(owner="c", now=NOW + 7200, lease=30, limit=10)
        delivered.append(head.payload["text"])
        await c.outbox_sent(head.id, owner="c", ts="1.1", now=NOW + 7200)
    assert delivered == ["launched", "finished"]


async def test_outbox_numbers_concurrent_messages_apart_on_two_replicas(pg: PgSchema) -> None:
    a, b = await pg.open_store(), await pg.open_store()
    await asyncio.gather(*((a if i % 2 else b).enqueue(message(1, f"t{i}")) for i in range(40)))
    seqs = [m.seq for m in await a.outbox_messages()]
    assert len(seqs) == len(set(seqs)) == 40


async def test_claim_older_than_a_day_is_taken_over_once(store: Store) -> None:
    assert await store.claim("k", now=NOW)
    results = await asyncio.gather(*(store.claim("k", now=NOW + 25 * 3600) for _ in range(10)))
    assert results.count(True) == 1


async def test_prune_deletes_only_what_is_past_its_retention(store: Store) -> None:
    for i, at in enumerate([NOW - 100, NOW - 50, NOW]):
        await store.claim(f"k{i}", now=at)
        await store.append_audit(AuditEvent(id=f"e{i}", at=at, actor="U0ALICE", action="launch.requested"))
        await store.enqueue(message(i, f"t{i}", created_at=at))
    old_pending = message(99, "t9", created_at=NOW - 100)
    await store.enqueue(old_pending)
    for leased in await store.lease_outbox(owner="a", now=NOW, lease=30, limit=3):
        if leased.id != old_pending.id:
            await store.outbox_sent(leased.id, owner="a", ts="1.1", now=NOW)
    # Nothing is audit-pruned without a retention; claims and sent messages go by their own cut-offs.
    assert await store.prune(claims_before=NOW - 60, sent_before=NOW - 10, audit_before=None, limit=100) == 3
    assert await store.claim("k0", now=NOW) is True  # forgotten
    assert await store.claim("k1", now=NOW) is False
    remaining = {m.id: m.state for m in await store.outbox_messages()}
    assert remaining == {
        message(2, "t2").id: OutboxState.SENT,
        old_pending.id: OutboxState.PENDING,  # never pruned while it waits
    }
    assert len(await store.audit_events()) == 3
    assert await store.prune(claims_before=0, sent_before=0, audit_before=NOW - 60, limit=100) == 1
    assert [e.id for e in await store.audit_events()] == ["e1", "e2"]


async def test_prune_works_in_batches(store: Store) -> None:
    for i in range(7):
        await store.claim(f"k{i}", now=NOW - 100)
    assert await store.prune(claims_before=NOW, sent_before=0, audit_before=None, limit=3) == 3
    assert await store.prune(claims_before=NOW, sent_before=0, audit_before=None, limit=3) == 3
    assert await store.prune(claims_before=NOW, sent_before=0, audit_before=None, limit=3) == 1


async def test_outbox_batch_holds_at_most_the_asked_posts_per_channel(store: Store) -> None:
    """Posts of one channel wait for their slots one by one, its edits go one after another: a batch that held
    many would hold up every channel."""
    for seq, (channel, key) in enumerate([("CA", "a1"), ("CA", "a2"), ("CB", "b1"), ("CA", "a3"), ("CB", "b2")]):
        await store.enqueue(message(seq, f"{channel}:{key}", channel=channel))
    edit = message(9, "CA:edit:1.0", channel="CA", kind=OutboxKind.REFRESH_LAUNCH, payload={"launch_id": "L1"})
    await store.enqueue(edit)
    for n in range(2):
        await store.enqueue(message(10 + n, f"CA:edit:{n + 2}.0", channel="CA", kind=OutboxKind.REFRESH_LAUNCH))
    first = await store.lease_outbox(owner="a", now=NOW, lease=30, limit=10, posts_per_channel=1, edits_per_channel=2)
    assert [m.order_key for m in first] == ["CA:a1", "CB:b1", "CA:edit:1.0", "CA:edit:2.0"]
    second = await store.lease_outbox(owner="a", now=NOW, lease=30, limit=10, posts_per_channel=1)
    assert [m.order_key for m in second] == ["CA:a2", "CB:b2", "CA:edit:3.0"]  # edits uncapped here
    rest = await store.lease_outbox(owner="a", now=NOW, lease=30, limit=10)
    assert [m.order_key for m in rest] == ["CA:a3"]


async def test_outbox_lease_leaves_alone_the_channels_the_worker_holds_messages_for(store: Store) -> None:
    """The outbox leases a channel's next post (or edits) only when its lane has room: the others stay pending."""
    for seq, (channel, key) in enumerate([("CA", "a1"), ("CB", "b1"), ("CC", "c1")]):
        await store.enqueue(message(seq, f"{channel}:{key}", channel=channel))
    for seq, channel in enumerate(["CA", "CB"], start=10):
        await store.enqueue(
            message(seq, f"{channel}:edit:1.0", channel=channel, kind=OutboxKind.REFRESH_LAUNCH, payload={})
        )
    leased = await store.lease_outbox(
        owner="a", now=NOW, lease=30, limit=10, posts_per_channel=1, skip_posts_in=["CA", "CB"], skip_edits_in=["CB"]
    )
    assert [m.order_key for m in leased] == ["CC:c1", "CA:edit:1.0"]
    rest = await store.lease_outbox(owner="a", now=NOW, lease=30, limit=10, posts_per_channel=1)
    assert [m.order_key for m in rest] == ["CA:a1", "CB:b1", "CB:edit:1.0"]


async def test_writes_at_once_each_stand_or_fail_alone(store: Store) -> None:
    """SQLite commits the writes that arrive together in one transaction: one that fails is undone alone, and
    every other is stored (and read back) once its call has returned."""
    outcomes = await asyncio.gather(
        store.create_launch(launch("L1")),
        store.create_launch(launch("L1")),  # the same id again: refused
        store.claim("k1", now=NOW),
        store.enqueue(message(1, "C0OPS:1.0")),
        store.create_launch(launch("L2")),
        return_exceptions=True,
    )
    assert outcomes[0] is None and outcomes[2] is True and outcomes[3] is True and outcomes[4] is None
    assert isinstance(outcomes[1], (sqlite3.IntegrityError, asyncpg.UniqueViolationError))
    assert await store.get_launch("L1") is not None and await store.get_launch("L2") is not None
    assert not await store.claim("k1", now=NOW)
    assert [m.id for m in await store.outbox_messages()] == [message(1, "C0OPS:1.0").id]
