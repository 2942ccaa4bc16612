"""Launching many plans over HTTP (`/bkjob run 100 --yes`), the way people do, as fast as the bot takes them."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bench.load import percentile, send_all
from bench.process import Served
from bench.rig import PLAN, Rig, rig, wait_until
from bot.fakes.bkjob import BkRequest
from bot.fakes.slack import SlackCall

__all__ = ["launch_latencies", "launch_latency", "launch_many", "launch_once"]

_WAVE = 500


async def launch_many(rig: Rig, bot: Served, *, count: int, channels: Sequence[str], concurrency: int = 20) -> float:
    """Launches/s until BK-JOB has every job and every launch message shows its instance (in waves, so the
    background work never runs far behind the acks)."""
    t0 = time.perf_counter()
    sent = 0
    start_instances = len(rig.bk.instances)
    start_updates = len(rig.slack.calls("chat.update"))
    while sent < count:
        wave = min(_WAVE, count - sent)
        requests = [
            rig.signed.command(f"run {PLAN} --yes", channel=channels[(sent + i) % len(channels)]) for i in range(wave)
        ]
        load = await send_all(f"{bot.url}/slack/events", requests, concurrency=concurrency)
        if load.statuses.get(200, 0) != wave:
            raise RuntimeError(f"launch acks: {load.statuses}")
        sent += wave
        target = start_instances + sent
        await wait_until(lambda t=target: len(rig.bk.instances) >= t, within=300, what="launches")
    await wait_until(
        lambda: len(rig.slack.calls("chat.update")) >= start_updates + count, within=300, what="launch messages"
    )
    return count / (time.perf_counter() - t0)


async def launch_once(rig: Rig, bot: Served, *, channel: str) -> float:
    """Milliseconds from sending `--yes` to the launch message updated with the job instance (in a new channel)."""
    t0 = time.perf_counter()
    status = await rig.post(bot, rig.signed.command(f"run {PLAN} --yes", channel=channel))
    if status != 200:
        raise RuntimeError(f"launch answered {status}")

    def settled() -> bool:
        messages = rig.slack.messages(channel)
        return bool(messages) and "edited" in messages[0]

    await wait_until(settled, within=30, what=f"the launch in {channel}", poll=0.001)
    return (time.perf_counter() - t0) * 1000


async def launch_latency(
    rig: Rig, bot: Served, *, count: int, concurrency: int, via: str, tag: str
) -> dict[str, float | int]:
    """Milliseconds from sending a signed launch to the fake BK-JOB receiving its `execute_job`, `count` launches
    from `concurrency` senders (each sends its next once its last one reached BK-JOB), each in its own channel
    (Slack paces posts per channel: launches in one channel are a second apart whatever the bot does).

    `via` is "command" (`/bkjob run 100 --yes`) or "modal" (the run form submitted); each launch carries its own
    `version=` value, by which its `execute_job` is told from the others'.
    """
    arrived: dict[str, asyncio.Future[float]] = {}
    loop = asyncio.get_running_loop()

    def observe(request: BkRequest) -> None:
        if _canonical_execute(request.api):
            found = _TAG.search(json.dumps(request.body))
            future = arrived.get(found.group(0)) if found else None
            if future is not None and not future.done():
                future.set_result(time.perf_counter())

    edited: dict[str, asyncio.Future[float]] = {}

    def observe_slack(call: SlackCall, answer: Mapping[str, Any]) -> None:
        future = edited.get(str(call.args.get("channel"))) if call.method == "chat.update" else None
        if future is not None and not future.done() and answer.get("ok"):
            future.set_result(time.perf_counter())

    rig.bk.observe(request=observe)
    rig.slack.observe(call=observe_slack)
    latencies: list[float] = []
    to_edit: list[float] = []
    numbers = iter(range(count))

    async def sender() -> None:
        for n in numbers:
            key = f"lat-{tag}-{n}"
            arrived[key] = loop.create_future()
            channel = f"CL{tag}x{n}"
            edited[channel] = loop.create_future()
            if via == "modal":  # the form names its channel in signed metadata: one form per channel, untimed
                form = await _run_form(rig, bot, channel=channel)
                signed = rig.signed.submission(_with_version(form, key))
            else:
                signed = rig.signed.command(f"run {PLAN} --yes version={key}", channel=channel)
            t0 = time.perf_counter()
            status = await rig.post(bot, signed)
            if status != 200:
                raise RuntimeError(f"launch answered {status}")
            t1 = await asyncio.wait_for(arrived[key], timeout=60)
            latencies.append((t1 - t0) * 1000)
            # The launch message's first edit shows the instance: what the person sees (the outbox sends it).
            t2 = await asyncio.wait_for(edited[channel], timeout=60)
            to_edit.append((t2 - t0) * 1000)

    t0 = time.perf_counter()
    cpu0 = bot.cpu_s()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    cpu = bot.cpu_s() - cpu0
    latencies.sort()
    to_edit.sort()
    return {
        "via": via,
        "concurrency": concurrency,
        "launches": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1],
        "over_250_ms": sum(1 for v in latencies if v > 250),
        "over_1_s": sum(1 for v in latencies if v > 1000),
        "edit_p50_ms": percentile(to_edit, 50),
        "edit_p99_ms": percentile(to_edit, 99),
        "edit_max_ms": to_edit[-1],
        "launches_per_s": len(latencies) / wall,
        "bot_cpu_ms_per_launch": cpu * 1000 / len(latencies),
    }


_TAG = re.compile(r"lat-[A-Za-z0-9]+-\d+")


def _canonical_execute(api: str) -> bool:
    return api in ("execute_job", "execute_job_plan")


async def _run_form(rig: Rig, bot: Served, *, channel: str) -> Mapping[str, Any]:
    """`/bkjob run 100` in `channel`, and the modal the bot filled for it: told from other senders' modals by the
    channel in its metadata (readable, only signed), so that senders side by side never submit each other's."""
    status = await rig.post(bot, rig.signed.command(f"run {PLAN}", channel=channel))
    if status != 200:
        raise RuntimeError(f"run command answered {status}")

    def filled() -> Mapping[str, Any] | None:
        for view in reversed(rig.slack.views()):
            body = str(view.get("private_metadata") or "").rpartition(".")[0]
            try:
                meta = json.loads(base64.urlsafe_b64decode(body.encode()))
            except ValueError:
                continue
            if meta.get("c") == channel and any(b.get("type") == "input" for b in view.get("blocks", [])):
                return view
        return None

    await wait_until(lambda: filled() is not None, within=60, what=f"the run form in {channel}", poll=0.005)
    view = filled()
    assert view is not None
    return view


