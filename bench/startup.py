"""Benchmark 4: from `python -m bot` being spawned to its first `/healthz` 200 (Heroku allows 60 s)."""

from __future__ import annotations

import statistics
from typing import Any

from bench.rig import rig

__all__ = ["startup"]


async def startup(*, runs: int) -> dict[str, Any]:
    """Each run starts on a new database (migrations included); the first run also compiles bytecode if needed."""
    times: list[float] = []
    async with rig() as r:
        for i in range(runs):
            bot = r.bot(db=f"startup-{i}.sqlite3")
            times.append(await bot.start())
            await bot.stop()
    return {
        "runs": runs,
        "first_s": times[0],
        "median_s": statistics.median(times),
        "max_s": max(times),
        "all_s": times,
    }
