"""Run control from the thread (issue 15), over real HTTP against the fakes, in both API versions: each button and
command, BK-JOB's refusals (1241003, 1244016), the channel's policy, and double clicks sent once."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from bot.app import STORE
from bot.bkjob.client import create_bk_client
from bot.bkjob.errors import BkApiError
from bot.slack.blocks.runcontrol import (
    CONFIRM_ACTION,
    END_CONFIRM_ACTION,
    IGNORE_ACTION,
    NEXT_STEP_ACTION,
    OPEN_ACTION,
    RERUN_ACTION,
    RETRY_FAILED_ACTION,
    RETRY_STEP_ACTION,
    STOP_ACTION,
)
from bot.store import Store
from tests.conftest import BIZ, PLAN, Bot
from tests.fakes import FakeBkJob, FakeSlack
from tests.stores import PgSchema

OPS, GATED = "C0OPS", "C0GATED"
ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"
CONFIRM_PLAN = 200

POLICY = f"""
[users]
{ALICE} = "alice"
{BOB} = "bob"
{CAROL} = "carol"

[channels.{OPS}]
bk_biz_id = {BIZ}
allowed_biz = [{BIZ}]
approvers = ["{BOB}"]

[channels.{OPS}.operators]  # carol may answer confirmations here, as far as the channel is concerned
confirm = ["requester", "approvers", "{CAROL}"]

[channels.{GATED}]
bk_biz_id = {BIZ}
allowed_biz = [{BIZ}]
approval = true
approvers = ["{BOB}"]

[defaults]
allowed_biz = []
"""

# A manual confirmation between two script steps: bob, or whoever launched the job, may confirm it.
CONFIRM_STEPS: list[dict[str, Any]] = [
    {"name": "build"},
    {
        "name": "go / no-go",
        "type": 3,
        "execute_type": 3,
        "script_content": None,
        "account": None,
        "account_id": None,
        "ip_list": [],
        "confirm_message": "Canary looks healthy? Confirm to roll out everywhere.",
        "confirm_users": ["bob"],
        "confirm_roles": ["JOB_RESOURCE_TRIGGER_USER"],
    },
    {"name": "roll out"},
]

Start = Callable[..., Awaitable[Bot]]


@pytest.fixture
async def ops(slack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[Bot]:
    """A governed bot that reads a running job's status every 0.1 s."""
    bk.add_plan(BIZ, CONFIRM_PLAN, "Canary release", [], CONFIRM_STEPS)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    bot = Bot(
        slack=slack,
        bk=bk,
        db_path=tmp_path / "ops.sqlite3",
        BKJOB_CONFIG=str(policy),
        BKJOB_OPEN_MODE="off",
        CALLBACK_GRACE="0.1",
        PROGRESS_INTERVAL="0.1",
    )
    await bot.start()
    try:
        yield bot
    finally:
        await bot.close()


async def launch(bot: Bot, plan: int = PLAN, channel: str = OPS, user: str = ALICE) -> tuple[int, str]:
    """Launch with --yes; returns the instance and the launch message's ts."""
    before = len(bot.bk.instances)
    await bot.command(f"run {plan} --yes", user=user, channel=channel)
    await bot.bk.wait_for_request("execute_job", count=before + 1)
    await bot.idle()
    ts = bot.slack.messages(channel)[-1]["ts"]
    return next(reversed(bot.bk.instances)), ts


async def reply_in(bot: Bot, ts: str, needle: str, channel: str = OPS) -> dict[str, Any]:
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == ts and needle in json.dumps(c.args), timeout=10
    )
    await bot.idle()
    found = [m for m in bot.slack.thread(channel, ts) if needle in json.dumps(m)]
    assert len(found) == 1, bot.slack.thread(channel, ts)
    return found[0]


async def told(bot: Bot, needle: str, count: int = 1) -> list[dict[str, Any]]:
    """The answers (response_url posts) containing `needle`."""
    posts = await bot.slack.wait_for_response(lambda r: needle in json.dumps(r.body), timeout=60, count=count)
    return [p.body for p in posts]


