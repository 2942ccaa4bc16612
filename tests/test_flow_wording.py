"""What a person reads: one icon, a Close button, whole words, mentions inside sentences, short success replies."""

from __future__ import annotations

import json

from tests.conftest import CHANNEL, PLAN, USER, Bot


async def test_the_error_form_has_one_icon_and_a_close_button(bot: Bot) -> None:
    await bot.command("run 999")  # no such plan: BK-JOB's own refusal fills the form
    (update,) = await bot.slack.wait_for_call("views.update")
    view = update.args["view"]
    assert view["close"]["text"] == "Close" and "submit" not in view
    text = view["blocks"][0]["text"]["text"]
    assert text.startswith(":x: BK-JOB refused") and ":warning:" not in text


async def test_host_errors_are_cut_at_a_word(bot: Bot) -> None:
    view = await bot.open_form()
    bad = ", ".join(f"not-a-host-{i}" for i in range(40))
    status, body = await bot.submit(view, {"servers": bad})
    assert status == 200 and body["response_action"] == "errors"
    (error,) = body["errors"].values()
    assert len(error) <= 150
    assert error.endswith("Use 10.0.0.1, 2:10.0.0.1, group:<id> or module:<id>.")
    shown = [entry.strip('"') for entry in error.removeprefix("Not hosts: ").split("…")[0].split(", ")]
    assert all(entry.startswith("not-a-host-") and entry[len("not-a-host-") :].isdigit() for entry in shown), error


async def test_a_failure_mentions_the_requester_in_a_sentence_and_a_success_is_summed_up(bot: Bot) -> None:
    await bot.command(f"run {PLAN} --yes version=1")
    await bot.command(f"run {PLAN} --yes version=2")
    await bot.bk.wait_for_request("execute_job", count=2)
    await bot.idle()
    failed, succeeded = list(bot.bk.instances)
    await bot.bk.finish(failed, status=4)
    await bot.bk.finish(succeeded, status=3)
    await bot.slack.wait_for_call("chat.postMessage", lambda c: bool(c.args.get("thread_ts")), count=2)
    await bot.idle()
    replies = {json.dumps(m["blocks"]) for m in bot.slack.messages(CHANNEL) if m.get("thread_ts")}
    failure = next(r for r in replies if "Failed" in r)
    success = next(r for r in replies if "Succeeded" in r)
    assert f"<@{USER}>, your launch failed." in failure
    assert "All 2 steps succeeded." in success and "step 1" not in success
