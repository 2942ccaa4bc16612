"""The load generator: a fixed number of signed requests from N concurrent senders, each timed to its answer."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import aiohttp

from bench.signed import Signed

__all__ = ["Lazy", "Load", "percentile", "send_all"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


@dataclass(frozen=True)
class Load:
    """Latencies in milliseconds; `rps` is requests completed per second of wall time."""

    requests: int
    concurrency: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rps: float
    statuses: dict[int, int]


class Lazy:
    """`count` requests, each built (signed, its trigger_id minted) only when a sender takes it: Slack sends a
    request the moment a person acts, and a trigger_id expires 3 s after that, so one built long before it is sent
    would measure expired triggers, not the bot."""

    def __init__(self, count: int, make: Callable[[int], Signed]) -> None:
        self._count = count
        self._make = make

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Signed]:
        return (self._make(i) for i in range(self._count))


async def send_all(
    url: str,
    requests: Iterable[Signed],
    *,
    concurrency: int,
    deadline_s: float = 120.0,
    record: list[float] | None = None,
) -> Load:
    """Each sender takes the next request as soon as its previous one is answered (closed loop); `record`, when
    given, receives every latency (ms), for percentiles pooled over several calls."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    pending = iter(requests)
    stop_at = time.perf_counter() + deadline_s
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def sender() -> None:
            for body, headers in pending:
                if time.perf_counter() > stop_at:
                    return
                t0 = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[resp.status] += 1

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    if record is not None:
        record.extend(latencies)
    return Load(
        requests=len(latencies),
        concurrency=concurrency,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else float("nan"),
        rps=len(latencies) / wall if wall > 0 else float("nan"),
        statuses=dict(statuses),
    )
