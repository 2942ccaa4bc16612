"""Slack's Retry-After is obeyed to the end, and launch messages take their turn in a busy channel — over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.blocks.text import notice
from bot.slack.notifier import Notifier
from bot.slack.outbox import Outbox
from bot.store import open_store
from tests.conftest import BOT_TOKEN, CHANNEL, PLAN, USER, Bot
from tests.fakes import FakeBkJob, FakeSlack


@pytest.fixture
async def outbox(slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Outbox]:
    """The real outbox and notifier over HTTP, with a client whose own 429 retries are used up at once (as
    after slack_sdk's five): what is left is the outbox's job."""
    store = open_store(f"sqlite:///{tmp_path / 'outbox.sqlite3'}")
    await store.open()
    client = AsyncWebClient(
        token=BOT_TOKEN, base_url=slack.base_url, retry_handlers=[AsyncConnectionErrorRetryHandler()]
    )
    box = Outbox(store=store, notifier=Notifier(client=client), web_root=None, channel_interval=0)
    worker = asyncio.create_task(box.run())
    try:
        yield box
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        if client.session is not None:
            await client.session.close()
        await store.close()


async def test_retry_after_holds_the_channel_and_the_retry(slack: FakeSlack, outbox: Outbox) -> None:
    slack.rate_limit_next("chat.postMessage", retry_after=2)
    await outbox.post(CHANNEL, notice("first"))
    await outbox.post(CHANNEL, notice("second"), thread_ts="1.2")  # another thread: not ordered behind the first
    await slack.wait_for_call("chat.postMessage", count=3, timeout=60)
    refused, *accepted = slack.calls("chat.postMessage")
    assert slack.status_of(refused) == 429
    assert sorted(c.args["text"] for c in accepted) == ["first", "second"]
    # Neither the retry nor the channel's next post went out before Slack's Retry-After had passed.
    assert all(call.at - refused.at >= 2.0 for call in accepted), [c.at - refused.at for c in accepted]


@pytest.fixture
async def paced(slack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[Bot]:
    """Slack's one post per second per channel, and a bot pacing its posts six seconds apart."""
    slack.channel_rate = 1.0
    bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "paced.sqlite3", SLACK_CHANNEL_INTERVAL="6")
    await bot.start()
    try:
        yield bot
    finally:
        await bot.close()


async def test_a_launch_in_a_busy_channel_waits_its_turn_and_the_person_is_told(paced: Bot) -> None:
    await paced.command(f"run {PLAN} --yes version=1")
    await paced.bk.wait_for_request("execute_job")
    await paced.command(f"run {PLAN} --yes version=2")
    (told,) = await paced.slack.wait_for_call("chat.postEphemeral")
    assert told.args["user"] == USER and "queued" in told.args["text"]
    await paced.bk.wait_for_request("execute_job", count=2, timeout=60)
    await paced.idle()
    launches = [m for m in paced.slack.messages(CHANNEL) if "thread_ts" not in m]
    assert len(launches) == 2
    assert paced.slack.throttled == 0  # paced, never refused
    assert paced.slack.responses() == []  # nothing refused ("ratelimited") to the person
