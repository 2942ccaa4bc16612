"""Run control in every state BK-JOB allows (issue 23, points 4-7), over real HTTP against the fakes, in both API
versions: a rolling pause is no confirmation, a job waiting at a confirmation is ended by *Stop here* (BK-JOB never
finishes a force-stop there), retry, ignore and *Next step* where BK-JOB allows them, and clicks checked against
the job's state before anything is sent."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from bot.bkjob.client import create_bk_client
from bot.bkjob.errors import BkApiError
from bot.slack.blocks.runcontrol import (
    CONFIRM_ACTION,
    CONTINUE_ROLLING_ACTION,
    END_CONFIRM_ACTION,
    IGNORE_ACTION,
    NEXT_STEP_ACTION,
    OPEN_ACTION,
    RERUN_ACTION,
    RETRY_FAILED_ACTION,
    RETRY_STEP_ACTION,
    STOP_ACTION,
)
from tests.conftest import BIZ, Bot
from tests.test_flow_operations import (
    ALICE,
    BOB,
    FAILED_BUTTONS,
    OPS,
    launch,
    operations,
    ops,
    reply_in,
    settled,
    told,
    waiting_for_confirmation,
)

__all__ = ["ops"]  # the fixture, shared with test_flow_operations

ROLLING_PLAN = 300
STOPPED_BUTTONS = {RETRY_FAILED_ACTION, NEXT_STEP_ACTION, RETRY_STEP_ACTION, RERUN_ACTION, OPEN_ACTION}


def _elements(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["action_id"]: e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]}


# -- point 4: a rolling pause ---------------------------------------------------------------------------------------


async def test_a_rolling_pause_is_shown_as_one_and_continued_with_13(ops: Bot) -> None:
    ops.bk.add_plan(BIZ, ROLLING_PLAN, "Rolling deploy", [], [{"name": "roll out", "rolling": True}, {"name": "check"}])
    instance_id, ts = await launch(ops, ROLLING_PLAN)
    ops.bk.pause_rolling(instance_id, 0)  # a batch is done; BK-JOB waits (job and step in 7) for "continue rolling"
    message = await reply_in(ops, ts, "Rolling paused")
    assert "Waiting for confirmation" not in json.dumps(ops.slack.thread(OPS, ts))
    assert set(_elements(message)) == {CONTINUE_ROLLING_ACTION}
    await settled(ops, ts, {STOP_ACTION, OPEN_ACTION})  # BK-JOB stops a job at a rolling pause

    value = _elements(message)[CONTINUE_ROLLING_ACTION]["value"]
    await ops.click(CONTINUE_ROLLING_ACTION, value, user=ALICE, message_ts=message["ts"])
    await told(ops, "BK-JOB accepted: continue the rolling of step 1")
    assert [b["operation_code"] for b in operations(ops, "operate_step_instance")] == [13]
    assert ops.bk.instances[instance_id].status == 2 and ops.bk.instances[instance_id].steps[0].status == 2


async def test_bk_job_refuses_a_confirmation_of_a_rolling_pause(ops: Bot) -> None:
    """The fake as BK-JOB: 6 and 9 want a manual-confirmation step; 13 wants a rolling step in 7."""
    ops.bk.add_plan(BIZ, ROLLING_PLAN, "Rolling deploy", [], [{"name": "roll out", "rolling": True}])
    instance_id, _ = await launch(ops, ROLLING_PLAN)
    ops.bk.pause_rolling(instance_id, 0)
    step = ops.bk.instances[instance_id].steps[0].step_instance_id
    async with aiohttp.ClientSession() as session:
        client = create_bk_client(ops.settings(), session)
        for code in (6, 9):
            with pytest.raises(BkApiError) as refused:
                await client.operate_step_instance(
                    bk_biz_id=BIZ,
                    job_instance_id=instance_id,
                    step_instance_id=step,
                    operation_code=code,
                    bk_username="alice",
                )
            assert refused.value.code == 1241003


# -- point 5: a job waiting at a confirmation is ended by "Stop here" ------------------------------------------------


async def test_bk_job_never_finishes_a_stop_at_a_confirmation(ops: Bot) -> None:
    """JobListener.stopJob sends the waiting step a stop that ConfirmStepEventHandler ignores: 10 for ever."""
    instance_id, _, _ = await waiting_for_confirmation(ops)
    async with aiohttp.ClientSession() as session:
        client = create_bk_client(ops.settings(), session)
        await client.operate_job_instance(
            bk_biz_id=BIZ, job_instance_id=instance_id, operation_code=1, bk_username="alice"
        )
    assert await ops.bk.complete_stop(instance_id) == []
    inst = ops.bk.instances[instance_id]
    assert inst.status == 10 and inst.steps[1].status == 7 and inst.callbacks == []


async def test_a_job_waiting_for_its_confirmer_offers_stop_here_not_stop(ops: Bot) -> None:
    instance_id, ts, message = await waiting_for_confirmation(ops)
    await settled(ops, ts, {OPEN_ACTION})  # no Stop on the launch message: the question's "Stop here" ends it
    await ops.command(f"stop {instance_id}", user=ALICE, channel=OPS)
    (answer,) = await told(ops, "Stop here")
    assert "nothing was sent" in answer["text"]
    assert operations(ops, "operate_job_instance") == []
    assert ops.bk.instances[instance_id].status == 7
    value = _elements(message)[END_CONFIRM_ACTION]["value"]
    await ops.click(END_CONFIRM_ACTION, value, user=BOB, message_ts=message["ts"])
    await reply_in(ops, ts, "Confirmation terminated")
    assert [b["operation_code"] for b in operations(ops, "operate_step_instance")] == [9]


# -- point 6: retry, ignore and next step in every state BK-JOB allows them ------------------------------------------


async def test_a_stopped_job_can_be_retried_or_go_on_with_its_next_step(ops: Bot) -> None:
    instance_id, ts = await launch(ops)
    shown = await settled(ops, ts, {STOP_ACTION, OPEN_ACTION})
    await ops.click(STOP_ACTION, shown[STOP_ACTION]["value"], user=ALICE, message_ts=ts)
    await reply_in(ops, ts, "Force-stopped")
    shown = await settled(ops, ts, STOPPED_BUTTONS)  # BK-JOB retries a step in 11 and goes on after it; no ignore

    await ops.click(NEXT_STEP_ACTION, shown[NEXT_STEP_ACTION]["value"], user=ALICE, message_ts=ts)
    await told(ops, "BK-JOB accepted: leave the stopped step 1 and go on with the next step")
    assert [b["operation_code"] for b in operations(ops, "operate_step_instance")] == [11]
    inst = ops.bk.instances[instance_id]
    assert inst.status == 2 and [s.status for s in inst.steps] == [11, 2]
    await settled(ops, ts, {STOP_ACTION, OPEN_ACTION})  # running again
    await ops.bk.finish(instance_id, status=3, step_statuses=[11, 3])
    replies = await ops.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == ts and "Succeeded" in json.dumps(c.args)
    )
    assert len(replies) == 1


async def test_an_abnormal_end_can_be_retried_or_its_error_ignored(ops: Bot) -> None:
    instance_id, ts = await launch(ops)
    await ops.bk.finish(instance_id, status=9, step_statuses=[9, 1])
    await reply_in(ops, ts, "Abnormal")
    shown = await settled(ops, ts, FAILED_BUTTONS)
    await ops.click(IGNORE_ACTION, shown[IGNORE_ACTION]["value"], user=ALICE, message_ts=ts)
    await told(ops, "BK-JOB accepted: ignore the error of step 1")
    assert [b["operation_code"] for b in operations(ops, "operate_step_instance")] == [3]
    assert [s.status for s in ops.bk.instances[instance_id].steps] == [6, 2]


# -- point 7: a click is checked against the state before anything is sent -------------------------------------------


async def test_a_confirm_naming_a_step_that_does_not_wait_is_not_sent(ops: Bot) -> None:
    instance_id, _, message = await waiting_for_confirmation(ops)
    launch_id = str(_elements(message)[CONFIRM_ACTION]["value"]).partition(":")[0]
    build = ops.bk.instances[instance_id].steps[0].step_instance_id  # the finished first step of the same job
    await ops.click(CONFIRM_ACTION, f"{launch_id}:{build}", user=BOB, message_ts=message["ts"])
    (answer,) = await told(ops, "does not wait for a confirmation")
    assert "Nothing was sent" in answer["text"]
    assert operations(ops, "operate_step_instance") == []
    assert ops.bk.instances[instance_id].status == 7


async def test_a_stop_of_an_ended_job_is_answered_without_a_call(ops: Bot) -> None:
    instance_id, ts = await launch(ops)
    shown = await settled(ops, ts, {STOP_ACTION, OPEN_ACTION})
    ops.bk.advance(instance_id, 2)
    await ops.bk.finish(instance_id, status=3)
    await reply_in(ops, ts, "Succeeded")
    await ops.click(STOP_ACTION, shown[STOP_ACTION]["value"], user=ALICE, message_ts=ts)
    (answer,) = await told(ops, "no longer applies")
    assert "Succeeded" in answer["text"] or "succeeded" in answer["text"]
    assert operations(ops, "operate_job_instance") == []
    await settled(ops, ts, {RERUN_ACTION, OPEN_ACTION})
    await ops.command(f"retry {instance_id}", user=ALICE, channel=OPS)  # nothing failed: nothing to retry
    await told(ops, "no failed step to act on")
    assert operations(ops, "operate_step_instance") == []


# -- point 3: the plan's step that a waiting step is, with disabled steps in v3's plan detail ------------------------

PAIRED_PLAN = 400


def _gate(name: str, users: list[str], message: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": 3,
        "execute_type": 3,
        "script_content": None,
        "account": None,
        "account_id": None,
        "ip_list": [],
        "confirm_message": message,
        "confirm_users": users,
        "confirm_roles": [],
        **extra,
    }


async def test_a_disabled_step_before_the_gate_does_not_shift_its_question(ops: Bot) -> None:
    """v3's plan detail lists disabled steps, which a run does not have: pairing by position shows the wrong one."""
    steps = [
        {"name": "build"},
        _gate("old gate", ["mallory"], "Stale question", disabled=True),
        _gate("go / no-go", ["bob"], "Canary healthy?"),
        {"name": "roll out"},
    ]
    ops.bk.add_plan(BIZ, PAIRED_PLAN, "Gated release", [], steps)
    instance_id, ts = await launch(ops, PAIRED_PLAN)
    assert [s.name for s in ops.bk.instances[instance_id].steps] == ["build", "go / no-go", "roll out"]
    ops.bk.advance(instance_id, 1)
    text = json.dumps(await reply_in(ops, ts, "Waiting for confirmation"))
    assert "Canary healthy?" in text and "Stale question" not in text and "mallory" not in text


async def test_an_ambiguous_gate_names_no_confirmers_rather_than_the_wrong_ones(ops: Bot, bk_api_version: str) -> None:
    steps = [
        {"name": "build"},
        _gate("gate", ["mallory"], "First question"),
        {"name": "deploy"},
        _gate("gate", ["bob"], "Second question"),
    ]
    ops.bk.add_plan(BIZ, PAIRED_PLAN, "Twice gated", [], steps)
    instance_id, ts = await launch(ops, PAIRED_PLAN)
    ops.bk.advance(instance_id, 3)  # the second gate waits
    text = json.dumps(await reply_in(ops, ts, "Waiting for confirmation"))
    assert "mallory" not in text and "First question" not in text
    if bk_api_version == "v2":  # v2 pairs by step_id: the right step, even with its name twice
        assert "Second question" in text
