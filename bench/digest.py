"""Benchmark 9: the failure digest of a step that failed on many hosts, against one that failed on few.

A finished job whose only step failed on `large` hosts (ten exit codes, a few log lines each) is reported by
its callback: the time from the callback to the reply in the launch's thread, the bot's CPU seconds for it, the
BK-JOB calls it made (how many, and the bytes each way) and the size of the Slack message. The same job on
`small` hosts is measured alternately with it in the same bot, so the figure that means something is the ratio
of the cost per host (large / small): 1 is linear, well under 1 is a cost that does not grow with the hosts.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any, Literal

import aiohttp

from bench.process import Served
from bench.rig import BIZ, Rig, rig, wait_until
from bot.fakes.bkjob import BkRequest, HostOutcome

__all__ = ["failure_digest", "failed_hosts"]

_PLAN = 300
_CODES = 10


def failed_hosts(count: int) -> list[dict[str, Any]]:
    return [
        {"bk_host_id": 1000 + i, "bk_cloud_id": 0, "ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"}
        for i in range(count)
    ]


def _outcomes(hosts: list[dict[str, Any]]) -> dict[str, HostOutcome]:
    """Ten reasons (exit codes 1-10) spread over the hosts; each host printed a few lines, the last says why."""
    out = {}
    for i, host in enumerate(hosts):
        code = 1 + i % _CODES
        lines = [f"[2026-11-29 10:00:{s:02d}] step {s}: fetching {host['ip']} artefact part {s}" for s in range(6)]
        lines.append(f"error: deploy failed on {host['ip']} with exit code {code}")
        out[host["ip"]] = HostOutcome(status=104, exit_code=code, log="\n".join(lines) + "\n")
    return out


async def failure_digest(
    *, sizes: tuple[int, int] = (50, 5000), samples: int = 5, versions: tuple[Literal["v2", "v3"], ...] = ("v2", "v3")
) -> list[dict[str, Any]]:
    return [await _digest(version, sizes=sizes, samples=samples) for version in versions]


async def _digest(version: Literal["v2", "v3"], *, sizes: tuple[int, int], samples: int) -> dict[str, Any]:
    small, large = sizes
    async with rig(api_version=version) as r:
        for size in sizes:
            r.bk.add_plan(
                BIZ, _PLAN + size, f"Roll out on {size}", steps=[{"name": "deploy", "ip_list": failed_hosts(size)}]
            )
        # No progress reads while a digest is measured: only the callback's own work is counted.
        bot = r.bot(PROGRESS_INTERVAL="3600")
        await bot.start()
        try:
            runs: dict[int, list[dict[str, Any]]] = {small: [], large: []}
            for i in range(samples):
                for size in sizes:  # alternately, so that the machine's load falls on both alike
                    runs[size].append(await _one(r, bot, size=size, channel=f"CDG{size}x{i}"))
            rss = bot.rss_mib()
        finally:
            await bot.stop()
    out: dict[str, Any] = {"api_version": version, "samples": samples, "rss_after_mib": rss}
    for size, rows in runs.items():
        out[f"hosts_{size}"] = {
            "hosts": size,
            "reply_ms_median": statistics.median(row["reply_ms"] for row in rows),
            "reply_ms_max": max(row["reply_ms"] for row in rows),
            # /proc counts CPU in 10 ms ticks: the mean of the samples resolves a small digest better than a median.
            "cpu_s_mean": statistics.mean(row["cpu_s"] for row in rows),
            **{
                k: rows[0][k]
                for k in ("bk_calls", "bk_request_bytes", "bk_response_bytes", "slack_bytes", "slack_text")
            },
            "bk_apis": rows[0]["bk_apis"],
            "sections": rows[0]["sections"],
        }
    s, lg = out[f"hosts_{small}"], out[f"hosts_{large}"]
    per_host = large / small
    out["time_ratio"] = _ratio(lg["reply_ms_median"], s["reply_ms_median"])
    out["cpu_ratio"] = _ratio(lg["cpu_s_mean"], s["cpu_s_mean"])
    out["per_host_time_ratio"] = out["time_ratio"] / per_host
    out["per_host_cpu_ratio"] = out["cpu_ratio"] / per_host
    return out


def _ratio(a: float, b: float) -> float:
    """NaN where the small figure is below what can be measured (a tiny run's CPU under one 10 ms tick)."""
    return a / b if b > 0 else float("nan")


async def _one(r: Rig, bot: Served, *, size: int, channel: str) -> dict[str, Any]:
    """Launch on `size` hosts, let it fail on all of them, and time its callback to the digest in the thread."""
    before = len(r.bk.instances)
    status = await r.post(bot, r.signed.command(f"run {_PLAN + size} --yes", channel=channel))
    if status != 200:
        raise RuntimeError(f"launch answered {status}")
    await wait_until(lambda: len(r.bk.instances) > before, within=30, what="the launch")
    instance_id = next(reversed(r.bk.instances))

    def settled() -> bool:
        messages = r.slack.messages(channel)
        return bool(messages) and "edited" in messages[0]

    await wait_until(settled, within=30, what=f"the launch message in {channel}")
    posted = time.time()
    ts = r.slack.messages(channel)[0]["ts"]
    r.bk.set_host_outcomes(instance_id, 0, _outcomes(failed_hosts(size)))
    await bot.idle()
    # A job runs longer than Slack's one post a second per channel: the reply never waits for the launch
    # message's slot in a real thread, so it must not here.
    await asyncio.sleep(max(0.0, posted + 1.2 - time.time()))
    calls_before = len(r.bk.requests())
    cpu0 = bot.cpu_s()
    t0 = time.perf_counter()
    await r.bk.finish(instance_id, status=4, step_statuses=[4])

    await wait_until(lambda: bool(r.slack.thread(channel, ts)), within=120, what=f"the digest in {channel}", poll=0.002)
    reply_ms = (time.perf_counter() - t0) * 1000
    cpu = bot.cpu_s() - cpu0
    (reply,) = r.slack.thread(channel, ts)
    calls = r.bk.requests()[calls_before:]
    sizes = [await _response_bytes(r, c) for c in calls]
    blocks = reply.get("blocks") or []
    return {
        "reply_ms": reply_ms,
        "cpu_s": cpu,
        "bk_calls": len(calls),
        "bk_apis": [c.api for c in calls],
        "bk_request_bytes": sum(len(json.dumps(c.body)) for c in calls),
        "bk_response_bytes": sum(sizes),
        "slack_bytes": len(json.dumps(blocks)) + len(reply.get("text") or ""),
        "slack_text": len(reply.get("text") or ""),
        "sections": sum(1 for b in blocks if b.get("type") == "section"),
    }


async def _response_bytes(r: Rig, call: BkRequest) -> int:
    """The answer's size, asked again the same way (the fake's answers to reads do not change)."""
    headers = {
        k: v for k, v in call.headers.items() if k.lower() not in ("host", "content-length", "transfer-encoding")
    }
    root = r.bk.base_url.split("/", 3)
    url = f"{root[0]}//{root[2]}{call.path}"
    async with aiohttp.ClientSession() as http:
        if call.method == "GET":
            async with http.get(url, params=call.body, headers=headers) as resp:
                return len(await resp.read())
        async with http.request(call.method, url, data=json.dumps(call.body), headers=headers) as resp:
            return len(await resp.read())