def buttons(bot: Bot, ts: str, channel: str = OPS) -> dict[str, dict[str, Any]]:
    """The launch message's buttons as it stands now, by action_id."""
    message = bot.slack.message(channel, ts)
    assert message is not None
    return {e["action_id"]: e for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]}


async def settled(bot: Bot, ts: str, wanted: set[str], channel: str = OPS) -> dict[str, dict[str, Any]]:
    """Wait until the launch message carries exactly the `wanted` buttons (edits go through the outbox)."""
    await bot.slack.wait_for_call(
        "chat.update",
        lambda c: c.args.get("ts") == ts and set(_actions(c.args.get("blocks"))) == wanted,
        timeout=10,
    )
    await bot.idle()
    shown = buttons(bot, ts, channel)
    assert set(shown) == wanted, shown
    return shown


def _actions(blocks: Any) -> list[str]:
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return [e["action_id"] for b in blocks or [] if b.get("type") == "actions" for e in b["elements"]]


def operations(bot: Bot, api: str) -> list[dict[str, Any]]:
    return [r.body for r in bot.bk.requests(api)]


async def audit(bot: Bot) -> list[tuple[str, str, str]]:
    assert bot.runner is not None
    store: Store = bot.runner.app[STORE]
    return [(e.actor, e.action, e.detail or "") for e in await store.audit_events()]


FAILED_BUTTONS = {RETRY_FAILED_ACTION, IGNORE_ACTION, RETRY_STEP_ACTION, RERUN_ACTION, OPEN_ACTION}


# -- stop ----------------------------------------------------------------------------------------------------------


async def test_stop_button_stops_a_running_job_once_for_a_double_click(ops: Bot) -> None:
    instance_id, ts = await launch(ops)
    shown = await settled(ops, ts, {STOP_ACTION, OPEN_ACTION})
    assert shown[OPEN_ACTION]["url"] == f"https://job.example.com/api_execute/{instance_id}"

    await asyncio.gather(
        ops.click(STOP_ACTION, shown[STOP_ACTION]["value"], user=ALICE, message_ts=ts),
        ops.click(STOP_ACTION, shown[STOP_ACTION]["value"], user=ALICE, message_ts=ts),
    )
    await reply_in(ops, ts, "Force-stopped")
    (sent,) = operations(ops, "operate_job_instance")
    assert sent["job_instance_id"] == instance_id and sent["operation_code"] == 1
    assert ops.bk.instances[instance_id].status == 11
    await told(ops, "already sent to BK-JOB")
    await told(ops, "BK-JOB accepted: stop the job")
    await reply_in(ops, ts, "asked BK-JOB to stop the job")
    # BK-JOB retries a stopped step (11) and goes on after it (issue 23): see tests/test_flow_runstates.py
    await settled(ops, ts, {RETRY_FAILED_ACTION, NEXT_STEP_ACTION, RETRY_STEP_ACTION, RERUN_ACTION, OPEN_ACTION})
    assert (ALICE, "stop", "stop the job as alice: BK-JOB accepted") in await audit(ops)


async def test_a_stale_stop_gets_bk_jobs_1241003_explained_and_the_buttons_refreshed(ops: Bot) -> None:
    instance_id, ts = await launch(ops)
    shown = await settled(ops, ts, {STOP_ACTION, OPEN_ACTION})
    # The job ends between the bot's read of its state and the stop (a stop of a job already seen ended is
    # answered without a call: tests/test_flow_runstates.py).
    ops.bk.fail_next("operate_job_instance", 1241003, "Unsupported operation")
    ops.bk.advance(instance_id, 2)

    await ops.click(STOP_ACTION, shown[STOP_ACTION]["value"], user=ALICE, message_ts=ts)
    (answer,) = await told(ops, "no longer applies")
    assert "[1241003]" in answer["text"]
    assert len(operations(ops, "operate_job_instance")) == 1  # BK-JOB was asked, and refused
    await ops.bk.finish(instance_id, status=3)
    await reply_in(ops, ts, "Succeeded")
    await settled(ops, ts, {RERUN_ACTION, OPEN_ACTION})
    assert any(a == "stop_failed" and "1241003" in d for _, a, d in await audit(ops))


