"""`python -m bench`: run the benchmarks, print the table, write bench/results.json."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ack import ack_latency
from bench.growth import growth
from bench.report import machine, table, write_json
from bench.startup import startup
from bench.throughput import result_throughput

__all__ = ["Scale", "main", "run"]

BENCHMARKS = ("ack", "throughput", "growth", "startup")


@dataclass(frozen=True)
class Scale:
    ack_levels: tuple[int, ...]
    ack_requests: int
    launches: int
    channels: int
    rates: tuple[float, ...]
    growth_stages: tuple[int, int, int]
    growth_ack_requests: int
    launch_samples: int
    startup_runs: int


SCALES = {
    # What issue 6 asks for; results at Slack's real 1/s take ~100 s, so they run scaled 20x as well.
    "full": Scale((1, 10, 100), 2000, 1000, 10, (1.0, 20.0), (10, 10_000, 100_000), 500, 20, 5),
    "quick": Scale((1, 10, 100), 500, 1000, 10, (20.0,), (10, 1_000, 10_000), 200, 10, 3),
    # A few seconds, for the smoke test: keeps the code from rotting, says nothing about speed.
    "tiny": Scale((1, 2), 5, 20, 2, (50.0,), (2, 10, 30), 5, 2, 1),
}


async def run(mode: str, only: tuple[str, ...] = BENCHMARKS) -> dict[str, Any]:
    scale = SCALES[mode]
    results: dict[str, Any] = {"mode": mode, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine()}
    steps: dict[str, Callable[[], Awaitable[Any]]] = {
        "ack": lambda: ack_latency(levels=scale.ack_levels, requests=scale.ack_requests),
        "throughput": lambda: _throughput(scale),
        "growth": lambda: growth(
            stages=scale.growth_stages, ack_requests=scale.growth_ack_requests, launch_samples=scale.launch_samples
        ),
        "startup": lambda: startup(runs=scale.startup_runs),
    }
    for name in only:
        try:
            results[name] = await steps[name]()
        except (RuntimeError, TimeoutError, OSError) as exc:
            # One benchmark failing (a time-out is a finding too) must not lose the others' figures.
            results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
    return results


async def _throughput(scale: Scale) -> list[dict[str, Any]]:
    return [
        await result_throughput(launches=scale.launches, channels=scale.channels, rate=rate)
        for rate in sorted(scale.rates, reverse=True)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="results at 20 posts/s/channel only; smaller growth")
    mode.add_argument("--tiny", action="store_true", help="a few requests of each, for the smoke test")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {BENCHMARKS}")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args(argv)
    only = tuple(name for name in args.only.split(",") if name)
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    results = asyncio.run(run("tiny" if args.tiny else "quick" if args.quick else "full", only))
    write_json(results, args.out)
    print(table(results))
    print(f"\nwritten to {args.out}")
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