def _with_version(view: Mapping[str, Any], value: str) -> dict[str, Any]:
    """The filled run form with its `version` input set to `value`."""
    out = copy.deepcopy(dict(view))
    for block in out.get("blocks", []):
        element = block.get("element") or {}
        if block.get("type") == "input" and "version" in json.dumps(block.get("label", "")) + str(
            block.get("block_id")
        ):
            element["initial_value"] = value
    return out


async def launch_latencies(*, count: int, levels: tuple[int, ...] = (1, 10)) -> dict[str, Any]:
    """`launch_latency` by slash command and by the run form at each concurrency, in one bot; beside each, the
    baseline server's acks of as many signed run commands at the same concurrency (the machine's own noise: a bare
    aiohttp server that verifies the signature and answers 200)."""
    out: dict[str, Any] = {"count": count, "rows": []}
    async with rig() as r, r.baseline() as baseline:
        bot = r.bot()
        await bot.start()
        try:
            await launch_once(r, bot, channel="CLWARM")  # caches (the plan, the sender's profile) filled once
            for via in ("command", "modal"):
                for level in levels:
                    row = await launch_latency(r, bot, count=count, concurrency=level, via=via, tag=f"{via[0]}{level}")
                    theirs = await send_all(
                        f"{baseline.url}/slack/events",
                        [r.signed.command(f"run {PLAN} --yes", channel="CLBASE") for _ in range(count)],
                        concurrency=level,
                    )
                    row["baseline_ack_p99_ms"] = theirs.p99_ms
                    row["loadavg"] = list(os.getloadavg())
                    out["rows"].append(row)
            out["rss_mib"] = bot.rss_mib()
        finally:
            await bot.stop()
    return out
