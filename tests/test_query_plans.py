"""Every query on a hot path reads through an index: the database's own plan for each statement the store runs.

A full scan costs nothing on a test's ten rows and a great deal on a million launches, so timing cannot find it;
the plan can. Each hot-path store method is run against a real database while the store reports every statement
it sends (its `on_query` observer), then each statement is explained: SQLite's `EXPLAIN QUERY PLAN` must show no
`SCAN` of a table or of a whole index, PostgreSQL's `EXPLAIN` (with sequential scans priced out, so that an index
is chosen whenever one can serve) no `Seq Scan`.
"""

from __future__ import annotations

import inspect
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.store import (
    ApprovalState,
    AuditEvent,
    LaunchState,
    PostgresStore,
    SqliteStore,
    Store,
)
from tests.stores import PgSchema, postgres_url_or_skip
from tests.test_store import NOW, approval, launch, message

# Store methods that are not on a hot path: start-up reads run once per start (they are still checked below, as
# a million launches must not slow a restart), the rest serve tests and status pages.
NOT_HOT = frozenset({"open", "close", "ping", "audit_events", "outbox_messages"})


@dataclass
class Observed:
    """The statements a store sent, as (sql, arguments)."""

    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def __call__(self, sql: str, args: tuple[Any, ...]) -> None:
        self.statements.append((sql, args))

    def take(self) -> list[tuple[str, tuple[Any, ...]]]:
        taken, self.statements = self.statements, []
        return [(sql, args) for sql, args in taken if not _CONTROL.match(sql)]


# Transaction control, and the reset asyncpg runs when a pooled connection goes back to its pool.
_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|PRAGMA|SAVEPOINT|RELEASE|SELECT pg_advisory_unlock_all\(\))", re.I)
# A full scan of a table ("SCAN launches") or of a whole index ("SCAN o USING INDEX outbox_seq"), or a SEARCH with
# no constraint on the index (how SQLite shows reading a whole index for MIN/MAX of a column that is not the
# index's first). A constant row is not a table.
_SQLITE_SCAN = re.compile(r"^(SCAN (TABLE )?(?!CONSTANT ROW)\w+|SEARCH \w+ USING (COVERING )?INDEX (?P<index>\w+)$)")
# Indexes whose first column is read for MIN/MAX: SQLite reads one end of the index, one row (`outbox_seq`:
# the next outbox number is MAX(seq) + 1).
_MINMAX_INDEXES = frozenset({"outbox_seq"})


@dataclass
class Backend:
    store: Store
    observed: Observed
    explain: Callable[[str, tuple[Any, ...]], Awaitable[list[str]]]


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    observed = Observed()
    if request.param == "sqlite":
        path = str(tmp_path / "plans.sqlite3")
        store = SqliteStore(path=path, on_query=observed)
        await store.open()
        plans = sqlite3.connect(path)
        try:
            yield Backend(store=store, observed=observed, explain=_sqlite_explainer(plans))
        finally:
            plans.close()
            await store.close()
        return
    async with PgSchema(await postgres_url_or_skip()) as schema:
        pg_store = PostgresStore(dsn=schema.base_url, server_settings={"search_path": schema.name}, on_query=observed)
        await pg_store.open()
        con = await asyncpg.connect(schema.base_url, server_settings={"search_path": schema.name})
        await con.execute("SET enable_seqscan = off")
        try:
            yield Backend(store=pg_store, observed=observed, explain=_postgres_explainer(con))
        finally:
            await con.close()
            await pg_store.close()


def _sqlite_explainer(db: sqlite3.Connection) -> Callable[[str, tuple[Any, ...]], Awaitable[list[str]]]:
    # Reading all of a partial index is reading only the rows it was made for (e.g. results not yet posted).
    partial = {
        name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'")
    }

    async def explain(sql: str, args: tuple[Any, ...]) -> list[str]:
        rows = db.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()  # the trace has the values bound in
        return [str(row[3]) for row in rows if _sqlite_full_read(str(row[3]), partial)]

    return explain


def _sqlite_full_read(detail: str, partial: set[str]) -> bool:
    found = _SQLITE_SCAN.match(detail)
    if found is None:
        return False
    if found["index"] in _MINMAX_INDEXES:
        return False
    return not any(detail.endswith(f" INDEX {name}") for name in partial)


