"""Launching many plans over HTTP (`/bkjob run 100 --yes`), the way people do, as fast as the bot takes them."""

from __future__ import annotations

import time
from collections.abc import Sequence

from bench.load import send_all
from bench.process import Served
from bench.rig import PLAN, Rig, wait_until

__all__ = ["launch_many", "launch_once"]

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
