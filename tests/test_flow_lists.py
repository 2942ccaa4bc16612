"""`/bkjob history` and `/bkjob pending`: whole lines, honest counts, Slack's permalinks and date tokens — over HTTP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import BIZ, Bot
from tests.fakes import FakeBkJob, FakeSlack

ALICE, BOB = "U0ALICE", "U0BOB"
OPS, OPEN = "C0OPS", "C0OPEN"
LONG = 300
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
async def lists_bot(slack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[Bot]:
    bk.add_plan(BIZ, LONG, "Rotate the certificates of every edge proxy " * 4, [{"id": 1, "name": "n", "value": "1"}])
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "lists.sqlite3", BKJOB_CONFIG=str(policy))
    await bot.start()
    try:
        yield bot
    finally:
        await bot.close()


async def answer(bot: Bot, text: str, channel: str) -> str:
    before = len(bot.slack.responses())
    await bot.command(text, channel=channel, user=ALICE)
    await bot.idle()
    (post,) = bot.slack.responses()[before:]
    return str(post.body["text"])


def check_whole(text: str) -> None:
    """Every line is a whole entry: no cut mark, every link and date token closed."""
    assert "…" not in text.replace("… and", "")
    for line in text.splitlines():
        assert line.count("<") == line.count(">"), line


async def test_history_shows_what_fits_and_says_how_many_more(lists_bot: Bot) -> None:
    for i in range(20):
        await lists_bot.command(f"run {LONG} --yes n={i}", channel=OPEN, user=ALICE)
    await lists_bot.bk.wait_for_request("execute_job", count=20, timeout=60)
    await lists_bot.idle()
    text = await answer(lists_bot, "history 20", OPEN)
    assert len(text) <= 3000
    check_whole(text)
    shown = len([line for line in text.splitlines() if line.startswith("• ")])
    assert 0 < shown < 20
    assert f"*The last {shown} launches here:*" in text
    assert f"… and {20 - shown} older not shown" in text
    # Each reader sees the launch time in their own zone; UTC is only the fallback.
    assert re.search(r"<!date\^\d+\^\{date_short_pretty\} at \{time\}\|\d{4}-\d\d-\d\d \d\d:\d\d UTC>", text)

    few = await answer(lists_bot, "history 2", OPEN)
    assert "*The last 2 launches here:*" in few and "more" not in few


async def test_pending_links_come_from_slack_and_are_cached(lists_bot: Bot) -> None:
    for i in range(2):
        await lists_bot.command(f"run {LONG} --yes n={i}", channel=OPS, user=ALICE)
    await lists_bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("channel") == OPS, count=2)
    await lists_bot.idle()
    text = await answer(lists_bot, "pending", OPS)
    check_whole(text)
    assert "*2 approval requests waiting here:*" in text
    for message in lists_bot.slack.messages(OPS):
        link = f"https://fake-workspace.slack.com/archives/{OPS}/p{message['ts'].replace('.', '')}"
        assert f"<{link}|" in text  # Slack's own link, with the workspace's domain
    assert "expires <!date^" in text
    asked = len(lists_bot.slack.calls("chat.getPermalink"))
    assert asked == 2
    await answer(lists_bot, "pending", OPS)
    assert len(lists_bot.slack.calls("chat.getPermalink")) == asked  # cached: a permalink never changes
