"""Benchmark 2: results delivered through a Slack that allows one post per second per channel (429 otherwise)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from bench.launching import launch_many
from bench.rig import rig, wait_until

__all__ = ["result_throughput"]

_SETTLE_S = 2.0  # after the last result, how long to keep watching for a duplicate


async def result_throughput(*, launches: int, channels: int, rate: float) -> dict[str, Any]:
    """`launches` over `channels`, then one completion callback each, with Slack limited to `rate` posts/s/channel.

    The ideal is the physical limit: the busiest channel's posts back to back at the allowed rate.
    """
    names = [f"CTHR{i:02d}" for i in range(channels)]
    async with rig() as r, r.bot(SLACK_CHANNEL_INTERVAL=f"{1 / rate:g}") as bot:
        # The launch messages go out before the limit is switched on: the figure is about results.
        launch_rate = await launch_many(r, bot, count=launches, channels=names)
        parents = {m["ts"]: ch for ch in names for m in r.slack.messages(ch) if "thread_ts" not in m}
        per_channel = Counter(parents.values())
        r.slack.channel_rate = rate
        r.slack.throttled = 0

        def replies() -> list[tuple[str, dict[str, Any]]]:
            return [(ch, m) for ch in names for m in r.slack.messages(ch) if m.get("thread_ts") in parents]

        ideal = (max(per_channel.values()) - 1) / rate
        callbacks = asyncio.Semaphore(20)

        async def finish(instance_id: int) -> None:
            async with callbacks:
                await r.bk.finish(instance_id)

        t0 = time.perf_counter()

        async def send_callbacks() -> float:
            await asyncio.gather(*(finish(i) for i in list(r.bk.instances)))
            return time.perf_counter() - t0

        sending = asyncio.ensure_future(send_callbacks())
        elapsed = await wait_until(
            lambda: len(replies()) >= launches, within=ideal * 3 + 60, what="every result", poll=0.01
        )
        callbacks_s = await sending
        await asyncio.sleep(_SETTLE_S)
        got = replies()
        per_thread = Counter(m["thread_ts"] for _, m in got)
        order_kept = all(
            _index(r.slack.messages(ch), ts) < _index(r.slack.messages(ch), m["ts"])
            for ch, m in got
            for ts in [m["thread_ts"]]
        )
        return {
            "rate_per_channel": rate,
            "channel_interval_s": 1 / rate,
            "launches": launches,
            "channels": channels,
            "launches_per_s": launch_rate,
            "callbacks_sent_s": callbacks_s,
            "delivered": len(per_thread),
            "duplicated": sum(n - 1 for n in per_thread.values()),
            "order_kept_per_thread": order_kept,
            "throttled_429": r.slack.throttled,
            "elapsed_s": elapsed,
            "ideal_s": ideal,
            "vs_ideal": elapsed / ideal if ideal > 0 else float("nan"),
        }


def _index(messages: list[dict[str, Any]], ts: str) -> int:
    return next(i for i, m in enumerate(messages) if m["ts"] == ts)
