"""Benchmark 3: memory, ack latency and launch cost as the store grows (to 100,000 launches, or 1,000,000 with
`--million`), on SQLite and, when one is configured, PostgreSQL."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.fill import History, fill
from bench.launching import launch_latency, launch_many, launch_once
from bench.load import Load, percentile, send_all
from bench.process import Served
from bench.queries import scratch_database
from bench.repeat import summarise
from bench.rig import Rig, rig
from bot.core.retention import SENT_RETENTION_S

__all__ = ["growth"]


async def growth(
    *, stages: tuple[int, int, int], ack_requests: int, launch_samples: int, backends: tuple[str, ...]
) -> list[dict[str, Any]]:
    return [
        await _growth(backend, stages=stages, ack_requests=ack_requests, launch_samples=launch_samples)
        for backend in backends
    ]


async def _growth(
    backend: str, *, stages: tuple[int, int, int], ack_requests: int, launch_samples: int
) -> dict[str, Any]:
    """The first two stages are real launches over HTTP; the last is topped up with a year of history written in
    bulk (bench/fill.py: launching a million over HTTP would take hours). The baseline server is measured beside
    the bot at every stage, so that the machine's load, which moves between stages, divides out of the ratio."""
    small, medium, large = stages
    out: dict[str, Any] = {"backend": backend, "stages": []}
    with tempfile.TemporaryDirectory(prefix="bkjob-bench-g-") as tmp:
        async with rig() as r, scratch_database(backend, Path(tmp)) as url, r.baseline() as baseline:
            bot = r.bot(DATABASE_URL=url)
            await bot.start()
            try:
                out["rss_idle_mib"] = bot.rss_mib()
                channels = [f"CGRW{i:03d}" for i in range(100)]
                await launch_many(r, bot, count=small, channels=channels)
                out["stages"].append(await _stage(r, bot, baseline, small, ack_requests, launch_samples))
                # The small stage's own launches count towards the medium one (each is a launch stored).
                rate = await launch_many(r, bot, count=max(0, medium - len(r.bk.instances)), channels=channels)
                out["launches_per_s_over_http"] = rate
                out["rss_after_http_launches_mib"] = bot.rss_mib()
                out["stages"].append(await _stage(r, bot, baseline, medium, ack_requests, launch_samples))
            finally:
                await bot.stop()
            stored = len(r.bk.instances)  # every launch over HTTP so far, the stages' samples included
            t0 = time.perf_counter()
            # As the bot's retention leaves a site that has run it: sent replies a week back (the backlog an upgrade
            # meets is the first sweep's, measured in bench/queries.py as `prune`).
            await fill(url, History(launches=large - stored, now=time.time(), sent_days=SENT_RETENTION_S / 86400))
            out["fill_rows_per_s"] = (large - stored) / (time.perf_counter() - t0)
            bot = r.bot(DATABASE_URL=url)
            out["restart_s_with_large_store"] = await bot.start()
            try:
                out["rss_idle_large_store_mib"] = bot.rss_mib()
                out["stages"].append(await _stage(r, bot, baseline, large, ack_requests, launch_samples))
                async with scratch_database(backend, Path(tmp)) as small_url:
                    out["side_by_side"] = await _side_by_side(
                        r, bot, r.bot(DATABASE_URL=small_url), baseline, stored=small, requests=ack_requests
                    )
            finally:
                await bot.stop()
    first = out["stages"][0]
    for stage in out["stages"]:
        stage["ack_p99_growth"] = stage["ack_p99_vs_baseline"] / first["ack_p99_vs_baseline"]
    return out


_ROUNDS = 5


async def _side_by_side(
    r: Rig, large: Served, small: Served, baseline: Served, *, stored: int, requests: int
) -> dict[str, Any]:
    """The large store's bot against a second bot on a store of `stored` launches, running at the same time, acks
    sent to each in turn, 2 x `_ROUNDS` rounds of `requests` / 2: whatever the shared machine does falls on both
    alike, and each one's p99 is taken over all its rounds (25th worst of 2,500), not one round's few slowest."""
    await small.start()
    try:
        await launch_many(r, small, count=stored, channels=[f"CGSB{i:02d}" for i in range(10)])
        pooled: dict[str, list[float]] = {"large": [], "small": [], "baseline": []}
        for _ in range(2 * _ROUNDS):  # short rounds, so that a slow minute of the machine falls on both
            for name, served in (("large", large), ("small", small), ("baseline", baseline)):
                sent = [r.signed.command("help", channel="CGSBACK") for _ in range(max(1, requests // 2))]
                await send_all(f"{served.url}/slack/events", sent, concurrency=10, record=pooled[name])
                if served is not baseline:
                    await served.idle()
        for latencies in pooled.values():
            latencies.sort()
        p99 = {name: percentile(latencies, 99) for name, latencies in pooled.items()}
        p50 = {name: percentile(latencies, 50) for name, latencies in pooled.items()}
        return {
            "requests_each": len(pooled["large"]),
            "p50_ms": p50,
            "p99_ms": p99,
            "ack_p99_large_over_small": p99["large"] / p99["small"],
            "ack_p50_large_over_small": p50["large"] / p50["small"],
            "rss_large_mib": large.rss_mib(),
            "rss_small_mib": small.rss_mib(),
            "loadavg": list(os.getloadavg()),
        }
    finally:
        await small.stop()


async def _stage(
    r: Rig, bot: Served, baseline: Served, stored: int, ack_requests: int, launch_samples: int
) -> dict[str, Any]:
    """Acks in `_ROUNDS` rounds, bot and baseline alternately: one round's hiccup on either side (the machine is
    shared) moves one of five ratios, not the stage's figure, which is their median."""
    rounds: list[tuple[Load, Load]] = []
    per_round = max(1, ack_requests // _ROUNDS)
    for _ in range(_ROUNDS):
        requests = [r.signed.command("help", channel="CGRWACK") for _ in range(per_round)]
        ack = await send_all(f"{bot.url}/slack/events", requests, concurrency=10)
        theirs = await send_all(f"{baseline.url}/slack/events", requests, concurrency=10)
        rounds.append((ack, theirs))
        await bot.idle()  # each help command's reply is sent after its ack: not left to the next round
    ratios = [ack.p99_ms / theirs.p99_ms for ack, theirs in rounds]
    costs = [await launch_once(r, bot, channel=f"CLC{stored}x{i}") for i in range(launch_samples)]
    # Launches to execute_job as 10 people would send them, the store at this size (bench/launching.py).
    to_execute = await launch_latency(r, bot, count=launch_samples * 5, concurrency=10, via="command", tag=f"g{stored}")
    return {
        "launches_stored": stored,
        "ack_help_c10": summarise([asdict(ack) for ack, _ in rounds], statistics.median),
        "baseline_c10": summarise([asdict(theirs) for _, theirs in rounds], statistics.median),
        "ack_p99_vs_baseline": statistics.median(ratios),
        "ack_p99_vs_baseline_rounds": ratios,
        "launch_ms_median": statistics.median(costs),
        "launch_ms_max": max(costs),
        "launch_to_execute_c10": to_execute,
        "rss_mib": bot.rss_mib(),
    }
