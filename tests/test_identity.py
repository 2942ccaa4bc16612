"""Identities: [users] mapping, then the Slack profile email (over HTTP against FakeSlack), then the fallback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.identity import Identities, NoIdentity
from bot.errors import UserInputError
from bot.slack.directory import Directory
from tests.fakes import FakeSlack

USERS: dict[str, dict[str, Any]] = {
    "U0ALICE": {"email": "alice@example.com"},
    "U0BOB": {"email": "bob.smith@example.com"},
    "U0PLUS": {"email": "carol+ops@example.com"},
    "U0NOMAIL": {},
    "U0EVIL": {"email": "admin@attacker.example", "is_restricted": True},
    "U0OUTSIDER": {"email": "root@attacker.example"},
    "U0SINGLE": {"email": "dave@example.com", "is_ultra_restricted": True},
}
DOMAINS = ("example.com",)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(token="xoxb-test", users=USERS) as server:
        yield server


@pytest.fixture
async def directory(fake: FakeSlack) -> AsyncIterator[Directory]:
    async with aiohttp.ClientSession() as session:
        yield Directory(client=AsyncWebClient(token="xoxb-test", base_url=fake.base_url, session=session))


async def test_users_mapping_wins_without_asking_slack(directory: Directory, fake: FakeSlack) -> None:
    identities = Identities(users={"U0ALICE": "alice_bk"}, directory=directory, fallback="ops-bot")
    assert await identities.bk_username("U0ALICE") == "alice_bk"
    assert fake.calls("users.info") == []


async def test_email_local_part(directory: Directory, fake: FakeSlack) -> None:
    identities = Identities(users={}, directory=directory, fallback="ops-bot", email_domains=DOMAINS)
    assert await identities.bk_username("U0BOB") == "bob.smith"
    assert await identities.bk_username("U0BOB") == "bob.smith"
    assert len(fake.calls("users.info")) == 1  # the directory's cache


async def test_email_outside_the_listed_domains_is_not_an_identity(directory: Directory) -> None:
    """A guest or anyone with `admin@attacker.example` must not run as BK-JOB's `admin`."""
    identities = Identities(users={}, directory=directory, fallback=None, email_domains=DOMAINS)
    with pytest.raises(NoIdentity):
        await identities.bk_username("U0OUTSIDER")
    with pytest.raises(NoIdentity):
        await Identities(directory=directory, fallback=None).bk_username("U0ALICE")  # no domain listed: none


@pytest.mark.parametrize("user", ["U0EVIL", "U0SINGLE"])
async def test_guests_are_refused_unless_mapped(directory: Directory, user: str) -> None:
    identities = Identities(users={}, directory=directory, fallback="ops-bot", email_domains=DOMAINS)
    with pytest.raises(NoIdentity) as caught:
        await identities.bk_username(user)
    assert "Guest" in str(caught.value) and "[users]" in str(caught.value)
    assert await Identities(users={user: "dave"}, directory=directory, fallback=None).bk_username(user) == "dave"


async def test_implausible_email_local_part_falls_back(directory: Directory) -> None:
    identities = Identities(users={}, directory=directory, fallback="ops-bot", email_domains=DOMAINS)
    assert await identities.bk_username("U0PLUS") == "ops-bot"


async def test_no_email_falls_back(directory: Directory) -> None:
    identities = Identities(users={}, directory=directory, fallback="ops-bot")
    assert await identities.bk_username("U0NOMAIL") == "ops-bot"


async def test_slack_failure_refuses_never_the_service_account_and_is_logged(
    directory: Directory, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("users.info", "internal_error")
    identities = Identities(users={}, directory=directory, fallback="ops-bot", email_domains=DOMAINS)
    with caplog.at_level(logging.WARNING, logger="bot.core.identity"), pytest.raises(NoIdentity) as caught:
        await identities.bk_username("U0ALICE")
    assert "could not read your Slack profile" in str(caught.value) and "internal_error" in str(caught.value)
    assert "U0ALICE" in caplog.text and "internal_error" in caplog.text
    assert "xoxb" not in caplog.text
    # The failure was not cached: the next launch finds the email.
    assert await identities.bk_username("U0ALICE") == "alice"


async def test_slack_failure_without_fallback_refuses(directory: Directory, fake: FakeSlack) -> None:
    fake.fail_next("users.info", "internal_error")
    identities = Identities(users={}, directory=directory, fallback=None)
    with pytest.raises(NoIdentity):
        await identities.bk_username("U0ALICE")


async def test_no_identity_says_how_to_get_mapped(directory: Directory) -> None:
    identities = Identities(users={"U0OTHER": "other"}, directory=directory, fallback=None)
    with pytest.raises(NoIdentity) as caught:
        await identities.bk_username("U0NOMAIL")
    assert isinstance(caught.value, UserInputError)
    message = str(caught.value)
    assert '`U0NOMAIL = "<your BK-JOB username>"`' in message
    assert "[users]" in message and "policy file" in message and "admin" in message


async def test_without_a_directory_only_mapping_and_fallback() -> None:
    assert await Identities(fallback="ops-bot").bk_username("U0ALICE") == "ops-bot"
    mapped = Identities(users={"U0ALICE": "alice"}, fallback=None)
    assert await mapped.bk_username("U0ALICE") == "alice"
    with pytest.raises(NoIdentity):
        await mapped.bk_username("U0BOB")


async def test_blank_fallback_is_no_fallback() -> None:
    with pytest.raises(NoIdentity):
        await Identities(fallback="").bk_username("U0ALICE")
