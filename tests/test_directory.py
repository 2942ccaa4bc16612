"""Directory: users.info and usergroups.users.list over real HTTP against FakeSlack, with the cache."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.directory import Directory
from bot.slack.errors import SlackError
from tests.fakes import FakeSlack

USERS: dict[str, dict[str, Any]] = {
    "U0ALICE": {"email": "alice@example.com"},
    "U0BOT": {"is_bot": True},
}
GROUPS = {"S0ONCALL": ["U0ALICE", "U0BOB"], "S0EMPTY": []}


class Clock:
    """A hand-moved clock for the cache, so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(token="xoxb-test", users=USERS, usergroups=GROUPS) as server:
        yield server


@pytest.fixture
async def client(fake: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    async with aiohttp.ClientSession() as session:
        yield AsyncWebClient(token="xoxb-test", base_url=fake.base_url, session=session)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def directory(client: AsyncWebClient, clock: Clock) -> Directory:
    return Directory(client=client, ttl=60.0, timer=clock)


async def test_email_from_the_profile(directory: Directory, fake: FakeSlack) -> None:
    assert await directory.email("U0ALICE") == "alice@example.com"
    [call] = fake.calls("users.info")
    assert call.args["user"] == "U0ALICE"
    assert call.token == "xoxb-test"


async def test_email_absent_is_none(directory: Directory) -> None:
    assert await directory.email("U0BOT") is None


async def test_cache_hit_makes_no_second_call(directory: Directory, fake: FakeSlack) -> None:
    assert await directory.email("U0ALICE") == "alice@example.com"
    assert await directory.email("U0ALICE") == "alice@example.com"
    assert await directory.email("U0BOT") is None
    assert await directory.email("U0BOT") is None  # "no email" is an answer, cached too
    assert [c.args["user"] for c in fake.calls("users.info")] == ["U0ALICE", "U0BOT"]


async def test_cache_expires_after_ttl(directory: Directory, fake: FakeSlack, clock: Clock) -> None:
    await directory.email("U0ALICE")
    fake.users["U0ALICE"]["email"] = "alice.new@example.com"
    clock.now = 59.0
    assert await directory.email("U0ALICE") == "alice@example.com"
    clock.now = 61.0
    assert await directory.email("U0ALICE") == "alice.new@example.com"
    assert len(fake.calls("users.info")) == 2


async def test_cache_is_size_bounded(client: AsyncWebClient, fake: FakeSlack) -> None:
    directory = Directory(client=client, maxsize=1)
    await directory.email("U0ALICE")
    await directory.email("U0BOT")
    await directory.email("U0ALICE")
    assert len(fake.calls("users.info")) == 3


async def test_concurrent_lookups_of_one_user_make_one_call(directory: Directory, fake: FakeSlack) -> None:
    results = await asyncio.gather(*(directory.email("U0ALICE") for _ in range(20)))
    assert set(results) == {"alice@example.com"}
    assert len(fake.calls("users.info")) == 1


async def test_slack_refusal_is_a_slack_error_and_not_cached(directory: Directory, fake: FakeSlack) -> None:
    fake.fail_next("users.info", "ratelimited")
    with pytest.raises(SlackError) as caught:
        await directory.email("U0ALICE")
    assert (caught.value.method, caught.value.error) == ("users.info", "ratelimited")
    assert await directory.email("U0ALICE") == "alice@example.com"
    assert len(fake.calls("users.info")) == 2


async def test_concurrent_waiters_all_see_the_failure(directory: Directory, fake: FakeSlack) -> None:
    fake.fail_next("users.info", "internal_error")
    results = await asyncio.gather(*(directory.email("U0ALICE") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, SlackError) for r in results)
    assert len(fake.calls("users.info")) == 1
    assert await directory.email("U0ALICE") == "alice@example.com"


async def test_unknown_user_is_a_slack_error(directory: Directory) -> None:
    with pytest.raises(SlackError, match="users.info failed: user_not_found"):
        await directory.email("U0NOBODY")


async def test_server_error_is_a_slack_error(directory: Directory, fake: FakeSlack) -> None:
    fake.server_error_next("users.info", status=503)
    with pytest.raises(SlackError) as caught:
        await directory.email("U0ALICE")
    assert caught.value.method == "users.info"


async def test_unreachable_slack_is_a_slack_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(
            token="xoxb-test", base_url=f"http://127.0.0.1:{port}/api/", session=session, retry_handlers=[]
        )
        with pytest.raises(SlackError) as caught:
            await Directory(client=client).email("U0ALICE")
    assert caught.value.method == "users.info"
    assert "xoxb" not in str(caught.value)


async def test_a_cancelled_waiter_does_not_cancel_the_others(directory: Directory, fake: FakeSlack) -> None:
    first = asyncio.ensure_future(directory.email("U0ALICE"))
    second = asyncio.ensure_future(directory.email("U0ALICE"))
    await asyncio.sleep(0)  # let both start waiting on the one read
    first.cancel()
    assert await second == "alice@example.com"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(fake.calls("users.info")) == 1


async def test_group_members(directory: Directory, fake: FakeSlack) -> None:
    assert await directory.group_members("S0ONCALL") == frozenset({"U0ALICE", "U0BOB"})
    assert await directory.group_members("S0ONCALL") == frozenset({"U0ALICE", "U0BOB"})
    assert await directory.group_members("S0EMPTY") == frozenset()
    calls = fake.calls("usergroups.users.list")
    assert [c.args["usergroup"] for c in calls] == ["S0ONCALL", "S0EMPTY"]


async def test_group_and_user_caches_do_not_mix(directory: Directory, fake: FakeSlack) -> None:
    fake.usergroups["U0ALICE"] = ["U0X"]  # same key in both caches
    assert await directory.email("U0ALICE") == "alice@example.com"
    assert await directory.group_members("U0ALICE") == frozenset({"U0X"})


async def test_unknown_group_is_a_slack_error(directory: Directory) -> None:
    with pytest.raises(SlackError, match="no_such_subteam"):
        await directory.group_members("S0NOPE")
