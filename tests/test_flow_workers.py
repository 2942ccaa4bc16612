"""Background workers never stop (issue 12, item 8): a database locked mid-delivery delays results, loses none."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot.app import BACKGROUND
from bot.core.background import Heartbeats, keep_running
from tests.conftest import CHANNEL, PLAN, Bot
from tests.fakes import FakeBkJob, FakeSlack, SlackCall

HOLD_S = 10.0
"""How long the test holds SQLite's write lock: twice the bot's busy timeout, so its writes fail, not just wait."""
LAUNCHES = 6


class WriteLock:
    """SQLite's write lock, taken from another connection the moment Slack accepts a result (so the bot cannot
    record it as sent) once `armed`."""

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self.armed = False
        self.taken = asyncio.Event()
        self._conn: sqlite3.Connection | None = None

    def on_call(self, call: SlackCall, answer: dict[str, Any]) -> None:
        if self.armed and not self.taken.is_set() and call.method == "chat.postMessage" and call.args.get("thread_ts"):
            self._conn = sqlite3.connect(self._db_path, timeout=5, isolation_level=None)
            self._conn.execute("BEGIN IMMEDIATE")
            self.taken.set()

    def release(self) -> None:
        if self._conn is not None:
            self._conn.execute("ROLLBACK")
            self._conn.close()
            self._conn = None


async def healthz(bot: Bot) -> tuple[int, dict[str, Any]]:
    assert bot.http is not None
    async with bot.http.get(f"{bot.url}/healthz") as resp:
        return resp.status, await resp.json()


async def test_sqlite_locked_for_ten_seconds_mid_delivery_delays_but_loses_no_result(
    slack: FakeSlack, bk: FakeBkJob, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db_path = tmp_path / "locked.sqlite3"
    # Paced posts keep results queued while the lock is taken; a short lease makes /healthz notice the stall.
    bot = Bot(slack=slack, bk=bk, db_path=db_path, SLACK_CHANNEL_INTERVAL="0.5", OUTBOX_LEASE="2")
    lock = WriteLock(db_path)
    slack.observe(call=lock.on_call)
    await bot.start()
    try:
        for _ in range(LAUNCHES):
            await bot.command(f"run {PLAN} --yes")
        await bot.bk.wait_for_request("execute_job", count=LAUNCHES)
        await bot.idle()
        assert (await healthz(bot))[0] == 200

        await asyncio.gather(*(bot.bk.finish(i, status=3) for i in list(bot.bk.instances)))
        await bot.runner.app[BACKGROUND].idle()  # type: ignore[union-attr]
        lock.armed = True  # every result is recorded; the next one Slack accepts cannot be recorded as sent
        with caplog.at_level(logging.ERROR, logger="bot"):
            await asyncio.wait_for(lock.taken.wait(), timeout=30)
            try:
                await asyncio.sleep(HOLD_S)  # the scenario itself: the lock is held this long
                status, body = await healthz(bot)
            finally:
                lock.release()
            assert status == 503 and "outbox" in body["stalled_workers"]
            await bot.slack.wait_for_call(
                "chat.postMessage", lambda c: c.args.get("thread_ts") is not None, count=LAUNCHES, timeout=60
            )
            await bot.idle()
        assert any(r.levelno == logging.ERROR and r.name == "bot.slack.outbox" for r in caplog.records)
        launch_messages = [m for m in bot.slack.messages(CHANNEL) if not m.get("thread_ts")]
        assert len(launch_messages) == LAUNCHES
        for message in launch_messages:
            replies = bot.slack.thread(CHANNEL, message["ts"])
            assert len(replies) == 1 and "Succeeded" in replies[0]["text"]  # delivered, and only once
        assert (await healthz(bot))[0] == 200
    finally:
        lock.release()
        await bot.close()


async def test_a_worker_round_that_raises_is_logged_backed_off_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    """Any exception, not only the expected ones: the loop logs it at ERROR and goes on."""
    heartbeats = Heartbeats()
    rounds = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal rounds
        rounds += 1
        if rounds <= 2:
            raise KeyError("a bug nobody foresaw")
        done.set()

    beat = heartbeats.expect("flaky", within=60)
    with caplog.at_level(logging.ERROR, logger="bot.core.background"):
        task = asyncio.create_task(keep_running("flaky", flaky, interval=0.01, beat=beat))
        try:
            await asyncio.wait_for(done.wait(), timeout=60)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "KeyError" in str(errors[0].exc_info)
    assert heartbeats.stale() == {}