async def test_stop_command_and_an_instance_from_elsewhere(ops: Bot) -> None:
    instance_id, ts = await launch(ops)
    await ops.command("stop 99999", user=ALICE, channel=OPS)
    await told(ops, "was not launched from this channel")
    await ops.command(f"stop {instance_id}", user=ALICE, channel=OPS)
    await reply_in(ops, ts, "Force-stopped")
    assert [b["operation_code"] for b in operations(ops, "operate_job_instance")] == [1]


async def test_the_channel_policy_says_who_may_stop(ops: Bot) -> None:
    instance_id, ts = await launch(ops)
    shown = await settled(ops, ts, {STOP_ACTION, OPEN_ACTION})
    await ops.click(STOP_ACTION, shown[STOP_ACTION]["value"], user=CAROL, message_ts=ts)
    (answer,) = await told(ops, "may stop a launch")
    assert "the requester" in answer["text"] and "the channel's approvers" in answer["text"]
    assert operations(ops, "operate_job_instance") == []
    assert any(actor == CAROL and action == "stop_refused" for actor, action, _ in await audit(ops))

    await ops.click(STOP_ACTION, shown[STOP_ACTION]["value"], user=BOB, message_ts=ts)  # an approver may
    await reply_in(ops, ts, "Force-stopped")


# -- a failed step: retry the failed hosts, retry the step, ignore the error -----------------------------------------


@pytest.mark.parametrize(
    ("action", "code", "then"),
    [(RETRY_FAILED_ACTION, 2, "*Succeeded* after retry of step 1"), (RETRY_STEP_ACTION, 8, "after retry of step 1")],
)
async def test_retrying_a_failed_step_reports_the_new_finish(ops: Bot, action: str, code: int, then: str) -> None:
    instance_id, ts = await launch(ops)
    await ops.bk.finish(instance_id, status=4)
    await reply_in(ops, ts, "Failed")
    shown = await settled(ops, ts, FAILED_BUTTONS)

    await asyncio.gather(*(ops.click(action, shown[action]["value"], user=ALICE, message_ts=ts) for _ in range(2)))
    await told(ops, "BK-JOB accepted")
    (sent,) = operations(ops, "operate_step_instance")
    assert sent["operation_code"] == code
    assert sent["step_instance_id"] == ops.bk.instances[instance_id].steps[0].step_instance_id
    await settled(ops, ts, {STOP_ACTION, OPEN_ACTION})  # running again

    ops.bk.advance(instance_id, 2)
    await ops.bk.finish(instance_id, status=3)
    await reply_in(ops, ts, then)
    message = ops.slack.message(OPS, ts)
    assert message is not None and message["text"].startswith("Succeeded")
    await settled(ops, ts, {RERUN_ACTION, OPEN_ACTION})


async def test_ignoring_the_error_lets_the_job_continue_and_finish_again(ops: Bot) -> None:
    instance_id, ts = await launch(ops)
    await ops.bk.finish(instance_id, status=4)
    await reply_in(ops, ts, "Failed")
    shown = await settled(ops, ts, FAILED_BUTTONS)
    await ops.click(IGNORE_ACTION, shown[IGNORE_ACTION]["value"], user=BOB, message_ts=ts)
    await told(ops, "ignore the error of step 1")
    assert [b["operation_code"] for b in operations(ops, "operate_step_instance")] == [3]
    assert [s.status for s in ops.bk.instances[instance_id].steps] == [6, 2]
    await ops.bk.finish(instance_id, status=4)  # the next step fails too: a new finish, reported again
    replies = await ops.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == ts and "Failed" in json.dumps(c.args), count=2
    )
    assert len(replies) == 2


async def test_retry_command_and_a_retry_when_nothing_failed(ops: Bot) -> None:
    instance_id, ts = await launch(ops)
    await ops.command(f"retry {instance_id}", user=ALICE, channel=OPS)
    await told(ops, "no failed step to act on")
    assert operations(ops, "operate_step_instance") == []
    await ops.bk.finish(instance_id, status=4)
    await reply_in(ops, ts, "Failed")
    await ops.command(f"retry {instance_id}", user=ALICE, channel=OPS)
    await told(ops, "retry the failed hosts of step 1")
    assert [b["operation_code"] for b in operations(ops, "operate_step_instance")] == [2]


