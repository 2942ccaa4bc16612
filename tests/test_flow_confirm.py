"""Who may answer a manual confirmation (issue 23, points 1 and 2), over real HTTP against the fakes, in both API
versions. BK-JOB lets anyone pass a confirmation step that names no role (users only, or nobody), and with the
service-account fallback every unmapped person is BK-JOB's trigger user of every other's launch: the bot decides
itself, on the Slack person who clicks, with the channel's `[operators] confirm` (default: the requester and the
channel's approvers); where BK-JOB names confirm users, the clicker's BK-JOB user must also be one of them."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.slack.blocks.runcontrol import CONFIRM_ACTION, END_CONFIRM_ACTION, STOP_ACTION
from tests.conftest import APP_CODE, APP_SECRET, BIZ, Bot
from tests.fakes import FakeBkJob, FakeSlack
from tests.test_flow_operations import CONFIRM_PLAN, CONFIRM_STEPS, audit, launch, operations, reply_in, told

OPS, OPEN = "C0OPS", "C0OPEN"
ALICE, BOB, CAROL, DAVE = "U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"
ERIN, FRANK = "U0ERIN", "U0FRANK"  # mapped to nobody: with the fallback both run as the service account
USERS_ONLY_PLAN = 201

POLICY = f"""
[users]
{ALICE} = "alice"
{BOB} = "bob"
{CAROL} = "carol"
{DAVE} = "dave"

[identity]
service_account_fallback = true

[channels.{OPS}]
bk_biz_id = {BIZ}
allowed_biz = [{BIZ}]
approvers = ["{BOB}"]

[channels.{OPS}.operators]
confirm = ["requester", "approvers", "{CAROL}"]

[channels.{OPEN}]
bk_biz_id = {BIZ}
allowed_biz = [{BIZ}]

[channels.{OPEN}.operators]
stop = ["requester"]

