"""Governance end to end: channel policy, approvals, expiry, identity mapping, audit — over real HTTP."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import STORE
from bot.slack.blocks.approvals import APPROVE_ACTION, REJECT_ACTION
from tests.conftest import APP_CODE, APP_SECRET, BIZ, PLAN, Bot
from tests.fakes import FakeBkJob, FakeSlack

OPS = "C0OPS"  # approval, 1 approver needed
TWO = "C0TWO"  # approval, 2 approvers needed
FAST = "C0FAST"  # approval that expires after 1 s
OPEN = "C0OPEN"  # no approval ([defaults])
ALICE, BOB, CAROL, DAVE, ERIN, FRANK, MALLORY = "U0ALICE", "U0BOB", "U0CAROL", "U0DAVE", "U0ERIN", "U0FRANK", "U0MAL"

POLICY = f"""
[users]
{ALICE} = "alice"
{BOB} = "bob"
{CAROL} = "carol"
{DAVE} = "dave"
{ERIN} = "erin"

[identity]
email_domains = ["example.com"]

[channels.{OPS}]
bk_biz_id = {BIZ}
allowed_biz = [{BIZ}]
allowed_jobs = [{PLAN}, 101]
approval = true
approvers = ["{BOB}", "{CAROL}", "S0ONCALL", "{ALICE}"]
approval_ttl = "30m"

[channels.{TWO}]
approval = true
approvers = ["{BOB}", "{CAROL}", "{DAVE}"]
min_approvals = 2

[channels.{FAST}]
approval = true
approvers = ["{BOB}"]
approval_ttl = "1s"