# -- manual confirmation --------------------------------------------------------------------------------------------


async def waiting_for_confirmation(bot: Bot) -> tuple[int, str, dict[str, Any]]:
    instance_id, ts = await launch(bot, CONFIRM_PLAN)
    bot.bk.advance(instance_id, 1)  # the build is done: the job waits in 7, and BK-JOB sends no callback
    message = await reply_in(bot, ts, "Waiting for confirmation")
    return instance_id, ts, copy.deepcopy(message)  # as it was shown: the fake edits its own copy later


def confirm_value(message: dict[str, Any]) -> str:
    return str(_elements(message)[CONFIRM_ACTION]["value"])


def _elements(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["action_id"]: e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]}


async def test_a_confirmation_step_is_shown_and_a_confirmer_continues_it(ops: Bot, bk_api_version: str) -> None:
    instance_id, ts, message = await waiting_for_confirmation(ops)
    text = json.dumps(message)
    assert "Canary looks healthy?" in text and "go / no-go" in text
    if bk_api_version == "v3":  # the plan detail names the confirmers
        assert f"`bob` (<@{BOB}>)" in text and "JOB_RESOURCE_TRIGGER_USER" in text
    else:
        assert "does not name them" in text
    assert set(_elements(message)) == {CONFIRM_ACTION, END_CONFIRM_ACTION}
    await ops.slack.wait_for_call(  # the launch message says what the job waits for, and can still be stopped
        "chat.update", lambda c: c.args.get("ts") == ts and "Waiting for a user" in json.dumps(c.args)
    )

    await asyncio.gather(
        *(ops.click(CONFIRM_ACTION, confirm_value(message), user=BOB, message_ts=message["ts"]) for _ in range(2))
    )
    await told(ops, "BK-JOB accepted: confirm step 2")
    await told(ops, "already sent to BK-JOB")
    await ops.slack.wait_for_call(  # the question loses its buttons once answered
        "chat.update", lambda c: c.args.get("ts") == message["ts"] and "confirmed by" in json.dumps(c.args)
    )
    await ops.idle()
    answered = ops.slack.message(OPS, message["ts"])
    assert answered is not None and not _actions(answered.get("blocks"))
    (sent,) = operations(ops, "operate_step_instance")
    assert sent["operation_code"] == 6
    assert ops.bk.instances[instance_id].steps[1].status == 3
    await ops.bk.finish(instance_id, status=3)
    await reply_in(ops, ts, "Succeeded")
    assert (BOB, "confirm", "confirm step 2 (go / no-go) and continue as bob: BK-JOB accepted") in await audit(ops)


async def test_a_non_confirmer_is_told_why_and_the_trigger_user_may_confirm(ops: Bot) -> None:
    instance_id, ts, message = await waiting_for_confirmation(ops)
    await ops.click(CONFIRM_ACTION, confirm_value(message), user=CAROL, message_ts=message["ts"])
    (answer,) = await told(ops, "only the step's confirmers")
    assert "[1244016]" in answer["text"] and "`carol`" in answer["text"]
    assert ops.bk.instances[instance_id].status == 7
    # alice launched it, and the step names the trigger user's role: her click is sent (the refusal was not spent)
    await ops.click(CONFIRM_ACTION, confirm_value(message), user=ALICE, message_ts=message["ts"])
    await told(ops, "BK-JOB accepted: confirm step 2")
    assert [b["operation_code"] for b in operations(ops, "operate_step_instance")] == [6, 6]
    assert ops.bk.instances[instance_id].steps[1].status == 3


async def test_stop_here_ends_the_confirmation_and_the_poller_reports_it(ops: Bot) -> None:
    instance_id, ts, message = await waiting_for_confirmation(ops)
    await ops.click(END_CONFIRM_ACTION, confirm_value(message), user=BOB, message_ts=message["ts"])
    await told(ops, "BK-JOB accepted: stop the job at step 2")
    assert [b["operation_code"] for b in operations(ops, "operate_step_instance")] == [9]
    assert ops.bk.instances[instance_id].status == 13 and ops.bk.instances[instance_id].callbacks == []
    await reply_in(ops, ts, "Confirmation terminated")  # no callback for 13: the poller read it
    # a late click on the old message: the step no longer waits, BK-JOB's answer is explained
    await ops.click(CONFIRM_ACTION, confirm_value(message), user=BOB, message_ts=message["ts"])
    await told(ops, "already sent to BK-JOB")


