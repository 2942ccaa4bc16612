"""End to end: the modal path, from the loading view to the launch, with inline errors and refusals."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import BIZ, CHANNEL, PLAN, USER, Bot, form_state

PASSWORD = "hunter2-plan-secret"


def inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Input blocks by action_id (the variable name)."""
    return {b["element"]["action_id"]: b for b in view["blocks"] if b["type"] == "input"}


async def test_modal_opens_loading_then_shows_every_variable_prefilled(bot: Bot) -> None:
    view = await bot.open_form(f"run {PLAN} version=3.1")
    (opened,) = bot.slack.calls("views.open")
    assert "Reading plan *100*" in json.dumps(opened.args["view"])
    (update,) = bot.slack.calls("views.update")
    # The loading view is filled in place (same view, with the hash views.open returned).
    assert view["id"] == update.args["view_id"] == view["root_view_id"] and update.args.get("hash")
    assert view.get("previous_view_id") is None and bot.slack.calls("views.push") == []

    assert view["title"]["text"] == "Deploy web" and view["callback_id"] == "bkjob_run"
    fields = inputs(view)
    assert list(fields) == ["servers", "version", "env", "ports"]  # the password is not an input
    assert fields["servers"]["element"]["initial_value"] == "10.0.0.1"
    assert fields["servers"]["element"]["multiline"] is True
    assert fields["version"]["element"]["initial_value"] == "3.1"  # the command line wins over the default
    assert fields["env"]["element"]["initial_value"] == "prod"
    assert fields["ports"]["element"]["initial_value"] == "80 443"
    assert fields["version"]["hint"]["text"] == "release to deploy"
    assert "db_password* (password): set, keeps the plan's value" in json.dumps(view)
    assert PASSWORD not in json.dumps([c.args for c in bot.slack.calls()])
    assert view["private_metadata"]  # the channel travels here, signed
    assert bot.bk.requests("execute_job") == []


async def test_unchanged_form_launches_with_the_plans_values(bot: Bot) -> None:
    view = await bot.open_form()
    status, answer = await bot.submit(view, {})
    assert (status, answer) == (200, None)
    (req,) = await bot.bk.wait_for_request("execute_job")
    assert "global_vars" not in req.body
    assert req.body["bk_biz_id"] == BIZ and req.body["bk_job_id"] == PLAN
    await bot.slack.wait_for_call("chat.update")


async def test_bad_host_entries_are_inline_errors_and_nothing_is_sent(bot: Bot) -> None:
    view = await bot.open_form()
    status, answer = await bot.submit(view, {"servers": "10.0.0.1\nnot-a-host\n300.1.1.1", "version": "2.0"})
    assert status == 200
    assert answer["response_action"] == "errors"
    (block_id,) = answer["errors"]
    assert block_id == "var:3:id:436"
    assert "not-a-host" in answer["errors"][block_id] and "300.1.1.1" in answer["errors"][block_id]
    assert len(answer["errors"][block_id]) <= 150
    assert bot.bk.requests("execute_job") == []
    assert bot.slack.calls("chat.postMessage") == [] and bot.slack.calls("chat.postEphemeral") == []

    # The person fixes the field in the same modal and submits again: now it launches.
    status, answer = await bot.submit(view, {"servers": "10.0.0.1, 10.0.0.9", "version": "2.0"})
    assert (status, answer) == (200, None)
    (req,) = await bot.bk.wait_for_request("execute_job")
    assert req.body["global_vars"][0]["target_server"] == {
        "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.0.1"}, {"bk_cloud_id": 0, "ip": "10.0.0.9"}]
    }


async def test_ipv6_entry_is_an_inline_error(bot: Bot) -> None:
    view = await bot.open_form()
    _, answer = await bot.submit(view, {"servers": "fe80::1"})
    assert answer["response_action"] == "errors"
    assert "IPv6" in answer["errors"]["var:3:id:436"]
    assert bot.bk.requests("execute_job") == []


async def test_command_line_password_override_is_refused_in_the_modal(bot: Bot) -> None:
    view = await bot.open_form(f"run {PLAN} db_password=typed-in-chat")
    shown = json.dumps(view)
    assert "db_password" in shown and "password" in shown and "keeps the plan's value" in shown
    assert view.get("submit") is None  # an error view: nothing to launch from it
    assert "typed-in-chat" not in json.dumps([c.args for c in bot.slack.calls()])
    assert bot.bk.requests("execute_job") == []


async def test_forged_password_field_in_a_submission_is_refused(bot: Bot) -> None:
    """Slack never shows a password input, but a hand-made submission must not smuggle one in either."""
    view = await bot.open_form()
    state = form_state(view, {})
    state["var:4:id:438"] = {"db_password": {"type": "plain_text_input", "value": "smuggled-secret"}}
    status, answer = await submit_state(bot, view, state)
    assert (status, answer) == (200, None)
    (told,) = await bot.slack.wait_for_call("chat.postEphemeral")
    assert told.args["channel"] == CHANNEL and told.args["user"] == USER
    assert "db_password" in told.args["text"] and "password" in told.args["text"]
    assert "smuggled-secret" not in json.dumps([c.args for c in bot.slack.calls()])
    assert bot.bk.requests("execute_job") == []


