"""Benchmark 5: the store's hot-path operations on a small store and on a year of history, SQLite and PostgreSQL.

In process, through the store's own interface, so the figure is the database's cost alone: an operation whose
cost grows with the history (a scan) shows as a ratio far above 1 between the two sizes, whatever the machine's
load does to the milliseconds.
"""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from bench.fill import History, fill
from bench.load import percentile
from bot.store import AuditEvent, LaunchRecord, LaunchState, OutboxKind, OutboxMessage, Store, open_store

__all__ = ["postgres_url", "query_costs", "scratch_database"]

_REPEAT = 200


def postgres_url() -> str | None:
    """Where PostgreSQL figures are taken: BENCH_DATABASE_URL, else the tests' TEST_DATABASE_URL, else none."""
    return os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") or None


@asynccontextmanager
async def scratch_database(backend: str, workdir: Path) -> AsyncIterator[str]:
    """A fresh, empty database URL: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'q-{uuid.uuid4().hex[:8]}.sqlite3'}"
        return
    base = postgres_url()
    if base is None:
        raise RuntimeError("no PostgreSQL: set BENCH_DATABASE_URL (or TEST_DATABASE_URL)")
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    con = await asyncpg.connect(base)
    try:
        await con.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in base else "?"
        yield f"{base}{sep}search_path={schema}"
    finally:
        await con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await con.close()


async def query_costs(*, sizes: tuple[int, ...], backends: tuple[str, ...], runs: int) -> list[dict[str, Any]]:
    """For each backend and size: a fresh database holding `size` launches of history, then each operation
    `_REPEAT` times, `runs` times over (median, min and max of the runs' p50s). The first size is the reference
    the others are divided by."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bkjob-bench-q-") as tmp:
        for backend in backends:
            reference: dict[str, float] = {}
            for size in sizes:
                async with scratch_database(backend, Path(tmp)) as url:
                    t0 = time.perf_counter()
                    await fill(url, History(launches=size, now=time.time()))
                    fill_s = time.perf_counter() - t0
                    measured = [await _measure(url) for _ in range(runs)]
                ops = {op: _spread([run[op] for run in measured]) for op in measured[0]}
                for op, cost in ops.items():
                    reference.setdefault(op, cost["p50_ms"])
                    cost["p50_vs_smallest"] = cost["p50_ms"] / reference[op] if reference[op] > 0 else float("nan")
                rows.append({"backend": backend, "launches_stored": size, "fill_s": fill_s, "runs": runs, "ops": ops})
    return rows


def _spread(runs: list[dict[str, float]]) -> dict[str, float]:
    p50s = [run["p50_ms"] for run in runs]
    return {
        "p50_ms": statistics.median(p50s),
        "p50_min_ms": min(p50s),
        "p50_max_ms": max(p50s),
        "p99_ms": statistics.median(run["p99_ms"] for run in runs),
    }


async def _measure(url: str) -> dict[str, dict[str, float]]:
    store = open_store(url)
    await store.open()
    try:
        # `before` runs use an older store without some methods (e.g. prune): those are left out, not failed.
        return {name: await _time(op, store) for name, (needs, op) in _operations().items() if hasattr(store, needs)}
    finally:
        await store.close()


async def _time(op: Callable[[Store, int], Awaitable[object]], store: Store) -> dict[str, float]:
    times: list[float] = []
    for i in range(_REPEAT):
        t0 = time.perf_counter()
        after = await op(store, i)
        times.append((time.perf_counter() - t0) * 1000)
        if callable(after):  # untimed clean-up, so one operation does not load the next one's tables
            await after()
    times.sort()
    return {"p50_ms": statistics.median(times), "p99_ms": percentile(times, 99), "max_ms": times[-1]}


_RUN = uuid.uuid4().hex[:6]
_INSTANCES = itertools.count(9_000_000)


