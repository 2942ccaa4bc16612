"""Repeating a benchmark: the median of the runs, with their min and max, and the machine's load around each run.

A shared two-core machine moves a single figure by tens of percent; three runs side by side give a median that
means something and a range that says how much to trust it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = ["Repeated", "repeat", "summarise"]

Repeated = dict[str, Any]


async def repeat(runs: int, benchmark: Callable[[], Awaitable[Any]]) -> Repeated:
    """`median` has the shape of one run's result (every number the median of the runs); `min` and `max` too."""
    results: list[Any] = []
    load: list[dict[str, Any]] = []
    for _ in range(runs):
        before = os.getloadavg()
        t0 = time.perf_counter()
        results.append(await benchmark())
        load.append(
            {"loadavg_before": list(before), "loadavg_after": list(os.getloadavg()), "wall_s": time.perf_counter() - t0}
        )
    return {
        "median": summarise(results, statistics.median),
        "min": summarise(results, min),
        "max": summarise(results, max),
        "runs": results,
        "load": load,
    }


def summarise(values: Sequence[Any], pick: Callable[[list[float]], float]) -> Any:
    """Walk runs of the same shape together; numbers are combined with `pick`, anything else is the first run's."""
    first = values[0]
    if isinstance(first, bool) or not isinstance(first, int | float | dict | list):
        return first
    if isinstance(first, int | float):
        numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) != len(values):
            return first
        picked = pick(numbers)
        # Counts stay counts (the median of three whole numbers is one of them).
        return int(picked) if all(isinstance(v, int) for v in values) and picked.is_integer() else picked
    if isinstance(first, dict):
        return {
            key: summarise([v[key] for v in values], pick) if all(key in v for v in values) else first[key]
            for key in first
        }
    if all(isinstance(v, list) and len(v) == len(first) for v in values):
        return [summarise([v[i] for v in values], pick) for i in range(len(first))]
    return first
