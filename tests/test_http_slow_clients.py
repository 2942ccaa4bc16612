"""Slow clients are cut off (issue 12, item 9): tricklers neither block a real Slack request nor flood the log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.app import create_app
from bot.web.connections import GuardedSite
from tests.conftest import Bot
from tests.fakes import FakeBkJob, FakeSlack

TRICKLERS = 1000
LIMIT = 200


@pytest.fixture
async def guarded(slack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[tuple[Bot, GuardedSite]]:
    """The real app behind the site `python -m bot` serves it with, at a low connection limit."""
    bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "slow.sqlite3", HEADER_TIMEOUT="2", REQUEST_TIMEOUT="1")
    bot.runner = web.AppRunner(create_app(bot.settings()), shutdown_timeout=1.0)
    await bot.runner.setup()
    site = GuardedSite(bot.runner, "127.0.0.1", bot.port, limit=LIMIT)
    await site.start()
    bot.http = aiohttp.ClientSession()
    try:
        yield bot, site
    finally:
        await bot.close()


class Started:
    """Counts tricklers that have connected and begun their head; set once all have."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0
        self.all = asyncio.Event()

    def one(self) -> None:
        self.count += 1
        if self.count == self.total:
            self.all.set()


async def trickle(port: int, stop: asyncio.Event, started: Started) -> None:
    """A request head sent one header line at a time, never finished."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        started.one()
        return
    with contextlib.suppress(OSError):
        try:
            writer.write(b"POST /slack/events HTTP/1.1\r\nHost: bot\r\n")
            started.one()
            while not stop.is_set() and not reader.at_eof():
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
        finally:
            writer.close()


async def raw(port: int, head: bytes) -> bytes:
    """The status line of the answer to `head` (the connection may linger after it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()


async def test_a_thousand_trickling_connections_do_not_block_a_slack_request(
    guarded: tuple[Bot, GuardedSite], caplog: pytest.LogCaptureFixture
) -> None:
    bot, site = guarded
    stop = asyncio.Event()
    started = Started(TRICKLERS)
    with caplog.at_level(logging.INFO):
        tricklers = [asyncio.create_task(trickle(bot.port, stop, started)) for _ in range(TRICKLERS)]
        try:
            await asyncio.wait_for(started.all.wait(), timeout=60)
            assert "Usage" in await bot.answered("help")
            assert site.guard is not None and site.guard.open_connections <= LIMIT
            assert site.guard.evicted > 0
        finally:
            stop.set()
            await asyncio.gather(*tricklers)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert tracebacks == []
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) <= 5


async def test_a_request_head_that_never_ends_is_cut_off(guarded: tuple[Bot, GuardedSite]) -> None:
    bot, _ = guarded
    reader, writer = await asyncio.open_connection("127.0.0.1", bot.port)
    writer.write(b"POST /bkjob/callback/x HTTP/1.1\r\nHost: bot\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), timeout=30) == b""  # closed by the bot (HEADER_TIMEOUT=2)
    writer.close()


async def test_a_body_that_never_arrives_is_answered_408(guarded: tuple[Bot, GuardedSite]) -> None:
    bot, _ = guarded
    ts = str(int(time.time()))
    head = (
        f"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: 1000\r\nX-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: v0={'0' * 64}\r\n\r\n"
        "token=abc"
    ).encode()
    answer = await asyncio.wait_for(raw(bot.port, head), timeout=30)
    assert answer.startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize(
    "headers",
    [
        b"",
        b"X-Slack-Request-Timestamp: 12\r\nX-Slack-Signature: v0=" + b"0" * 64 + b"\r\n",
        b"X-Slack-Signature: x\r\n",
    ],
    ids=["none", "stale", "malformed"],
)
async def test_no_plausible_signature_headers_is_401_before_the_body_is_read(
    guarded: tuple[Bot, GuardedSite], headers: bytes
) -> None:
    bot, _ = guarded
    head = b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Length: 100000\r\n" + headers + b"\r\n"
    answer = await asyncio.wait_for(raw(bot.port, head), timeout=30)  # no body sent: answered anyway
    assert answer.startswith(b"HTTP/1.1 401")


async def test_an_over_long_request_line_is_a_quiet_400(
    guarded: tuple[Bot, GuardedSite], caplog: pytest.LogCaptureFixture
) -> None:
    bot, _ = guarded
    with caplog.at_level(logging.INFO):
        for _ in range(20):
            answer = await raw(bot.port, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: bot\r\n\r\n")
            assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
    assert [r for r in caplog.records if r.exc_info] == []
    assert len([r for r in caplog.records if "malformed HTTP requests" in r.getMessage()]) <= 1
