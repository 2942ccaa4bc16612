"""Benchmark 8: end to end, as a person feels it, with Slack's Web API and BK-JOB each answering in 50 ms.

The fakes answer at once on loopback; a delaying proxy in front of each (`Delayed`) makes every call the bot makes
take `latency` more, as a real Slack and a real BK-JOB across a network do. Three figures:

- slash command to the filled form: `/bkjob run 100` sent, until `views.update` with the plan's variables arrives
  at Slack (target p99 < 300 ms);
- callback to the thread reply: BK-JOB's callback sent, until the result reply is in the launch's thread, with no
  rate limit in the way (target p99 < 300 ms);
- a burst of 1,000 results over 100 channels through Slack's one post per second per channel: until every result
  is posted, against the ideal (the busiest channel's posts back to back; target within 10%).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from bench.launching import launch_many, launch_once
from bench.load import percentile
from bench.process import Served
from bench.rig import PLAN, Rig, rig, wait_until

__all__ = ["Delayed", "end_to_end"]

_SLOT_S = 1.1  # Slack's one post per second per channel, and a little
_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})


class Delayed:
    """A reverse proxy on 127.0.0.1 that waits `latency` seconds before passing each request on to `origin`."""

    def __init__(self, origin: str, *, latency: float) -> None:
        self.origin = origin.rstrip("/")
        self.latency = latency
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Delayed:
        self._http = aiohttp.ClientSession()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        await asyncio.sleep(self.latency)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._http.request(
            request.method, f"{self.origin}{request.path_qs}", data=body, headers=headers, allow_redirects=False
        ) as resp:
            payload = await resp.read()
            kept = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
            return web.Response(status=resp.status, body=payload, headers=kept)


@asynccontextmanager
async def _delayed_bot(r: Rig, latency: float, **overrides: str) -> AsyncIterator[Served]:
    async with (
        Delayed(r.slack.origin, latency=latency) as slack,
        Delayed(_origin(r.bk.base_url), latency=latency) as bk,
    ):
        bot = r.bot(
            SLACK_API_URL=r.slack.base_url.replace(r.slack.origin, slack.url),
            BK_API_URL=r.bk.base_url.replace(_origin(r.bk.base_url), bk.url),
            **overrides,
        )
        async with bot:
            yield bot


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


async def end_to_end(*, latency: float, samples: int, burst: int, channels: int) -> dict[str, Any]:
    out: dict[str, Any] = {"latency_ms": latency * 1000}
    async with rig() as r, _delayed_bot(r, latency) as bot:
        out["command_to_form_ms"] = _stats([await _command_to_form(r, bot, i) for i in range(samples)])
        out["callback_to_reply_ms"] = _stats([await _callback_to_reply(r, bot, i) for i in range(samples)])
    async with rig() as r, _delayed_bot(r, latency, SLACK_CHANNEL_INTERVAL="1") as bot:
        out["burst"] = await _burst(r, bot, results=burst, channels=channels)
    return out


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "samples": len(ordered),
        "p50": statistics.median(ordered),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
    }


async def _command_to_form(r: Rig, bot: Served, i: int) -> float:
    before = len(r.slack.calls("views.update"))
    t0 = time.perf_counter()
    status = await r.post(bot, r.signed.command(f"run {PLAN}", channel=f"CE2EF{i:03d}"))
    if status != 200:
        raise RuntimeError(f"/bkjob run answered {status}")
    await wait_until(lambda: len(r.slack.calls("views.update")) > before, within=30, what="the form", poll=0.001)
    return (time.perf_counter() - t0) * 1000


async def _callback_to_reply(r: Rig, bot: Served, i: int) -> float:
    channel = f"CE2EC{i:03d}"
    await launch_once(r, bot, channel=channel)
    # The launch message took the channel's slot: wait it out, so that no rate limit applies to the reply.
    await asyncio.sleep(_SLOT_S)
    parent = r.slack.messages(channel)[0]
    instance = max(r.bk.instances)
    t0 = time.perf_counter()
    sending = asyncio.ensure_future(r.bk.finish(instance))
    await wait_until(lambda: bool(r.slack.thread(channel, parent["ts"])), within=30, what="the reply", poll=0.001)
    elapsed = (time.perf_counter() - t0) * 1000
    await sending
    return elapsed


async def _burst(r: Rig, bot: Served, *, results: int, channels: int) -> dict[str, Any]:
    """As benchmark 2, at Slack's real limit and across a network: launches first (limit off), then every result."""
    names = [f"CE2EB{i:03d}" for i in range(channels)]
    await launch_many(r, bot, count=results, channels=names)
    # Each channel's last launch message took its slot: wait it out, so that the figure is the results' own (the
    # ideal counts from the first result's post).
    await asyncio.sleep(_SLOT_S)
    parents = {m["ts"]: ch for ch in names for m in r.slack.messages(ch) if "thread_ts" not in m}
    ideal = (max(Counter(parents.values()).values()) - 1) / 1.0
    r.slack.channel_rate = 1.0
    r.slack.throttled = 0

    def replied() -> int:
        return sum(1 for ch in names for m in r.slack.messages(ch) if m.get("thread_ts") in parents)

    gate = asyncio.Semaphore(20)

    async def finish(instance_id: int) -> None:
        async with gate:
            await r.bk.finish(instance_id)

    cpu0, rig_cpu0 = bot.cpu_s(), time.process_time()
    t0 = time.perf_counter()
    timeline: list[tuple[float, int]] = []

    def done() -> bool:
        count = replied()
        if not timeline or timeline[-1][1] != count:
            timeline.append((time.perf_counter() - t0, count))
        return count >= results

    async def send_callbacks() -> float:
        await asyncio.gather(*(finish(i) for i in list(r.bk.instances)))
        return time.perf_counter() - t0

    sending = asyncio.ensure_future(send_callbacks())
    elapsed = await wait_until(done, within=ideal * 3 + 60, what="every result", poll=0.02)
    callbacks_s = await sending
    return {
        "results": results,
        "channels": channels,
        "elapsed_s": elapsed,
        "ideal_s": ideal,
        "vs_ideal": elapsed / ideal if ideal else float("nan"),
        "throttled_429": r.slack.throttled,
        "callbacks_sent_s": callbacks_s,
        "bot_cpu_s": bot.cpu_s() - cpu0,
        # The fakes, the proxies and the load generator share this process: when it is busy, so is "Slack".
        "rig_cpu_s": time.process_time() - rig_cpu0,
        # Results posted by each whole second: where the time went (a slow start is the callbacks' side).
        "posted_by_second": [max((n for t, n in timeline if t <= s), default=0) for s in range(1, int(elapsed) + 2)],
    }