def _launch(i: int, state: LaunchState = LaunchState.FINISHED, **changes: Any) -> LaunchRecord:
    now = time.time()
    return LaunchRecord(
        id=f"bench-{_RUN}-{i}-{uuid.uuid4().hex[:6]}",
        created_at=now,
        updated_at=now,
        requester="U0BENCH",
        channel="CPAST07",
        bk_biz_id=3,
        bk_job_id=100,
        plan_name="Deploy web",
        bk_username="ops-bot",
        callback_token_hash=uuid.uuid4().hex,
        state=state,
        **changes,
    )


def _reply(channel: str, thread: str) -> OutboxMessage:
    now = time.time()
    return OutboxMessage(
        id=uuid.uuid4().hex,
        created_at=now,
        seq=time.time_ns(),  # what a store before the database numbered messages needs; ignored since
        channel=channel,
        order_key=f"{channel}:{thread}",
        kind=OutboxKind.POST,
        payload={"text": "Finished", "thread_ts": thread},
        next_attempt_at=now,
    )


async def _record(store: Store, i: int) -> None:
    launch = _launch(i, message_ts=f"{i}.1")
    await store.create_launch(launch)
    await store.record_result(launch.id, "3", 3, now=time.time(), reply=_reply(launch.channel, f"{i}.1"))


async def _deliver(store: Store, i: int) -> None:
    await store.enqueue(_reply("CBENCH", f"d{i}"))
    for message in await store.lease_outbox(owner="bench", now=time.time(), lease=60, limit=100):
        await store.outbox_sent(message.id, owner="bench", ts=f"{i}.2", now=time.time())


async def _claim_instance(store: Store, i: int) -> Callable[[], Awaitable[object]]:
    launch = _launch(i)
    await store.create_launch(launch)
    await store.claim_instance(launch.id, next(_INSTANCES), now=time.time())
    # A claimed launch is running: finish it, or the next run's reads of unfinished launches would see it.
    return lambda: store.record_result(launch.id, "3", 3, now=time.time())


Operation = Callable[[Store, int], Awaitable[object]]


def _operations() -> dict[str, tuple[str, Operation]]:
    """What a request, a callback or a worker round asks of the store, by name: (the store method it needs, one
    timed call). Reads of unfinished work come first, before the operations that add launches of their own."""
    return {
        "unfinished_launches": ("unfinished_launches", lambda s, i: s.unfinished_launches()),
        "unposted_results": ("unposted_results", lambda s, i: s.unposted_results()),
        "lease_due_polls": (
            "lease_due_polls",
            lambda s, i: s.lease_due_polls(owner="bench", now=time.time(), lease=60, limit=50),
        ),
        "pending_approvals": ("pending_approvals", lambda s, i: s.pending_approvals("CPAST07")),
        "claim": ("claim", lambda s, i: s.claim(f"command:{_RUN}:{i}", now=time.time())),
        "create_launch": ("create_launch", lambda s, i: s.create_launch(_launch(i))),
        "find_launch_by_token": ("find_launch_by_token", lambda s, i: s.find_launch_by_token(uuid.uuid4().hex)),
        "recent_launches(20)": ("recent_launches", lambda s, i: s.recent_launches("CPAST07", 20)),
        "recent_launches(200)": ("recent_launches", lambda s, i: s.recent_launches("CPAST07", 200)),
        "record_result": ("record_result", _record),
        "enqueue+lease+sent": ("lease_outbox", _deliver),
        "claim_instance": ("claim_instance", _claim_instance),
        "append_audit": (
            "append_audit",
            lambda s, i: s.append_audit(
                AuditEvent(id=uuid.uuid4().hex, at=time.time(), actor="U0BENCH", action="launch.requested")
            ),
        ),
        # One retention batch; the history is older than every cut-off, so each call deletes up to 1,000 rows.
        "prune": (
            "prune",
            lambda s, i: s.prune(
                claims_before=time.time() - 86400, sent_before=time.time() - 7 * 86400, audit_before=None, limit=1000
            ),
        ),
    }