[defaults]
bk_biz_id = {BIZ}
approval = false
"""


@pytest.fixture
async def gslack() -> AsyncIterator[FakeSlack]:
    users = {
        ALICE: {"email": "alice@example.com"},
        FRANK: {"email": "frank.li@example.com"},
        MALLORY: {"email": "not-an-email"},
    }
    async with FakeSlack(token="xoxb-test", users=users, usergroups={"S0ONCALL": [ERIN]}) as fake:
        yield fake


@pytest.fixture
async def gov(gslack: FakeSlack, bk: FakeBkJob, tmp_path: Path, slack_mode: str) -> AsyncIterator[Bot]:
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    instance = Bot(
        slack=gslack,
        bk=bk,
        db_path=tmp_path / "gov.sqlite3",
        mode=slack_mode,
        BKJOB_CONFIG=str(policy),
        APPROVAL_SWEEP_INTERVAL="0.05",
    )
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


async def request_approval(bot: Bot, channel: str = OPS, user: str = ALICE, text: str = "") -> dict[str, Any]:
    """Run `/bkjob run --yes` where approval is required; returns the approval message as posted."""
    resp = await bot.command(text or f"run {PLAN} --yes version=2.0", user=user, channel=channel)
    assert resp.status == 200
    (call,) = await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("channel") == channel)
    await bot.idle()
    message = bot.slack.message(channel, bot.slack.messages(channel)[-1]["ts"])
    assert message is not None
    return copy.deepcopy(message)  # the fake keeps updating its own copy


def approval_id(message: dict[str, Any]) -> str:
    for block in message.get("blocks") or []:
        if block.get("type") == "actions":
            return str(block["elements"][0]["value"])
    raise AssertionError(f"no buttons in {message}")


def has_buttons(message: dict[str, Any] | None) -> bool:
    """Approve / Reject are shown (once launched, the message carries the run's own buttons instead)."""
    blocks = (message or {}).get("blocks") or []
    return any(b.get("type") == "actions" and str(b.get("block_id", "")).startswith("approval:") for b in blocks)


def text_of(message: dict[str, Any] | None) -> str:
    assert message is not None
    return json.dumps(message.get("blocks") or []) + str(message.get("text"))


async def click(bot: Bot, action: str, message: dict[str, Any], user: str, channel: str = OPS) -> None:
    resp = await bot.click(action, approval_id(message), user=user, channel=channel, message_ts=message["ts"])
    assert resp.status == 200


async def ephemeral_to(bot: Bot, needle: str) -> str:
    (post,) = await bot.slack.wait_for_response(lambda r: needle in str(r.body.get("text")))
    assert post.body.get("response_type") == "ephemeral"
    return str(post.body["text"])


async def test_approval_request_is_posted_instead_of_launching(gov: Bot) -> None:
    message = await request_approval(gov)
    body = text_of(message)
    assert has_buttons(message)
    assert "Approval needed" in body and "alice" in body and "version" in body and "2.0" in body
    assert "hunter2" not in body
    assert gov.bk.requests("execute_job") == []


async def test_requester_may_not_approve_own_launch_even_when_listed(gov: Bot) -> None:
    message = await request_approval(gov)
    await click(gov, APPROVE_ACTION, message, ALICE)
    await ephemeral_to(gov, "your own launch")
    await gov.idle()
    assert gov.bk.requests("execute_job") == []
    assert has_buttons(gov.slack.message(OPS, message["ts"]))


async def test_non_approver_is_told_and_nothing_changes(gov: Bot) -> None:
    message = await request_approval(gov)
    await click(gov, APPROVE_ACTION, message, MALLORY)
    text = await ephemeral_to(gov, "may decide")
    assert f"<@{BOB}>" in text and "S0ONCALL" in text
    await click(gov, REJECT_ACTION, message, MALLORY)
    await gov.idle()
    assert gov.bk.requests("execute_job") == [] and gov.slack.calls("views.open") == []
    assert has_buttons(gov.slack.message(OPS, message["ts"]))


async def test_group_member_approves_and_launch_runs_as_requester_in_the_same_thread(gov: Bot) -> None:
    message = await request_approval(gov)
    await click(gov, APPROVE_ACTION, message, ERIN)
    (req,) = await gov.bk.wait_for_request("execute_job")
    assert req.body["bk_username"] == "alice"
    assert json.loads(req.headers["X-Bkapi-Authorization"])["bk_username"] == "alice"
    assert req.body["global_vars"] == [{"id": 437, "value": "2.0"}]
    await gov.idle()
    updated = gov.slack.message(OPS, message["ts"])
    assert not has_buttons(updated)
    instance_id = next(iter(gov.bk.instances))
    assert str(instance_id) in text_of(updated) and f"<@{ERIN}>" in text_of(updated)
    await gov.bk.finish(instance_id, status=3)
    await gov.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == message["ts"])
    await gov.idle()
    assert any("Succeeded" in m["text"] for m in gov.slack.thread(OPS, message["ts"]))


async def test_two_approvals_needed_and_each_is_shown(gov: Bot) -> None:
    message = await request_approval(gov, channel=TWO)
    await click(gov, APPROVE_ACTION, message, BOB, channel=TWO)
    await gov.idle()
    after_one = gov.slack.message(TWO, message["ts"])
    assert "1/2" in text_of(after_one) and f"<@{BOB}>" in text_of(after_one) and has_buttons(after_one)
    assert gov.bk.requests("execute_job") == []
    await click(gov, APPROVE_ACTION, message, BOB, channel=TWO)
    await ephemeral_to(gov, "already approved")
    await click(gov, APPROVE_ACTION, message, CAROL, channel=TWO)
    await gov.bk.wait_for_request("execute_job")
    await gov.idle()
    assert len(gov.bk.requests("execute_job")) == 1


async def test_rejection_with_reason_tells_the_requester(gov: Bot) -> None:
    message = await request_approval(gov)
    await click(gov, REJECT_ACTION, message, BOB)
    await gov.slack.wait_for_call("views.open")
    (view,) = gov.slack.views()
    status, answer = await gov.submit(view, {"reason": "change freeze until Monday"}, user=BOB)
    assert status == 200 and answer is None
    await gov.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == message["ts"])
    await gov.idle()
    updated = gov.slack.message(OPS, message["ts"])
    assert "Rejected" in text_of(updated) and not has_buttons(updated)
    (reply,) = gov.slack.thread(OPS, message["ts"])
    assert f"<@{ALICE}>" in reply["text"] and "change freeze until Monday" in reply["text"]
    assert gov.bk.requests("execute_job") == []
    await click(gov, APPROVE_ACTION, message, CAROL)
    await ephemeral_to(gov, "already rejected")


