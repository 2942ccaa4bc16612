"""Benchmark 3: memory, ack latency and launch cost as the store grows to 10, 10,000 and 100,000 launches."""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import asdict
from typing import Any

from bench.launching import launch_many, launch_once
from bench.load import send_all
from bench.process import Served
from bench.rig import BIZ, PLAN, Rig, rig
from bot.store import LaunchRecord, LaunchState, open_store

__all__ = ["growth", "insert_launches"]

_DB = "growth.sqlite3"


async def growth(*, stages: tuple[int, int, int], ack_requests: int, launch_samples: int) -> dict[str, Any]:
    """The first two stages are real launches over HTTP; the last is topped up by rows written through the store
    (launching 90,000 over HTTP would take longer than the whole run is allowed)."""
    small, medium, large = stages
    out: dict[str, Any] = {"stages": []}
    async with rig() as r:
        bot = r.bot(db=_DB)
        await bot.start()
        try:
            out["rss_idle_mib"] = bot.rss_mib()
            channels = [f"CGRW{i:03d}" for i in range(100)]
            await launch_many(r, bot, count=small, channels=channels)
            out["stages"].append(await _stage(r, bot, small, ack_requests, launch_samples))
            rate = await launch_many(r, bot, count=medium - small - launch_samples, channels=channels)
            out["launches_per_s_over_http"] = rate
            out["rss_after_http_launches_mib"] = bot.rss_mib()
            out["stages"].append(await _stage(r, bot, medium, ack_requests, launch_samples))
        finally:
            await bot.stop()
        stored = medium + launch_samples  # the medium stage launched its samples too
        t0 = time.perf_counter()
        await insert_launches(str(r.workdir / _DB), count=large - stored)
        out["insert_rows_per_s"] = (large - stored) / (time.perf_counter() - t0)
        bot = r.bot(db=_DB)
        out["restart_s_with_large_store"] = await bot.start()
        try:
            out["rss_idle_large_store_mib"] = bot.rss_mib()
            out["stages"].append(await _stage(r, bot, large, ack_requests, launch_samples))
        finally:
            await bot.stop()
    return out


async def _stage(r: Rig, bot: Served, stored: int, ack_requests: int, launch_samples: int) -> dict[str, Any]:
    requests = [r.signed.command("help", channel="CGRWACK") for _ in range(ack_requests)]
    ack = await send_all(f"{bot.url}/slack/events", requests, concurrency=10)
    costs = [await launch_once(r, bot, channel=f"CLC{stored}x{i}") for i in range(launch_samples)]
    return {
        "launches_stored": stored,
        "ack_help_c10": asdict(ack),
        "launch_ms_median": statistics.median(costs),
        "launch_ms_max": max(costs),
        "rss_mib": bot.rss_mib(),
    }


async def insert_launches(path: str, *, count: int, batch: int = 1000) -> None:
    """Finished launches with results, as months of use leave them, written through the store's own interface."""
    store = open_store(f"sqlite:///{path}")
    await store.open()
    try:
        now = time.time()
        for start in range(0, count, batch):
            for i in range(start, min(count, start + batch)):
                at = now - 86400 * 90 + i * 60
                await store.create_launch(
                    LaunchRecord(
                        id=uuid.uuid4().hex,
                        created_at=at,
                        updated_at=at,
                        requester="U0PAST",
                        channel=f"CPAST{i % 50:02d}",
                        message_ts=f"{1600000000 + i}.000100",
                        bk_biz_id=BIZ,
                        bk_job_id=PLAN,
                        plan_name="Deploy web",
                        bk_username="ops-bot",
                        callback_token_hash=uuid.uuid4().hex + uuid.uuid4().hex,
                        job_instance_id=1_000_000 + i,
                        job_instance_name="Deploy web",
                        state=LaunchState.FINISHED,
                        job_status=3,
                        finished_at=at + 30,
                    )
                )
    finally:
        await store.close()