async def test_a_job_waiting_for_its_confirmer_is_stopped_from_the_question(ops: Bot) -> None:
    """BK-JOB never finishes a force-stop at a confirmation (issue 23): the launch message offers no Stop there,
    a Stop from an older message is answered without a call, and the question's *Stop here* ends the job."""
    instance_id, ts, message = await waiting_for_confirmation(ops)
    running = await settled(ops, ts, {OPEN_ACTION})
    await ops.click(STOP_ACTION, running[OPEN_ACTION]["value"], user=ALICE, message_ts=ts)
    await told(ops, "Use *Stop here* on the question in the thread")
    assert operations(ops, "operate_job_instance") == []
    await ops.click(END_CONFIRM_ACTION, confirm_value(message), user=ALICE, message_ts=message["ts"])
    await reply_in(ops, ts, "Confirmation terminated")
    assert ops.bk.instances[instance_id].status == 13


async def test_a_click_slack_delivers_again_is_answered_once(ops: Bot) -> None:
    """Slack re-sends an interaction it got no timely answer for (X-Slack-Retry-Num): same payload, same action_ts."""
    instance_id, ts = await launch(ops)
    shown = await settled(ops, ts, {STOP_ACTION, OPEN_ACTION})
    payload = {
        "type": "block_actions",
        "team": {"id": "T0TEAM", "domain": "example"},
        "user": {"id": ALICE, "username": "u0alice", "team_id": "T0TEAM"},
        "api_app_id": "A0BKJOB",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": ts, "channel_id": OPS, "is_ephemeral": False},
        "trigger_id": ops.slack.new_trigger_id(),
        "channel": {"id": OPS, "name": "ops"},
        "message": {"type": "message", "ts": ts, "text": ""},
        "response_url": ops.slack.response_url(),
        "actions": [
            {
                "type": "button",
                "action_id": STOP_ACTION,
                "block_id": shown[STOP_ACTION]["value"],
                "value": shown[STOP_ACTION]["value"],
                "action_ts": "1700000000.123456",
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)})
    await ops.post_signed(body)
    await ops.post_signed(body, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    await reply_in(ops, ts, "Force-stopped")
    await ops.idle()
    assert len(ops.bk.requests("operate_job_instance")) == 1
    assert len(ops.slack.responses()) == 1  # the repeat is not even answered twice
    assert ops.bk.instances[instance_id].status == 11


# -- re-run ---------------------------------------------------------------------------------------------------------


async def test_rerun_launches_the_same_plan_and_values_once(ops: Bot) -> None:
    await ops.command(f"run {PLAN} --yes version=2.0 servers=10.0.0.7,2:10.0.0.8", user=ALICE, channel=OPS)
    await ops.bk.wait_for_request("execute_job")
    await ops.idle()
    instance_id = next(reversed(ops.bk.instances))
    ts = ops.slack.messages(OPS)[-1]["ts"]
    await ops.bk.finish(instance_id, status=3)
    await reply_in(ops, ts, "Succeeded")
    shown = await settled(ops, ts, {RERUN_ACTION, OPEN_ACTION})

    await asyncio.gather(*(ops.click(RERUN_ACTION, shown[RERUN_ACTION]["value"], user=BOB) for _ in range(2)))
    await ops.bk.wait_for_request("execute_job", count=2)
    await told(ops, "Re-run launched")
    await told(ops, "already requested")
    await ops.idle()
    first, second = (ops.bk.instances[i] for i in list(ops.bk.instances)[-2:])
    assert second.resolved_vars == first.resolved_vars
    assert second.operator == "bob"  # the person who re-ran it
    assert len(ops.bk.requests("execute_job")) == 2


async def test_rerun_in_an_approval_channel_asks_for_approval_again(ops: Bot) -> None:
    await ops.command(f"run {PLAN} --yes", user=ALICE, channel=GATED)
    await ops.idle()
    approval_ts = ops.slack.messages(GATED)[-1]["ts"]
    await ops.click("bkjob_approve", _approval_id(ops), user=BOB, channel=GATED, message_ts=approval_ts)
    await ops.bk.wait_for_request("execute_job")
    await ops.idle()
    instance_id = next(reversed(ops.bk.instances))
    await ops.bk.finish(instance_id, status=3)
    await reply_in(ops, approval_ts, "Succeeded", channel=GATED)
    shown = await settled(ops, approval_ts, {RERUN_ACTION, OPEN_ACTION}, channel=GATED)
    await ops.click(RERUN_ACTION, shown[RERUN_ACTION]["value"], user=ALICE, channel=GATED, message_ts=approval_ts)
    await told(ops, "waits for an approval")
    assert len(ops.bk.requests("execute_job")) == 1
    assert "Approval needed" in json.dumps(ops.slack.messages(GATED)[-1])


def _approval_id(bot: Bot) -> str:
    message = bot.slack.messages(GATED)[-1]
    return str(_elements(message)["bkjob_approve"]["value"])


# -- the fake's state machine through the bot's own client ------------------------------------------------------------


async def test_bk_jobs_codes_for_a_bad_code_and_the_wrong_state(ops: Bot) -> None:
    instance_id, _ = await launch(ops)
    step = ops.bk.instances[instance_id].steps[0].step_instance_id
    async with aiohttp.ClientSession() as session:
        client = create_bk_client(ops.settings(), session)
        with pytest.raises(BkApiError) as bad:
            await client.operate_job_instance(
                bk_biz_id=BIZ, job_instance_id=instance_id, operation_code=99, bk_username="alice"
            )
        assert bad.value.code == 1241002
        with pytest.raises(BkApiError) as wrong:  # a running step cannot be retried
            await client.operate_step_instance(
                bk_biz_id=BIZ, job_instance_id=instance_id, step_instance_id=step, operation_code=2, bk_username="alice"
            )
        assert wrong.value.code == 1241003
        ops.bk.hold_stops = True
        await client.operate_job_instance(
            bk_biz_id=BIZ, job_instance_id=instance_id, operation_code=1, bk_username="alice"
        )
        assert ops.bk.instances[instance_id].status == 10  # stopping, until BK-JOB's engine is done
        with pytest.raises(BkApiError) as again:
            await client.operate_job_instance(
                bk_biz_id=BIZ, job_instance_id=instance_id, operation_code=1, bk_username="alice"
            )
        assert again.value.code == 1241003
        assert await ops.bk.complete_stop(instance_id) == [200]
        assert ops.bk.instances[instance_id].status == 11


# -- two replicas on one PostgreSQL ---------------------------------------------------------------------------------


async def test_clicks_spread_over_two_replicas_send_the_retry_once(
    slack: FakeSlack, bk: FakeBkJob, pg: PgSchema, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    a, b = (
        Bot(
            slack=slack,
            bk=bk,
            db_path=tmp_path / "unused.sqlite3",
            DATABASE_URL=pg.url,
            BKJOB_CONFIG=str(policy),
            BKJOB_OPEN_MODE="off",
        )
        for _ in range(2)
    )
    await asyncio.gather(a.start(), b.start())
    try:
        instance_id, ts = await launch(a)
        await bk.finish(instance_id, status=4)
        await reply_in(a, ts, "Failed")
        shown = await settled(a, ts, FAILED_BUTTONS)
        value = shown[RETRY_FAILED_ACTION]["value"]
        await asyncio.gather(
            *(
                (a, b)[i % 2].click(RETRY_FAILED_ACTION, value, user=(ALICE, BOB)[i % 2], message_ts=ts)
                for i in range(8)
            )
        )
        answers = [p.body["text"] for p in await slack.wait_for_response(count=8, timeout=60)]
        assert sum("BK-JOB accepted" in t for t in answers) == 1
        # the others came too late (the step runs again) or while it was being sent: either way, not sent again
        assert all("already sent" in t or "no longer applies" in t for t in answers if "accepted" not in t)
        assert len(bk.requests("operate_step_instance")) == 1
    finally:
        await asyncio.gather(a.close(), b.close())