async def test_expiry_across_a_restart_and_a_late_click_does_nothing(gov: Bot) -> None:
    message = await request_approval(gov, channel=FAST)
    await gov.stop()
    await gov.start()
    await gov.slack.wait_for_call(
        "chat.update", lambda c: c.args.get("ts") == message["ts"] and "Expired" in json.dumps(c.args), timeout=10
    )
    await gov.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == message["ts"])
    await gov.idle()
    assert not has_buttons(gov.slack.message(FAST, message["ts"]))
    (reply,) = gov.slack.thread(FAST, message["ts"])
    assert f"<@{ALICE}>" in reply["text"] and "expired" in reply["text"]
    await click(gov, APPROVE_ACTION, message, BOB, channel=FAST)
    await ephemeral_to(gov, "expired")
    await gov.idle()
    assert gov.bk.requests("execute_job") == []


async def test_fifty_concurrent_approve_clicks_launch_exactly_once(gov: Bot) -> None:
    message = await request_approval(gov)
    clickers = [BOB, CAROL, ERIN] * 17
    await asyncio.gather(*(click(gov, APPROVE_ACTION, message, user) for user in clickers[:50]))
    await gov.bk.wait_for_request("execute_job")
    await gov.idle()
    assert len(gov.bk.requests("execute_job")) == 1
    store = gov.runner.app[STORE]  # type: ignore[union-attr]
    actions = [e.action for e in await store.audit_events()]
    assert actions.count("approved") == 1 and actions.count("launched") == 1


async def test_policy_refusals_send_nothing_to_bkjob(gov: Bot) -> None:
    await gov.command("run 999 --yes", user=ALICE, channel=OPS)
    text = await ephemeral_to(gov, "999")
    assert f"<#{OPS}>" in text and "policy" in text
    await gov.command(f"run {PLAN} --biz 7", user=ALICE, channel=OPS)
    text = await ephemeral_to(gov, "business 7")
    await gov.idle()
    assert gov.bk.requests() == []
    assert gov.slack.calls("views.open") == []


@pytest.mark.parametrize(
    ("user", "expected"),
    [(ALICE, "alice"), (FRANK, "frank.li")],
    ids=["policy-users", "slack-email"],
)
async def test_identity_mapping(gov: Bot, user: str, expected: str) -> None:
    await gov.command(f"run {PLAN} --yes", user=user, channel=OPEN)
    (req,) = await gov.bk.wait_for_request("execute_job")
    assert req.body["bk_username"] == expected
    await gov.idle()
    launch_text = text_of(gov.slack.messages(OPEN)[0])
    assert expected in launch_text