def _postgres_explainer(con: asyncpg.Connection) -> Callable[[str, tuple[Any, ...]], Awaitable[list[str]]]:
    async def explain(sql: str, args: tuple[Any, ...]) -> list[str]:
        (plan,) = json.loads(await con.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
        return [
            f"Seq Scan on {node.get('Relation Name')}"
            for node in _nodes(plan["Plan"])
            if node["Node Type"] == "Seq Scan"
        ]

    return explain


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


# -- the hot paths ---------------------------------------------------------------------------------------------


async def _fill(store: Store) -> None:
    """A few rows of everything, so that updates and lookups have something to find."""
    for i in range(3):
        await store.create_launch(launch(f"L{i}", job_instance_id=100 + i, created_at=NOW + i))
        await store.create_approval(approval(f"A{i}"))
        await store.enqueue(message(i, f"t{i}"))
        await store.append_audit(AuditEvent(id=f"e{i}", at=NOW + i, actor="U0ALICE", action="launch.requested"))
        await store.claim(f"k{i}", now=NOW)
    await store.record_result("L0", "3", 3, now=NOW, reply=message(9, "t0"))


Op = Callable[[Store], Awaitable[object]]

HOT: dict[str, Op] = {
    "claim": lambda s: s.claim("command:T1", now=NOW),
    "create_launch": lambda s: s.create_launch(launch("L9", callback_token_hash="hash-new")),
    "get_launch": lambda s: s.get_launch("L1"),
    "find_launch_by_token": lambda s: s.find_launch_by_token("hash-L1"),
    "find_launch_by_instance": lambda s: s.find_launch_by_instance(10000),
    "set_message": lambda s: s.set_message("L1", "1.1", now=NOW),
    "set_outcome": lambda s: s.set_outcome("L1", LaunchState.RUNNING, now=NOW, job_instance_id=7),
    "record_result": lambda s: s.record_result("L1", "3", 3, now=NOW, reply=message(20, "t1")),
    "mark_result_posted": lambda s: s.mark_result_posted("L1", "3", "2.2"),
    "unposted_results": lambda s: s.unposted_results(),
    "unfinished_launches": lambda s: s.unfinished_launches(),
    "recent_launches": lambda s: s.recent_launches("C0OPS", 20),
    "create_approval": lambda s: s.create_approval(approval("A9")),
    "get_approval": lambda s: s.get_approval("A1"),
    "set_approval_message": lambda s: s.set_approval_message("A1", "3.3", now=NOW),
    "add_vote": lambda s: s.add_vote("A1", "U0BOB", now=NOW),
    "votes": lambda s: s.votes("A1"),
    "decide": lambda s: s.decide("A1", ApprovalState.APPROVED, by="U0BOB", now=NOW),
    "set_approval_launch": lambda s: s.set_approval_launch("A1", "L1", now=NOW),
    "expire_due": lambda s: s.expire_due(now=NOW + 3600),
    "pending_approvals": lambda s: s.pending_approvals("C0OPS"),
    "append_audit": lambda s: s.append_audit(AuditEvent(id="e9", at=NOW, actor="U0BOB", action="approved")),
    "schedule_poll": lambda s: s.schedule_poll("L2", at=NOW, attempts=1),
    "lease_due_polls": lambda s: s.lease_due_polls(owner="p", now=NOW + 1, lease=30, limit=10),
    "release_polls": lambda s: s.release_polls(owner="p"),
    "set_progress": lambda s: s.set_progress("L2", {"step": 1}, now=NOW),
    "claim_instance": lambda s: s.claim_instance("L9", 101, now=NOW),
    "release": lambda s: s.release("command:T1"),
    "reopen_launch": lambda s: s.reopen_launch("L2", finished_at=NOW, job_status=2, now=NOW),
    "enqueue": lambda s: s.enqueue(message(30, "t1", dedupe_key="refresh-launch:L1")),
    "lease_outbox": lambda s: s.lease_outbox(
        owner="o", now=NOW, lease=30, limit=100, posts_per_channel=1, edits_per_channel=3, skip_posts_in=["C0DEV"]
    ),
    "outbox_sent": lambda s: s.outbox_sent(message(0, "t0").id, owner="o", ts="4.4", now=NOW),
    "outbox_retry": lambda s: s.outbox_retry(message(1, "t1").id, owner="o", error="ratelimited", at=NOW + 5),
    "outbox_dead": lambda s: s.outbox_dead(message(2, "t2").id, owner="o", error="is_archived"),
    "outbox_release": lambda s: s.outbox_release([message(3, "t3").id, message(4, "t4").id], owner="o"),
    "backlog": lambda s: s.backlog(now=NOW + 10),
    "prune": lambda s: s.prune(claims_before=NOW - 86400, sent_before=NOW - 86400, audit_before=NOW - 1, limit=100),
}


def test_every_store_method_is_either_checked_or_named_as_not_hot() -> None:
    """A new store method is a new query: add it to HOT (with a call) or, if it never runs per request, to NOT_HOT."""
    methods = {name for name, _ in inspect.getmembers(Store, inspect.isfunction) if not name.startswith("_")}
    assert methods - HOT.keys() - NOT_HOT == set()


async def test_no_hot_path_query_scans_a_table(backend: Backend) -> None:
    await _fill(backend.store)
    scans: dict[str, list[str]] = {}
    for name, op in HOT.items():
        backend.observed.take()
        await op(backend.store)
        statements = backend.observed.take()
        assert statements, f"{name} ran no statement the observer saw"
        for sql, args in statements:
            found = await backend.explain(sql, args)
            if found:
                scans.setdefault(name, []).append(f"{'; '.join(found)} in: {' '.join(sql.split())[:200]}")
    assert scans == {}
