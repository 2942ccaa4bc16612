"""Benchmark 7: acks in Socket Mode beside acks over HTTP, the same commands to two bot processes side by side.

In Socket Mode Slack delivers an envelope over the bot's WebSocket and waits for `{"envelope_id": ...}` back; over
HTTP it POSTs a signed request and waits for the 200. Latency is from Slack sending to Slack holding the ack: the
fake Socket Mode server's envelope to its ack, the load generator's POST to its answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qsl

from bench.load import Load, percentile, send_all
from bench.process import Served, free_port
from bench.rig import PLAN, Rig, rig, wait_until
from bot.fakes.socket_mode import FakeSocketMode

__all__ = ["socket_acks"]

_APP_TOKEN = "xapp-1-A0BKJOB-1-bench"
_KINDS = {"help": "help", "run": f"run {PLAN}"}


async def socket_acks(*, requests: int, levels: tuple[int, ...]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with rig() as r, FakeSocketMode(slack=r.slack, app_token=_APP_TOKEN, ack_timeout=30) as fake:
        port = free_port()
        socket_bot = Served.bot(
            {**_settings(r), "SLACK_APP_TOKEN": _APP_TOKEN, "CALLBACK_URL": f"http://127.0.0.1:{port}"},
            port=port,
            cwd=r.workdir,
            log=r.workdir / "socket-bot.log",
        )
        async with socket_bot, r.bot(db="http.sqlite3") as http_bot:
            await fake.wait_connections(1, timeout=30)
            for text in _KINDS.values():  # warm up both
                await _over_socket(r, fake, text, requests=10, concurrency=1)
                await send_all(f"{http_bot.url}/slack/events", [_signed(r, text) for _ in range(10)], concurrency=1)
            for level in levels:
                for kind, text in _KINDS.items():
                    done = _done(r, kind)
                    start = done()
                    socket = await _over_socket(r, fake, text, requests=requests, concurrency=level)
                    await _drained(done, start + requests, kind)
                    start = done()
                    http = await send_all(
                        f"{http_bot.url}/slack/events", [_signed(r, text) for _ in range(requests)], concurrency=level
                    )
                    await _drained(done, start + requests, kind)
                    rows.append(
                        {
                            "kind": kind,
                            "concurrency": level,
                            "socket": asdict(socket),
                            "http": asdict(http),
                            "p50_ratio": socket.p50_ms / http.p50_ms,
                            "p99_ratio": socket.p99_ms / http.p99_ms,
                        }
                    )
    return rows


def _settings(r: Rig) -> dict[str, str]:
    """The HTTP bot's settings, less what Socket Mode does without (signing secret, public URL)."""
    settings = dict(r.bot(db="socket.sqlite3").env)
    for name in ("SLACK_SIGNING_SECRET", "PUBLIC_URL", "HOST", "PORT"):
        settings.pop(name, None)
    return settings


def _signed(r: Rig, text: str) -> tuple[bytes, dict[str, str]]:
    return r.signed.command(text, channel="CSOCK")


def _command(r: Rig, text: str) -> dict[str, str]:
    """The same slash command as a Socket Mode envelope's payload (the form fields, unencoded)."""
    body, _ = _signed(r, text)
    return dict(parse_qsl(body.decode()))


def _done(r: Rig, kind: str) -> Callable[[], int]:
    """What counts a command's follow-up work done: the filled form; `/bkjob help` has none (answered in the ack)."""
    if kind == "help":
        return lambda: 0
    return lambda: len(r.slack.calls("views.update"))


async def _drained(done: Callable[[], int], target: int, kind: str) -> None:
    if kind != "help":
        await wait_until(lambda: done() >= target, within=300, what=f"{kind} work")


async def _over_socket(r: Rig, fake: FakeSocketMode, text: str, *, requests: int, concurrency: int) -> Load:
    """Closed loop, as send_all: each sender delivers the next envelope once its previous one is acked."""
    latencies: list[float] = []
    remaining = iter(range(requests))

    async def sender() -> None:
        for _ in remaining:
            t0 = time.perf_counter()
            envelope = fake.deliver("slash_commands", _command(r, text), accepts_response_payload=True)
            await envelope.wait_acked(timeout=30)
            latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    latencies.sort()
    return Load(
        requests=len(latencies),
        concurrency=concurrency,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1],
        rps=len(latencies) / wall,
        statuses={200: len(latencies)},
    )