async def test_no_identity_refuses_with_how_to_get_mapped(gslack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> None:
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    bot = Bot(slack=gslack, bk=bk, db_path=tmp_path / "x.sqlite3", BKJOB_CONFIG=str(policy), BK_USERNAME="")
    await bot.start()
    try:
        await bot.command(f"run {PLAN} --yes", user=MALLORY, channel=OPEN)
        text = await ephemeral_to(bot, "[users]")
        assert MALLORY in text
        await bot.idle()
        assert bot.bk.requests("execute_job") == []
    finally:
        await bot.close()


async def test_pending_and_history(gov: Bot) -> None:
    message = await request_approval(gov)
    await gov.command("pending", user=CAROL, channel=OPS)
    text = await ephemeral_to(gov, "1 approval request waiting here")
    assert "Deploy web" in text and message["ts"].replace(".", "") in text
    await click(gov, APPROVE_ACTION, message, BOB)
    await gov.bk.wait_for_request("execute_job")
    await gov.idle()
    await gov.command("history 5", user=CAROL, channel=OPS)
    text = await ephemeral_to(gov, "The last launch here")
    assert "Deploy web" in text and f"approved by <@{BOB}>" in text
    await gov.command("pending", user=CAROL, channel=OPS)
    await ephemeral_to(gov, "No approval requests")


async def test_audit_trail_has_every_step_and_no_secret(gov: Bot) -> None:
    message = await request_approval(gov)
    await click(gov, APPROVE_ACTION, message, BOB)
    await gov.bk.wait_for_request("execute_job")
    await gov.idle()
    await gov.bk.finish(next(iter(gov.bk.instances)), status=4)
    await gov.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == message["ts"])
    await gov.idle()
    events = await gov.runner.app[STORE].audit_events()  # type: ignore[union-attr]
    actions = [e.action for e in events]
    assert actions == ["approval_requested", "approval_vote", "approved", "launched", "result"]
    assert all(e.at > 0 and e.actor for e in events)
    dump = json.dumps([e.model_dump() for e in events])
    assert APP_SECRET not in dump and "hunter2" not in dump


def test_broken_policy_file_stops_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text('[channels.C0OPS]\napproval = true\napproval_ttl = "soon"\n')
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "s",
        "BK_API_URL": "http://127.0.0.1:9",
        "BK_APP_CODE": APP_CODE,
        "BK_APP_SECRET": APP_SECRET,
        "PUBLIC_URL": "http://127.0.0.1:9",
        "BKJOB_CONFIG": str(bad),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "broken.toml" in done.stderr and "approval_ttl" in done.stderr
    assert "Traceback" not in done.stderr


async def test_approval_request_the_bot_cannot_post_is_explained_and_closed(gov: Bot) -> None:
    gov.slack.not_in_channel(OPS)
    await gov.command(f"run {PLAN} --yes", user=ALICE, channel=OPS)
    text = await ephemeral_to(gov, "invite me")
    assert "/invite" in text
    await gov.idle()
    store = gov.runner.app[STORE]  # type: ignore[union-attr]
    assert await store.pending_approvals(OPS) == []
    assert gov.bk.requests("execute_job") == []


async def test_the_form_in_an_approval_channel_requests_approval_and_names_who_is_asked(gov: Bot) -> None:
    view = await gov.open_form()
    assert view["submit"]["text"] == "Request approval"
    context = json.dumps([b for b in view["blocks"] if b["type"] == "context"])
    assert "need approval" in context
    for approver in (f"<@{BOB}>", f"<@{CAROL}>", "<!subteam^S0ONCALL>"):
        assert approver in context
    status, _ = await gov.submit(view, {})
    assert status == 200
    await gov.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("channel") == OPS)
    await gov.idle()
    assert has_buttons(gov.slack.messages(OPS)[-1]) and gov.bk.requests("execute_job") == []


async def test_the_form_in_an_open_channel_launches(gov: Bot) -> None:
    await gov.command(f"run {PLAN}", channel=OPEN)
    (update,) = await gov.slack.wait_for_call("views.update")
    view = gov.slack.view(update.args["view_id"])
    assert view is not None and view["submit"]["text"] == "Launch"
    assert "need approval" not in json.dumps(view["blocks"])


async def test_the_reject_form_names_the_request_and_says_optional_once(gov: Bot) -> None:
    message = await request_approval(gov)
    await click(gov, REJECT_ACTION, message, BOB)
    (opened,) = await gov.slack.wait_for_call("views.open")
    view = opened.args["view"]
    (reason,) = [b for b in view["blocks"] if b["type"] == "input"]
    assert reason["label"]["text"] == "Reason" and reason["optional"] is True  # Slack adds "(optional)" itself
    named = json.dumps([b for b in view["blocks"] if b["type"] == "section"])
    assert "Deploy web" in named and f"<@{ALICE}>" in named
