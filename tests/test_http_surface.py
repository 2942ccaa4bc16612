"""The bot's HTTP surface: Slack's signature and timestamp checks, Slack's retries, and /healthz."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.conftest import PLAN, Bot

RETRY_HEADERS = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


async def test_healthz_answers_200_json(bot: Bot) -> None:
    assert bot.http is not None
    async with bot.http.get(f"{bot.url}/healthz") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body["ok"] is True


async def test_bad_signature_is_401_and_nothing_happens(bot: Bot) -> None:
    body = bot.command_body(f"run {PLAN} --yes version=2.0")
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + "0" * 64,
    }
    assert bot.http is not None
    async with bot.http.post(f"{bot.url}/slack/events", data=body.encode(), headers=headers) as resp:
        assert resp.status == 401
    await bot.idle()
    assert bot.bk.requests() == []
    assert [c.method for c in bot.slack.calls() if c.method != "auth.test"] == []
    assert bot.slack.responses() == []


async def test_signature_over_another_body_is_401(bot: Bot) -> None:
    signed = bot.command_body("help")
    sent = bot.command_body(f"run {PLAN} --yes version=2.0")
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": bot.signer.generate_signature(timestamp=ts, body=signed),
    }
    assert bot.http is not None
    async with bot.http.post(f"{bot.url}/slack/events", data=sent.encode(), headers=headers) as resp:
        assert resp.status == 401
    await bot.idle()
    assert bot.bk.requests() == []


async def test_unsigned_request_is_401(bot: Bot) -> None:
    assert bot.http is not None
    async with bot.http.post(
        f"{bot.url}/slack/events",
        data=bot.command_body(f"run {PLAN} --yes").encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as resp:
        assert resp.status == 401
    await bot.idle()
    assert bot.bk.requests() == []


async def test_stale_timestamp_is_401_even_when_correctly_signed(bot: Bot) -> None:
    resp = await bot.post_signed(bot.command_body(f"run {PLAN} --yes version=2.0"), timestamp=int(time.time()) - 301)
    assert resp.status == 401
    await bot.idle()
    assert bot.bk.requests() == []
    assert bot.slack.responses() == []


async def test_recent_timestamp_is_accepted(bot: Bot) -> None:
    resp = await bot.post_signed(bot.command_body("help"), timestamp=int(time.time()) - 200)
    assert resp.status == 200
    assert "Usage" in (await resp.json())["text"]


async def test_slack_retry_of_the_same_command_launches_once(bot: Bot) -> None:
    body = bot.command_body(f"run {PLAN} --yes version=2.0")
    assert (await bot.post_signed(body)).status == 200
    await bot.bk.wait_for_request("execute_job")
    await bot.idle()
    resp = await bot.post_signed(body, headers=RETRY_HEADERS)
    assert resp.status == 200
    await bot.idle()
    assert len(bot.bk.requests("execute_job")) == 1
    assert len(bot.bk.requests("get_job_detail")) == 1
    assert len(bot.slack.calls("chat.postMessage")) == 1
    assert bot.slack.responses() == []


async def test_slack_retry_racing_the_first_delivery_launches_once(bot: Bot) -> None:
    body = bot.command_body(f"run {PLAN} --yes version=2.0")
    first, retry = await asyncio.gather(bot.post_signed(body), bot.post_signed(body, headers=RETRY_HEADERS))
    assert first.status == retry.status == 200
    await bot.bk.wait_for_request("execute_job")
    await bot.idle()
    assert len(bot.bk.requests("execute_job")) == 1
    assert len(bot.slack.calls("chat.postMessage")) == 1


async def test_slack_retry_of_a_modal_command_opens_one_modal(bot: Bot) -> None:
    body = bot.command_body(f"run {PLAN}")
    assert (await bot.post_signed(body)).status == 200
    await bot.slack.wait_for_call("views.update")
    await bot.idle()
    assert (await bot.post_signed(body, headers=RETRY_HEADERS)).status == 200
    await bot.idle()
    assert len(bot.slack.calls("views.open")) == 1
    assert bot.slack.responses() == []  # no "expired trigger" complaint either


async def test_callback_route_takes_only_post(bot: Bot) -> None:
    assert bot.http is not None
    async with bot.http.get(f"{bot.url}/bkjob/callback/abc") as resp:
        assert resp.status == 405


async def test_a_command_mentioning_payload_still_reaches_the_bot(bot: Bot) -> None:
    """Bolt mistakes any form body containing "payload" for an interactivity payload; the bot corrects that."""
    resp = await bot.command("run 100 --yes version=payload")
    assert resp.status == 200
    (req,) = await bot.bk.wait_for_request("execute_job")
    assert {"id": 437, "value": "payload"} in req.body["global_vars"]


@pytest.mark.parametrize("stamp", ["abc", "1.7e9", "", " 1700000000", "NaN", "-1", "１２３"])
async def test_non_numeric_timestamp_is_401_quietly(bot: Bot, stamp: str, caplog: pytest.LogCaptureFixture) -> None:
    """Signed over the same odd timestamp, so only the timestamp is wrong; no traceback, nothing logged above INFO."""
    body = bot.command_body(f"run {PLAN} --yes version=2.0")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": bot.signer.generate_signature(timestamp=stamp, body=body),
    }
    assert bot.http is not None
    with caplog.at_level(logging.DEBUG):
        async with bot.http.post(f"{bot.url}/slack/events", data=body.encode(), headers=headers) as resp:
            assert resp.status == 401
        await bot.idle()
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING] == []
    assert bot.bk.requests() == []
