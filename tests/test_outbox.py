"""The outbox's lanes over the real store and a real HTTP Slack: a channel never waits for another channel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.blocks.text import Message, notice
from bot.slack.notifier import Notifier
from bot.slack.outbox import Outbox
from bot.store import SqliteStore, Store
from tests.conftest import BOT_TOKEN
from tests.fakes import FakeSlack


class SlowChannels(Notifier):
    """The real notifier, except that posts to a held channel wait until it is let go (Slack slow for them)."""

    def __init__(self, *, client: AsyncWebClient) -> None:
        super().__init__(client=client)
        self.held: dict[str, asyncio.Event] = {}
        self.waiting = asyncio.Event()  # a post is waiting in a held channel

    async def post(self, channel: str, message: Message, *, thread_ts: str | None = None) -> str:
        if (gate := self.held.get(channel)) is not None:
            self.waiting.set()
            await gate.wait()
        return await super().post(channel, message, thread_ts=thread_ts)


@pytest.fixture
async def notifier(slack: FakeSlack) -> AsyncIterator[SlowChannels]:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.base_url)
    try:
        yield SlowChannels(client=client)
    finally:
        if client.session is not None:
            await client.session.close()


async def test_a_channel_posts_its_next_messages_while_another_channel_post_hangs(
    slack: FakeSlack, store: Store, notifier: SlowChannels
) -> None:
    """Paced posts are leased one per channel at a time; a batch used to wait for its slowest channel before the
    next was leased, so one slow post held back every other channel's next message."""
    slow = asyncio.Event()
    notifier.held["C0SLOW"] = slow
    box = Outbox(store=store, notifier=notifier, web_root=None, channel_interval=0.01)
    worker = asyncio.create_task(box.run())
    try:
        await box.post("C0SLOW", notice("slow"))
        await asyncio.wait_for(notifier.waiting.wait(), timeout=60)  # an overall bound, not a duration under test
        for i in range(3):
            await box.post("C0FAST", notice(f"fast {i}"), thread_ts=f"1.{i}")
        await slack.wait_for_call("chat.postMessage", lambda c: c.args["channel"] == "C0FAST", count=3, timeout=60)
        assert [m["text"] for m in slack.messages("C0FAST")] == ["fast 0", "fast 1", "fast 2"]
        assert slack.messages("C0SLOW") == []  # still in hand, not given up
        slow.set()
        await asyncio.wait_for(box.flush(), timeout=60)
        assert [m["text"] for m in slack.messages("C0SLOW")] == ["slow"]  # once
        assert await store.outbox_messages(state="pending") == []
    finally:
        box.stop()
        slow.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(worker, timeout=60)


async def test_a_thread_keeps_its_order_when_its_channel_next_post_is_leased_early(
    slack: FakeSlack, store: Store, notifier: SlowChannels
) -> None:
    """A lane leases its next post while the one in hand goes out: never the next message of the same thread."""
    held = asyncio.Event()
    notifier.held["C0OPS"] = held
    box = Outbox(store=store, notifier=notifier, web_root=None, channel_interval=0.01)
    worker = asyncio.create_task(box.run())
    try:
        await box.post("C0OPS", notice("first"), thread_ts="1.0")
        await asyncio.wait_for(notifier.waiting.wait(), timeout=60)
        await box.post("C0OPS", notice("second"), thread_ts="1.0")
        await box.post("C0OPS", notice("other thread"), thread_ts="2.0")
        held.set()
        await asyncio.wait_for(box.flush(), timeout=60)
        texts = [m["text"] for m in slack.messages("C0OPS")]
        assert sorted(texts) == ["first", "other thread", "second"]
        assert texts.index("first") < texts.index("second")
    finally:
        box.stop()
        held.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(worker, timeout=60)


class Clocked(Notifier):
    """Slack on a hand-moved clock: each post takes the round trip it is given (no real time passes)."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__(client=AsyncWebClient(token=BOT_TOKEN))
        self.clock = clock
        self.trips: list[float] = []

    async def post(self, channel: str, message: Message, *, thread_ts: str | None = None) -> str:
        self.clock[0] += self.trips.pop(0)
        return f"{self.clock[0]:.6f}"


async def test_a_channel_next_slot_counts_from_the_answer_less_the_fastest_round_trip(tmp_path: Path) -> None:
    """Slack counts a post when it takes it, somewhere between our ask and its answer: the next slot is the interval
    after the answer less the fastest round trip seen (so a slot does not cost a round trip), and a post that took
    long (one that waited out a 429 inside the client) still counts from its own answer."""
    store = SqliteStore(path=str(tmp_path / "clocked.sqlite3"))
    await store.open()
    clock = [1000.0]
    notifier = Clocked(clock)
    box = Outbox(store=store, notifier=notifier, web_root=None, channel_interval=1.0, clock=lambda: clock[0])
    try:
        notifier.trips = [0.2, 3.0]
        await box.send_now("C0OPS", notice("first"))
        assert box.channel_wait("C0OPS") == pytest.approx(0.8)
        clock[0] += 5.0
        await box.send_now("C0OPS", notice("second, slowly"))
        assert box.channel_wait("C0OPS") == pytest.approx(0.8)
    finally:
        await store.close()
