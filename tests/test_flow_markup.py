"""Slack markup from people and from BK-JOB is shown as typed, never interpreted — over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.slack.blocks.approvals import APPROVE_ACTION, REJECT_ACTION
from tests.conftest import BIZ, Bot
from tests.fakes import FakeBkJob, FakeSlack

HOSTILE = "<!channel> <@U123> <https://evil|click> ```rm -rf /``` & co"
RAW = ("<!channel>", "<@U123>", "<https://evil", "```")
ALICE, BOB = "U0ALICE", "U0BOB"
OPS, OPEN = "C0OPS", "C0OPEN"
PLAN = 200

POLICY = f"""
[users]
{ALICE} = "alice"
{BOB} = "bob"

[channels.{OPS}]
approval = true
approvers = ["{BOB}"]

[defaults]
bk_biz_id = {BIZ}
approval = false
"""


@pytest.fixture
async def hostile_bot(slack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[Bot]:
    bk.add_plan(
        BIZ,
        PLAN,
        HOSTILE,
        [{"id": 1, "name": "msg", "category": 1, "value": HOSTILE, "description": HOSTILE}],
        steps=[{"name": HOSTILE}, {"name": "second " + HOSTILE}],
    )
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "markup.sqlite3", BKJOB_CONFIG=str(policy))
    await bot.start()
    try:
        yield bot
    finally:
        await bot.close()


def mrkdwn_texts(node: Any, *, top: bool = True) -> Iterator[str]:
    """Every string Slack reads as mrkdwn: a message's `text`, mrkdwn text objects (plain_text is never parsed)."""
    if isinstance(node, dict):
        if top and isinstance(node.get("text"), str):
            yield node["text"]
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            yield node["text"]
        for key, value in node.items():
            if key in ("blocks", "view", "elements", "fields", "text", "accessory") or isinstance(value, list | dict):
                yield from mrkdwn_texts(value, top=False)
    elif isinstance(node, list):
        for item in node:
            yield from mrkdwn_texts(item, top=False)


def interpreted(slack: FakeSlack) -> list[str]:
    """Texts the bot sent in which any hostile markup survived unescaped."""
    sent = [c.args for c in slack.calls()] + [r.body for r in slack.responses()]
    return [text for body in sent for text in mrkdwn_texts(body) if any(raw in text for raw in RAW)]


async def test_markup_from_people_and_bk_job_is_never_interpreted(hostile_bot: Bot) -> None:
    bot, slack, bk = hostile_bot, hostile_bot.slack, hostile_bot.bk
    # Usage errors echo what was typed; the help text itself shows `<job_id>`.
    await bot.command(f"run {HOSTILE}", channel=OPEN)
    # Answered in the ack itself (nothing to read first): those answers are checked with everything sent.
    acked = [await bot.answered(HOSTILE, channel=OPEN), await bot.answered("help", channel=OPEN)]
    # The form: plan name, variable default and description.
    await bot.command(f"run {PLAN}", channel=OPEN)
    await slack.wait_for_call("views.update")
    # A launch with a hostile value, a failed step with a hostile name, then history and status.
    await bot.command(f'run {PLAN} --yes "msg={HOSTILE} 2"', channel=OPEN)
    await bk.wait_for_request("execute_job")
    await bot.idle()
    instance = next(reversed(bk.instances))
    await bk.finish(instance, status=4)
    await bot.idle()
    await bot.command("history", channel=OPEN)
    await bot.command(f"status {instance}", channel=OPEN)
    # BK-JOB's own message in a refusal.
    bk.fail_next("execute_job", 1244012, HOSTILE)
    await bot.command(f'run {PLAN} --yes "msg=x"', channel=OPEN)
    # An approval request, the pending list, and a rejection with a hostile reason.
    await bot.command(f'run {PLAN} --yes "msg={HOSTILE} 3"', channel=OPS, user=ALICE)
    await bot.idle()
    request = slack.messages(OPS)[-1]
    await bot.command("pending", channel=OPS)
    approval_id = next(b for b in request["blocks"] if b["type"] == "actions")["elements"][0]["value"]
    await bot.click(REJECT_ACTION, approval_id, user=BOB, channel=OPS, message_ts=request["ts"])
    await slack.wait_for_call("views.open", count=2)
    reject_view = slack.views()[-1]
    status, _ = await bot.submit(reject_view, {"reason": HOSTILE}, user=BOB)
    assert status == 200
    await bot.idle()
    assert APPROVE_ACTION not in str(slack.message(OPS, request["ts"]))

    sent = [c.args for c in slack.calls()] + [r.body for r in slack.responses()]
    everything = " ".join([*(text for body in sent for text in mrkdwn_texts(body)), *acked])
    assert "&lt;!channel&gt;" in everything and "&lt;@U123&gt;" in everything  # shown, escaped
    assert "&lt;job_id&gt;" in everything  # the usage text's placeholder no longer vanishes
    assert "1244012" in everything and "rejected" in everything
    assert interpreted(slack) == [] and [t for t in acked if any(raw in t for raw in RAW)] == []


async def test_help_placeholders_are_escaped_so_slack_shows_them(
    slack: FakeSlack, bk: FakeBkJob, tmp_path: Path
) -> None:
    """`<bk_biz_id>` and `<your BK-JOB username>` in the bot's own help: Slack would take them for links and show
    nothing, so they go out escaped."""
    carol = "U0CAROL"
    bk.add_plan(BIZ, PLAN, "Deploy", [{"id": 1, "name": "msg", "category": 1, "value": "x"}])
    policy = tmp_path / "bkjob.toml"
    policy.write_text(
        f'[users]\n{ALICE} = "alice"\n\n[identity]\nservice_account_fallback = false\n\n'
        f'[channels.{OPS}]\nbk_biz_id = {BIZ}\napproval = true\napprovers = ["{carol}"]\n\n'
        f"[defaults]\nallowed_biz = [{BIZ}]\n"
    )
    slack.users[carol] = {"email": "carol@elsewhere.example"}
    bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "help.sqlite3", BKJOB_CONFIG=str(policy), BK_BIZ_ID="")
    await bot.start()
    try:
        texts = [await bot.answered(f"{command}", channel=OPEN, user=ALICE) for command in ("plans", "history")]
        await bot.command("run", channel=OPEN, user=ALICE)
        await bot.idle()
        # An approver with no BK-JOB user is told how to get one.
        await bot.command(f'run {PLAN} --yes "msg=1"', channel=OPS, user=ALICE)
        await bot.idle()
        request = slack.messages(OPS)[-1]
        approval_id = next(b for b in request["blocks"] if b["type"] == "actions")["elements"][0]["value"]
        await bot.click(APPROVE_ACTION, approval_id, user=carol, channel=OPS, message_ts=request["ts"])
        await bot.idle()
        sent = [c.args for c in slack.calls()] + [r.body for r in slack.responses()]
        everything = [*texts, *(text for body in sent for text in mrkdwn_texts(body))]
        joined = " ".join(everything)
        assert joined.count("--biz &lt;bk_biz_id&gt;") >= 3, everything
        assert "&lt;your BK-JOB username&gt;" in joined, everything
        assert [t for t in everything if "<bk_biz_id>" in t or "<your BK-JOB username>" in t] == []
    finally:
        await bot.close()
