"""Secrets: a whole launch and an approval with a password variable leave no secret in logs, Slack or the store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.slack.blocks.approvals import APPROVE_ACTION
from tests.conftest import APP_SECRET, BOT_TOKEN, PLAN, SIGNING_SECRET, Bot
from tests.fakes import FakeBkJob, FakeSlack
from tests.test_hostile_harness import APPROVAL_CHANNEL, APPROVER, POLICY

PASSWORD = "hunter2-plan-secret"  # the plan's default for db_password (tests/conftest.py)
SECRETS = {"password": PASSWORD, "bot token": BOT_TOKEN, "signing secret": SIGNING_SECRET, "app secret": APP_SECRET}


@pytest.fixture
async def gov(slack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[Bot]:
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    instance = Bot(slack=slack, bk=bk, db_path=tmp_path / "secrets.sqlite3", BKJOB_CONFIG=str(policy))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


async def test_launch_and_approval_leak_no_secret_anywhere(gov: Bot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("slack_bolt", "slack_sdk", "aiohttp.access", "aiohttp.client", "bot"):
        caplog.set_level(logging.DEBUG, logger=name)

    # A launch through the form, then one through an approval, both on the plan with a password variable.
    view = await gov.open_form()
    status, _ = await gov.submit(view, {"version": "2.0"})
    assert status == 200
    await gov.bk.wait_for_request("execute_job")
    await gov.command(f"run {PLAN} --yes version=3.0", channel=APPROVAL_CHANNEL)
    await gov.idle()
    message = gov.slack.messages(APPROVAL_CHANNEL)[-1]
    approval_id = next(b["elements"][0]["value"] for b in message["blocks"] if b.get("type") == "actions")
    await gov.click(APPROVE_ACTION, approval_id, user=APPROVER, channel=APPROVAL_CHANNEL, message_ts=message["ts"])
    await gov.bk.wait_for_request("execute_job", count=2)
    instance_id = max(gov.bk.instances)
    await gov.bk.finish(instance_id, status=3)
    await gov.idle()

    tokens = [i.callback_url.rsplit("/", 1)[1] for i in gov.bk.instances.values() if i.callback_url]
    assert len(tokens) == 2
    lines = [f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in caplog.records]
    slack_side = [repr(c.args) for c in gov.slack.calls()] + [repr(r.body) for r in gov.slack.responses()]
    # The scan saw DEBUG from the libraries that log request and response details.
    assert any(line.startswith("slack_sdk") for line in lines) and any(line.startswith("slack_bolt") for line in lines)
    stored = b"".join(p.read_bytes() for p in gov.db_path.parent.glob(gov.db_path.name + "*"))

    for what, secret in SECRETS.items():
        assert not [line for line in lines if secret in line], f"{what} in the logs"
        assert not [text for text in slack_side if secret in text], f"{what} sent to Slack"
        assert secret.encode() not in stored, f"{what} in the database"
    for token in tokens:
        # aiohttp.access logs the raw path under tests; `python -m bot` installs a redacting access logger.
        assert not [line for line in lines if token in line and not line.startswith("aiohttp.access")]
        assert not [text for text in slack_side if token in text]
        assert token.encode() not in stored
    assert any(PASSWORD not in str(r.body) for r in gov.bk.requests("execute_job"))
