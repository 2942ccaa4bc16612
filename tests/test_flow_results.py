"""Results that always arrive: the poller, the outbox, progress, reconciliation — over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.app import OUTBOX, STORE
from bot.slack.blocks.text import notice
from tests.conftest import CHANNEL, PLAN, Bot
from tests.fakes import FakeBkJob, FakeSlack, SlackCall


@pytest.fixture
async def quick(slack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[Bot]:
    """A bot whose poller steps in almost at once (no waiting out the 60 s production grace)."""
    bot = Bot(
        slack=slack,
        bk=bk,
        db_path=tmp_path / "quick.sqlite3",
        CALLBACK_GRACE="0.1",
        PROGRESS_INTERVAL="0.1",
        BK_TIMEOUT="0.5",
        RECONCILE_WINDOW="0.5",
    )
    await bot.start()
    try:
        yield bot
    finally:
        await bot.close()


async def launch(bot: Bot, text: str = f"run {PLAN} --yes") -> tuple[int, str]:
    await bot.command(text)
    await bot.bk.wait_for_request("execute_job")
    await bot.idle()
    ts = bot.slack.messages(CHANNEL)[0]["ts"]
    return next(reversed(bot.bk.instances)), ts


async def reply_in(bot: Bot, ts: str, needle: str, wait: float = 10.0) -> dict[str, object]:
    await bot.slack.wait_for_call(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == ts and needle in json.dumps(c.args),
        timeout=wait,
    )
    await bot.idle()
    found = [m for m in bot.slack.thread(CHANNEL, ts) if needle in json.dumps(m)]
    assert len(found) == 1, bot.slack.thread(CHANNEL, ts)
    return found[0]


async def test_lost_callback_is_recovered_by_the_poller(quick: Bot) -> None:
    instance_id, ts = await launch(quick)
    await quick.bk.finish(instance_id, status=3, callback=False)  # BK-JOB's callback never arrives
    await reply_in(quick, ts, "Succeeded")
    launch_message = quick.slack.message(CHANNEL, ts)
    assert launch_message is not None and launch_message["text"].startswith("Succeeded")


async def test_callbacks_off_sends_no_callback_url_and_the_poller_reports(
    slack: FakeSlack, bk: FakeBkJob, tmp_path: Path
) -> None:
    # PROGRESS_INTERVAL paces the polls: a poll that finds the job still running must not push the next one past
    # the wait below (a race under load).
    bot = Bot(
        slack=slack,
        bk=bk,
        db_path=tmp_path / "off.sqlite3",
        BK_CALLBACK="off",
        CALLBACK_GRACE="0.1",
        PROGRESS_INTERVAL="0.1",
    )
    await bot.start()
    try:
        instance_id, ts = await launch(bot)
        (req,) = bot.bk.requests("execute_job")
        assert "bk_callback_url" not in req.body
        await bot.bk.finish(instance_id, status=4)
        await reply_in(bot, ts, "Failed")
    finally:
        await bot.close()


async def test_callback_and_poller_racing_give_one_reply(quick: Bot) -> None:
    instance_id, ts = await launch(quick)
    await quick.bk.finish(instance_id, status=3, callback=False)
    # The poller is due within 0.1 s: the callback and the poll race for the same result.
    assert await quick.bk.send_callback(instance_id) == 200
    await reply_in(quick, ts, "Succeeded")
    assert await quick.bk.send_callback(instance_id) == 200
    await quick.idle()
    assert len(quick.slack.thread(CHANNEL, ts)) == 1


async def test_restart_with_a_job_still_running_loses_nothing(quick: Bot) -> None:
    instance_id, ts = await launch(quick)
    await quick.stop()
    statuses = await quick.bk.finish(instance_id, status=3)  # the bot is down: the callback fails, no retry
    assert statuses == []
    await quick.start()
    await reply_in(quick, ts, "Succeeded")


async def test_live_progress_is_shown_and_edits_are_throttled(quick: Bot) -> None:
    instance_id, ts = await launch(quick)
    quick.bk.advance(instance_id, done_steps=1)
    # BK-JOB's total_time is null while the job runs: the elapsed time is counted from its start.
    await quick.slack.wait_for_call(
        "chat.update",
        lambda c: (
            c.args.get("ts") == ts
            and "1 of 2 steps done, running *step 2*" in json.dumps(c.args)
            and "elapsed" in json.dumps(c.args)
        ),
        timeout=10,
    )
    edits = len(quick.slack.calls("chat.update"))
    polls = len(quick.bk.requests("get_job_instance_status"))
    await quick.bk.wait_for_request("get_job_instance_status", count=polls + 3, timeout=60)
    # Nothing changed between those polls: at most one edit for the elapsed time, not one per poll.
    assert len(quick.slack.calls("chat.update")) <= edits + 2
    await quick.bk.finish(instance_id, status=3)
    await reply_in(quick, ts, "Succeeded")


async def test_lost_execute_job_answer_is_reconciled_to_the_started_instance(quick: Bot) -> None:
    quick.bk.lose_answer_next("execute_job")
    await quick.command(f"run {PLAN} --yes version=9")
    (answer,) = await quick.slack.wait_for_response()
    assert "Unknown: check BK-JOB" in str(answer.body["text"])
    await quick.idle()
    ts = quick.slack.messages(CHANNEL)[0]["ts"]
    (instance_id,) = quick.bk.instances
    found = await reply_in(quick, ts, "Found it")
    assert str(instance_id) in json.dumps(found)
    assert len(quick.bk.requests("execute_job")) == 1  # never retried
    # BK-JOB's list names the instance `job_instance_id`; the bot asked for API launches of this operator only.
    (listing, *_) = quick.bk.requests("get_job_instance_list")
    assert (listing.body["launch_mode"], listing.body["operator"]) in ((2, "ops-bot"), ("2", "ops-bot"))
    await quick.bk.finish(instance_id, status=3)
    await reply_in(quick, ts, "Succeeded")
    assert await quick.bk.send_callback(instance_id) == 200  # a late duplicate: still one result
    await quick.idle()
    thread = [json.dumps(m) for m in quick.slack.thread(CHANNEL, ts)]
    assert sum("Found it" in m for m in thread) == 1 and sum("Succeeded" in m for m in thread) == 1


async def test_internal_error_from_execute_job_is_unknown_and_reconciled(quick: Bot) -> None:
    """1240002 (INTERNAL_ERROR) can come after JOB created the instance: not "not launched", but looked for."""
    quick.bk.fail_after_work_next("execute_job", 1240002, "Internal Server Error")
    await quick.command(f"run {PLAN} --yes version=9")
    (answer,) = await quick.slack.wait_for_response()
    assert "Unknown: check BK-JOB" in str(answer.body["text"]) and "1240002" in str(answer.body["text"])
    await quick.idle()
    ts = quick.slack.messages(CHANNEL)[0]["ts"]
    (instance_id,) = quick.bk.instances
    found = await reply_in(quick, ts, "Found it")
    assert str(instance_id) in json.dumps(found)
    await quick.bk.finish(instance_id, status=3)
    await reply_in(quick, ts, "Succeeded")
    assert len(quick.bk.requests("execute_job")) == 1


async def test_lost_answer_of_a_launch_that_never_started_says_so(quick: Bot) -> None:
    quick.bk.http_error_next("execute_job", 502)  # the request died before BK-JOB did anything
    await quick.command(f"run {PLAN} --yes")
    await quick.slack.wait_for_response()
    await quick.idle()
    ts = quick.slack.messages(CHANNEL)[0]["ts"]
    reply = await reply_in(quick, ts, "it was not launched")
    assert "ops-bot" in json.dumps(reply)
    message = quick.slack.message(CHANNEL, ts)
    assert message is not None and "Not launched" in json.dumps(message["blocks"])


async def test_rate_limited_bursts_deliver_every_message_once_and_in_order(bot: Bot) -> None:
    bot.slack.rate_limit_next("chat.postMessage", times=2, retry_after=1)
    outbox = bot.runner.app[OUTBOX]  # type: ignore[union-attr]
    for i in range(5):
        await outbox.post(CHANNEL, notice(f"message {i}"), thread_ts="1699999999.000001")
    await bot.idle()
    await bot.slack.wait_for_call("chat.postMessage", lambda c: "message 4" in str(c.args.get("text")))
    await bot.idle()
    texts = [m["text"] for m in bot.slack.thread(CHANNEL, "1699999999.000001")]
    assert texts == [f"message {i}" for i in range(5)]
    store = bot.runner.app[STORE]  # type: ignore[union-attr]
    assert [m.state.value for m in await store.outbox_messages()] == ["sent"] * 5


async def test_slack_server_errors_are_retried_until_delivered(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    bot.slack.server_error_next("chat.postMessage", times=2, status=503)
    await bot.bk.finish(instance_id, status=3)
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == ts, count=3)
    await bot.idle()
    assert len(bot.slack.thread(CHANNEL, ts)) == 1


async def test_permanent_slack_refusal_is_set_aside_not_retried_forever(bot: Bot) -> None:
    outbox = bot.runner.app[OUTBOX]  # type: ignore[union-attr]
    bot.slack.fail_next("chat.postMessage", "is_archived")
    await outbox.post("C0GONE", notice("hello"))
    await bot.idle()
    store = bot.runner.app[STORE]  # type: ignore[union-attr]
    (message,) = await store.outbox_messages()
    assert message.state.value == "dead" and message.last_error == "is_archived"


async def test_status_command_shows_steps_ephemerally(bot: Bot) -> None:
    instance_id, _ = await launch(bot)
    await bot.bk.finish(instance_id, status=4, callback=False)
    await bot.command(f"status {instance_id}")
    (post,) = await bot.slack.wait_for_response(lambda r: str(instance_id) in str(r.body.get("text")))
    assert post.body["response_type"] == "ephemeral"
    text = str(post.body["text"])
    assert "failed" in text and "step 1" in text and "step 2" in text and "api_execute" in text


async def test_permission_errors_name_what_is_missing(bot: Bot) -> None:
    """9900403 from the plan read (the form), the launch and the status read: each names its missing action."""
    instance_id, _ = await launch(bot)
    bot.bk.deny_user("ops-bot", "view_history")
    await bot.command(f"status {instance_id}")
    (post,) = await bot.slack.wait_for_response()
    text = str(post.body["text"])
    assert "[9900403]" in text and "执行历史查看 (view_history)" in text and "permission center" in text

    bot.bk.add_plan(3, 101, "Restart", [])
    bot.bk.deny_user("ops-bot", "view_job_plan")
    await bot.command("run 101")
    (update,) = await bot.slack.wait_for_call("views.update")
    shown = json.dumps(update.args["view"], ensure_ascii=False)
    assert "执行方案查看 (view_job_plan) on 执行方案 Restart (101)" in shown


async def test_status_of_an_unknown_instance_shows_bkjob_code(bot: Bot) -> None:
    await bot.command("status 424242")
    (post,) = await bot.slack.wait_for_response()
    assert "1244006" in str(post.body["text"])


async def test_many_results_in_one_channel_are_paced_and_all_delivered(
    slack: FakeSlack, bk: FakeBkJob, tmp_path: Path
) -> None:
    bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "paced.sqlite3", SLACK_CHANNEL_INTERVAL="0.05")
    await bot.start()
    try:
        for _ in range(5):
            await bot.command(f"run {PLAN} --yes")
        await bot.bk.wait_for_request("execute_job", count=5)
        await bot.idle()
        await asyncio.gather(*(bot.bk.finish(i, status=3) for i in list(bot.bk.instances)))
        await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") is not None, count=5)
        await bot.idle()
        replies = [m for m in bot.slack.messages(CHANNEL) if m.get("thread_ts")]
        assert len(replies) == 5
        posts = [c for c in bot.slack.calls("chat.postMessage")]
        assert len(posts) == 10  # 5 launch messages, 5 replies, nothing twice
    finally:
        await bot.close()


async def test_slack_connection_resets_are_retried_until_delivered(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    bot.slack.reset_next("chat.postMessage", times=2)
    await bot.bk.finish(instance_id, status=3)
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == ts, count=3)
    await bot.idle()
    (reply,) = bot.slack.thread(CHANNEL, ts)
    assert "Succeeded" in str(reply["text"])


async def test_progress_starts_within_one_interval_and_keeps_coming_while_callbacks_are_on(
    slack: FakeSlack, bk: FakeBkJob, tmp_path: Path
) -> None:
    """Callbacks on, with production's 60 s grace: progress does not wait for the grace, it is read every
    PROGRESS_INTERVAL (15 s in production; 0.3 s here) from the launch on, and each read that changes edits."""
    bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "live.sqlite3", CALLBACK_GRACE="60", PROGRESS_INTERVAL="0.3")
    await bot.start()
    try:
        bk.add_plan(3, 300, "Three steps", [], steps=[{"name": "fetch"}, {"name": "build"}, {"name": "ship"}])
        await bot.command("run 300 --yes")
        await bk.wait_for_request("execute_job")
        await bot.idle()
        ts = slack.messages(CHANNEL)[0]["ts"]
        (instance_id,) = bk.instances

        def edit_saying(text: str) -> Callable[[SlackCall], bool]:
            return lambda c: c.args.get("ts") == ts and text in json.dumps(c.args)

        bk.advance(instance_id, done_steps=0)
        await slack.wait_for_call("chat.update", edit_saying("0 of 3 steps done, running *fetch*"), timeout=60)
        bk.advance(instance_id, done_steps=2)
        await slack.wait_for_call("chat.update", edit_saying("2 of 3 steps done, running *ship*"), timeout=60)
        assert not any(a.status == 200 for a in bk.callbacks)  # all of that before any callback
        await bk.finish(instance_id, status=3)
        await reply_in(bot, ts, "Succeeded")
    finally:
        await bot.close()