[defaults]
allowed_biz = []
"""

# The same go / no-go step, naming the user bob and no role: BK-JOB itself would let anyone answer it.
USERS_ONLY_STEPS: list[dict[str, Any]] = copy.deepcopy(CONFIRM_STEPS)
USERS_ONLY_STEPS[1]["confirm_roles"] = []


@pytest.fixture
async def people() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(token="xoxb-test", users={ERIN: {}, FRANK: {}}) as fake:
        yield fake


@pytest.fixture
async def bk(bk_api_version: str) -> AsyncIterator[FakeBkJob]:
    version = "v3" if bk_api_version == "v3" else "v2"
    async with FakeBkJob(
        app_code=APP_CODE, app_secret=APP_SECRET, api_version=version, skip_user_auth=version == "v2"
    ) as fake:
        fake.add_plan(BIZ, CONFIRM_PLAN, "Canary release", [], CONFIRM_STEPS)
        fake.add_plan(BIZ, USERS_ONLY_PLAN, "Canary release (users only)", [], USERS_ONLY_STEPS)
        yield fake


@pytest.fixture
async def ops(people: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[Bot]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    bot = Bot(
        slack=people,
        bk=bk,
        db_path=tmp_path / "confirm.sqlite3",
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


Click = Callable[[str, str], Awaitable[object]]


async def waiting(bot: Bot, plan: int, channel: str = OPS, user: str = ALICE) -> tuple[int, str, dict[str, Any]]:
    instance_id, ts = await launch(bot, plan, channel=channel, user=user)
    bot.bk.advance(instance_id, 1)  # the build is done: the job waits in 7
    message = await reply_in(bot, ts, "Waiting for confirmation", channel=channel)
    return instance_id, ts, copy.deepcopy(message)


def clicker(bot: Bot, message: dict[str, Any], channel: str = OPS) -> Click:
    value = next(e["value"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"] if e["value"])

    async def click(action: str, user: str) -> object:
        return await bot.click(action, value, user=user, channel=channel, message_ts=message["ts"])

    return click


async def test_the_channel_policy_says_who_may_answer_a_confirmation(ops: Bot) -> None:
    instance_id, _, message = await waiting(ops, USERS_ONLY_PLAN)
    text = json.dumps(message)
    assert "the requester" in text and "the channel's approvers" in text  # the policy's confirmers are named
    click = clicker(ops, message)
    await click(CONFIRM_ACTION, DAVE)  # neither the requester, an approver nor listed: refused, nothing sent
    (answer,) = await told(ops, "may answer a confirmation")
    assert "nothing was sent" in answer["text"]
    await click(END_CONFIRM_ACTION, DAVE)
    await told(ops, "may answer a confirmation", count=2)
    assert operations(ops, "operate_step_instance") == []
    assert ops.bk.instances[instance_id].status == 7
    assert (DAVE, "confirm_refused") in [(actor, action) for actor, action, _ in await audit(ops)]
    await click(CONFIRM_ACTION, BOB)  # an approver, and the BK-JOB user the step names
    await told(ops, "BK-JOB accepted: confirm step 2")
    assert [b["operation_code"] for b in operations(ops, "operate_step_instance")] == [6]


async def test_where_bk_job_names_confirm_users_the_clicker_must_act_as_one(ops: Bot, bk_api_version: str) -> None:
    instance_id, _, message = await waiting(ops, USERS_ONLY_PLAN)
    click = clicker(ops, message)
    await click(CONFIRM_ACTION, CAROL)  # the policy lists her, but she acts as carol and the step names bob
    if bk_api_version == "v2":  # v2 names nobody: the policy alone decides
        await told(ops, "BK-JOB accepted: confirm step 2")
        return
    (answer,) = await told(ops, "names the step's confirmers")
    assert "`carol`" in answer["text"] and "`bob`" in answer["text"] and "nothing was sent" in answer["text"]
    assert operations(ops, "operate_step_instance") == []
    await click(CONFIRM_ACTION, ALICE)  # the requester, as alice: not one of them either
    await told(ops, "names the step's confirmers", count=2)
    assert operations(ops, "operate_step_instance") == []
    assert ops.bk.instances[instance_id].status == 7
    await click(END_CONFIRM_ACTION, BOB)
    await told(ops, "BK-JOB accepted: stop the job at step 2")


async def test_the_service_account_fallback_does_not_let_another_person_confirm(ops: Bot) -> None:
    """ERIN and FRANK both run as the service account, BK-JOB's trigger user of either's launch; the policy is
    checked on the Slack person: FRANK, refused Stop, may not confirm ERIN's gate either."""
    instance_id, ts, message = await waiting(ops, CONFIRM_PLAN, channel=OPEN, user=ERIN)
    assert ops.bk.instances[instance_id].operator == "ops-bot"
    click = clicker(ops, message, channel=OPEN)
    # The launch message offers no Stop at a confirmation (tests/test_flow_runstates.py): an older Stop button's
    # value, the launch's ID, as the question's buttons carry it.
    stop_value = next(
        e["value"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"] if e["value"]
    ).partition(":")[0]
    await ops.click(STOP_ACTION, stop_value, user=FRANK, channel=OPEN, message_ts=ts)
    await told(ops, "may stop a launch")
    await click(CONFIRM_ACTION, FRANK)
    await told(ops, "may answer a confirmation")
    await click(END_CONFIRM_ACTION, FRANK)
    await told(ops, "may answer a confirmation", count=2)
    assert operations(ops, "operate_step_instance") == [] and operations(ops, "operate_job_instance") == []
    await click(CONFIRM_ACTION, ERIN)  # the requester: the policy allows her, the step's trigger role too
    await told(ops, "BK-JOB accepted: confirm step 2")
    assert ops.bk.instances[instance_id].steps[1].status == 3


async def test_the_question_notifies_who_may_answer_and_is_shown_in_the_channel_once(ops: Bot) -> None:
    """Point 18: v2 names no BK-JOB confirmer and a thread reply notifies nobody: the question mentions the people
    the channel lets answer (the requester, the approvers, those listed) and is broadcast to the channel, once."""
    instance_id, ts, message = await waiting(ops, CONFIRM_PLAN)
    assert message.get("subtype") == "thread_broadcast" and message["thread_ts"] == ts
    for person in (ALICE, BOB, CAROL):
        assert f"<@{person}>" in message["text"], message["text"]
    await asyncio.sleep(0.5)  # the poller reads the waiting job again every 0.1 s
    await ops.idle()
    asked = [c for c in ops.slack.calls("chat.postMessage") if "Waiting for confirmation" in json.dumps(c.args)]
    assert len(asked) == 1 and asked[0].args.get("reply_broadcast") in (True, "true")
    assert ops.bk.instances[instance_id].status == 7
    assert [m["ts"] for m in ops.slack.thread(OPS, ts) if m.get("subtype") == "thread_broadcast"] == [message["ts"]]
