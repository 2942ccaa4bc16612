"""Benchmark 1: how fast Slack gets its ack, the bot beside a bare signature-checking aiohttp handler."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from bench.load import Lazy, Load, send_all
from bench.process import Served
from bench.rig import PLAN, Rig, rig, wait_until
from bench.signed import Signed

__all__ = ["KINDS", "ack_latency", "measure_kind"]

KINDS = ("help", "run", "submit")
_FORM_CHANNELS = 20
_DRAIN_S = 300.0


async def ack_latency(*, levels: Sequence[int], requests: int) -> list[dict[str, Any]]:
    """One bot and one baseline process, started once; every kind at every level, bot then baseline."""
    async with rig() as r:
        return await _ack_latency(r, levels=levels, requests=requests)


async def _ack_latency(rig: Rig, *, levels: Sequence[int], requests: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with rig.bot() as bot, rig.baseline() as baseline:
        forms = [await rig.run_form(bot, channel=f"CACK{i:03d}") for i in range(_FORM_CHANNELS)]
        for kind in KINDS:  # warm both servers up: first imports, Bolt's auth.test, the plan cache
            await measure_kind(rig, bot, kind, forms, requests=10, concurrency=1)
        await send_all(f"{baseline.url}/slack/events", [rig.signed.command("help", channel="CACK")] * 10, concurrency=1)
        for concurrency in levels:
            for kind in KINDS:
                bot_cpu, rig_cpu = bot.cpu_s(), time.process_time()
                ours = await measure_kind(rig, bot, kind, forms, requests=requests, concurrency=concurrency)
                bot_cpu, rig_cpu = bot.cpu_s() - bot_cpu, time.process_time() - rig_cpu
                base_cpu, base_rig_cpu = baseline.cpu_s(), time.process_time()
                theirs = await send_all(
                    f"{baseline.url}/slack/events", _requests(rig, kind, forms, requests), concurrency=concurrency
                )
                base_cpu, base_rig_cpu = baseline.cpu_s() - base_cpu, time.process_time() - base_rig_cpu
                row = _row(kind, ours, theirs)
                # CPU per request is the figure a shared machine's load does not move much (unlike milliseconds):
                # the bot's includes the work each ack started; the rig's (load generator plus the fakes, one
                # process) shows how much of the bot's latency is the fakes answering it on the same two cores.
                row["cpu_ms_per_request"] = {
                    "bot": bot_cpu / ours.requests * 1000,
                    "baseline": base_cpu / theirs.requests * 1000,
                    "rig_for_bot": rig_cpu / ours.requests * 1000,
                    "rig_for_baseline": base_rig_cpu / theirs.requests * 1000,
                }
                rows.append(row)
    return rows


async def measure_kind(
    rig: Rig, bot: Served, kind: str, forms: Sequence[Mapping[str, Any]], *, requests: int, concurrency: int
) -> Load:
    """Send, then wait until the work each ack started is done, so one level's backlog does not load the next."""
    done = _progress(rig, kind)
    start = done() if done is not None else 0
    load = await send_all(f"{bot.url}/slack/events", _requests(rig, kind, forms, requests), concurrency=concurrency)
    if done is not None:
        await wait_until(lambda: done() >= start + load.requests, within=_DRAIN_S, what=f"{kind} work to finish")
    return load


def _requests(rig: Rig, kind: str, forms: Sequence[Mapping[str, Any]], n: int) -> list[Signed] | Lazy:
    if kind == "help":
        return [rig.signed.command("help", channel="CACK") for _ in range(n)]
    if kind == "run":  # views.open needs a trigger_id under 3 s old: minted as each request is sent
        return Lazy(n, lambda i: rig.signed.command(f"run {PLAN}", channel=f"CACK{i % _FORM_CHANNELS:03d}"))
    return [rig.signed.submission(forms[i % len(forms)]) for i in range(n)]


def _progress(rig: Rig, kind: str) -> Callable[[], int] | None:
    """What marks one request's follow-up work as done: the filled modal, the job started; None where the ack is
    all there is (`/bkjob help` is answered in the ack's body)."""
    if kind == "help":
        return None
    if kind == "run":
        # views.open is the first call of every run's work; under overload it can come more than 3 s after the
        # command and be refused (expired_trigger_id), and then no views.update follows: count the attempts.
        return lambda: len(rig.slack.calls("views.open"))
    return lambda: len(rig.bk.instances)


def _row(kind: str, bot: Load, baseline: Load) -> dict[str, Any]:
    return {
        "kind": kind,
        "concurrency": bot.concurrency,
        "bot": asdict(bot),
        "baseline": asdict(baseline),
        "p50_ratio": bot.p50_ms / baseline.p50_ms,
        "p99_ratio": bot.p99_ms / baseline.p99_ms,
        "rps_ratio": bot.rps / baseline.rps,
    }