async def submit_state(bot: Bot, view: dict[str, Any], state: dict[str, Any]) -> Any:
    """Submit with an explicit `view.state.values` (Bot.submit builds it from the view's inputs)."""
    blocks_by_id = {block_id: next(iter(actions)) for block_id, actions in state.items()}
    values = {action: actions[action]["value"] for actions in state.values() for action in actions}
    extra = [
        {"type": "input", "block_id": block_id, "element": {"type": "plain_text_input", "action_id": action}}
        for block_id, action in blocks_by_id.items()
        if block_id not in {b.get("block_id") for b in view["blocks"]}
    ]
    return await bot.submit({**view, "blocks": view["blocks"] + extra}, values)


async def test_tampered_metadata_is_refused(bot: Bot) -> None:
    view = await bot.open_form()
    status, answer = await bot.submit({**view, "private_metadata": view["private_metadata"] + "x"}, {})
    assert status == 200
    assert answer["response_action"] == "update"
    assert "not issued to you" in json.dumps(answer["view"])
    assert bot.bk.requests("execute_job") == []


async def test_form_submitted_by_another_user_is_refused(bot: Bot) -> None:
    view = await bot.open_form()
    _, answer = await bot.submit(view, {}, user="U0MALLORY")
    assert answer["response_action"] == "update"
    assert bot.bk.requests("execute_job") == []


async def test_launch_goes_to_the_channel_the_command_came_from(bot: Bot) -> None:
    await bot.command(f"run {PLAN}", channel="C0OTHER")
    (update,) = await bot.slack.wait_for_call("views.update")
    view = bot.slack.view(update.args["view_id"])
    assert view is not None
    await bot.submit(view, {"version": "2.0"})
    (post,) = await bot.slack.wait_for_call("chat.postMessage")
    assert post.args["channel"] == "C0OTHER"
    await bot.slack.wait_for_call("chat.update")


async def test_double_submission_launches_once(bot: Bot) -> None:
    view = await bot.open_form()
    assert (await bot.submit(view, {"version": "2.0"}))[0] == 200
    assert (await bot.submit(view, {"version": "2.0"}))[0] == 200
    await bot.slack.wait_for_call("chat.update")
    assert len(bot.bk.requests("execute_job")) == 1
    assert len(bot.slack.calls("chat.postMessage")) == 1


async def test_unknown_plan_shows_1243009_in_the_modal(bot: Bot) -> None:
    await bot.command("run 999")
    (update,) = await bot.slack.wait_for_call("views.update")
    shown = json.dumps(update.args["view"])
    assert "[1243009] Job plan does not exist" in shown
    assert bot.bk.requests("execute_job") == []


async def test_plan_deleted_before_submit_shows_1244012_ephemerally(bot: Bot) -> None:
    view = await bot.open_form()
    del bot.bk.plans[(BIZ, PLAN)]  # the cached plan detail still builds the launch; execute_job refuses
    await bot.submit(view, {"version": "2.0"})
    (told,) = await bot.slack.wait_for_call("chat.postEphemeral")
    assert told.args["user"] == USER and told.args["channel"] == CHANNEL
    assert "[1244012] Job plan does not exist" in told.args["text"]
    (update,) = await bot.slack.wait_for_call("chat.update")
    assert update.args["text"].startswith("Not launched")
    assert len(bot.bk.requests("execute_job")) == 1 and bot.bk.instances == {}


async def test_not_in_channel_on_submit_explains_by_direct_message(bot: Bot) -> None:
    view = await bot.open_form()
    bot.slack.not_in_channel(CHANNEL)
    await bot.submit(view, {"version": "2.0"})
    (dm,) = await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args["channel"] == USER)
    assert "not in this channel" in dm.args["text"]
    assert bot.bk.requests("execute_job") == []


async def test_closing_the_loading_form_early_is_not_an_error(bot: Bot) -> None:
    """The person closes "Reading plan…" before the plan is read: Slack answers the fill `not_found`, and that is
    their choice, not a failure to warn them about."""
    bot.bk.delay_next("get_job_detail", 0.5)
    bot.slack.observe(call=lambda call, answer: _close_on_open(bot, call, answer))
    await bot.command(f"run {PLAN}")
    (update,) = await bot.slack.wait_for_call("views.update")
    await bot.idle()
    assert bot.slack.status_of(update) == 200 and bot.slack.view(update.args["view_id"]) is not None
    assert [r.body.get("text") for r in bot.slack.responses()] == []  # no warning follows


def _close_on_open(bot: Bot, call: Any, answer: dict[str, Any]) -> None:
    if call.method == "views.open" and answer.get("ok"):
        bot.slack.close_view(answer["view"]["id"])
