"""Clicks Slack sends that need no answer, and private answers that fit — over real HTTP."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.slack.blocks.runcontrol import OPEN_ACTION
from bot.slack.blocks.text import MAX_PRIVATE_TEXT
from tests.conftest import BIZ, CHANNEL, USER, Bot


def block_actions(bot: Bot, action: dict[str, Any], *, in_modal: bool) -> str:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": "T0TEAM", "domain": "example"},
        "user": {"id": USER, "username": "alice", "team_id": "T0TEAM"},
        "api_app_id": "A0BKJOB",
        "token": "legacy-verification-token",
        "trigger_id": bot.slack.new_trigger_id(),
        "actions": [{"block_id": "b", "action_ts": str(time.time()), "type": "button", **action}],
    }
    if in_modal:  # Slack sends no response_url for an action inside a modal
        payload["container"] = {"type": "view", "view_id": "V0MODAL"}
        payload["view"] = {"id": "V0MODAL", "type": "modal", "callback_id": "someone_elses", "hash": "1.a"}
    else:
        payload["container"] = {"type": "message", "message_ts": "1.0", "channel_id": CHANNEL}
        payload["channel"] = {"id": CHANNEL, "name": "ops"}
        payload["response_url"] = bot.slack.response_url()
    return urlencode({"payload": json.dumps(payload)})


@pytest.mark.parametrize(
    ("action", "in_modal"),
    [
        ({"action_id": "some_old_button", "value": "x"}, True),  # an unknown button inside a modal
        ({"action_id": "docs_link", "url": "https://example.com/runbook"}, False),  # a link button we never knew
        ({"action_id": OPEN_ACTION, "url": "https://job.example.com/api_execute/1", "value": "L1"}, False),
    ],
)
async def test_link_buttons_and_modal_clicks_are_acknowledged_silently(
    bot: Bot, action: dict[str, Any], in_modal: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        resp = await bot.post_signed(block_actions(bot, action, in_modal=in_modal))
        await bot.idle()
    assert resp.status == 200
    assert bot.slack.responses() == []  # nothing said: the browser opened the link, or there is nowhere to say it
    assert [c.method for c in bot.slack.calls() if c.method != "auth.test"] == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_an_unknown_button_in_a_message_is_still_explained(bot: Bot) -> None:
    resp = await bot.post_signed(block_actions(bot, {"action_id": "gone", "value": "x"}, in_modal=False))
    assert resp.status == 200
    (post,) = await bot.slack.wait_for_response()
    assert "not one I know" in str(post.body["text"])


async def test_private_answers_fit_and_echoes_are_short(bot: Bot) -> None:
    names = [{"id": 1000 + i, "name": f"a_rather_long_variable_name_{i:03d}", "value": "x"} for i in range(300)]
    bot.bk.add_plan(BIZ, 400, "Many variables", names)
    await bot.command("run 400 --yes no_such_variable=1")
    echo = await bot.answered("frobnicate" + "z" * 900)  # answered in the ack
    (post,) = await bot.slack.wait_for_response(count=1)
    texts = [str(post.body["text"]), echo]
    assert post.refused is None
    assert all(len(t) <= MAX_PRIVATE_TEXT for t in texts)
    long_one = next(t for t in texts if "no_such_variable" in t)
    assert long_one.endswith("…")
    assert long_one.count("<") == long_one.count(">")
    echo = next(t for t in texts if "I don't know" in t)
    assert "z" * 40 not in echo
