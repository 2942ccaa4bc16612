"""`python -m bot demo [--port N]`: start the simulator and serve it until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.demo.catalogue import CHANNELS, PLANS
from bot.demo.server import DemoOptions, Simulator
from bot.logs import configure

__all__ = ["main"]


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot demo",
        description="Try bkjob-bot without Slack or BK-JOB: the real bot, a simulated BK-JOB and a page that "
        "plays a Slack channel.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address the page listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port the page listens on (default 3000)")
    parser.add_argument(
        "--step-seconds", type=float, default=2.0, help="how long each simulated job step runs (default 2)"
    )
    parser.add_argument(
        "--database", type=Path, default=None, help="SQLite file for the bot (default: a fresh temporary file)"
    )
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(list(argv))
    if not 0 <= args.port <= 65535 or args.step_seconds <= 0:
        parser.error("--port must be 0-65535 and --step-seconds more than 0")
    configure(args.log_level)
    options = DemoOptions(
        host=args.host,
        port=args.port,
        step_seconds=args.step_seconds,
        database=args.database,
        log_level=args.log_level,
    )
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(options))
    return 0


async def _serve(options: DemoOptions) -> int:
    simulator = Simulator(options)
    try:
        await simulator.start()
    except OSError as exc:
        await simulator.close()
        print(f"bkjob-bot demo: cannot listen on {options.host}:{options.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        print(_banner(simulator), flush=True)
        await asyncio.Event().wait()  # until Ctrl-C cancels this task
    finally:
        await simulator.close()
    return 0


def _banner(simulator: Simulator) -> str:
    plans = ", ".join(f"{p.bk_job_id} {p.name}" + (" (fails)" if p.fails_at is not None else "") for p in PLANS)
    channels = ", ".join(f"#{c.name} ({'approval' if c.approval else 'no approval'})" for c in CHANNELS)
    return (
        f"bkjob-bot demo: open {simulator.url}/ and type /bkjob run 100\n"
        f"  channels: {channels}\n"
        f"  plans: {plans}\n"
        f"  the bot itself listens on {simulator.bot_url} (Ctrl-C stops everything)"
    )
