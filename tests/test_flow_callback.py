"""End to end: BK-JOB's completion callback, from its HTTP answer to the reply in the launch's thread."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from bot.app import STORE
from bot.fakes.bkjob import FORM_CONTENT_TYPE
from bot.store import LaunchState
from bot.web.callback import REPLAYS_PER_WINDOW
from tests.conftest import APP_SECRET, BOT_TOKEN, CHANNEL, PLAN, SIGNING_SECRET, USER, Bot

PASSWORD = "hunter2-plan-secret"


async def launch(bot: Bot, text: str = f"run {PLAN} --yes version=2.0") -> tuple[int, str]:
    """Launch with --yes; returns (job_instance_id, launch message ts) once the launch has settled."""
    await bot.command(text)
    (update,) = await bot.slack.wait_for_call("chat.update")
    (instance_id,) = bot.bk.instances
    return instance_id, str(update.args["ts"])


def reply_lines(reply: dict[str, object]) -> list[str]:
    """The reply's visible text, one line per entry (the layout is free; what each line says is not)."""
    blocks = reply["blocks"]
    assert isinstance(blocks, list)
    return [line for block in blocks for line in str(block.get("text", {}).get("text", "")).splitlines()]


def step_line(reply: dict[str, object], step: str) -> str:
    """The step's line in the step list (a failure digest after it may name the step again)."""
    return next(line for line in reply_lines(reply) if step in line)


def replies(bot: Bot, ts: str) -> list[dict[str, object]]:
    return bot.slack.thread(CHANNEL, ts)


async def wait_for_reply(bot: Bot, ts: str) -> dict[str, object]:
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == ts)
    await bot.idle()
    (reply,) = replies(bot, ts)
    return reply


async def test_success_is_replied_in_thread_and_status_line_updated(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    assert await bot.bk.finish(instance_id, status=3) == [200]
    reply = await wait_for_reply(bot, ts)
    body = json.dumps(reply["blocks"])
    assert ":white_check_mark: *Succeeded*" in body and "Deploy web" in body
    assert f"https://job.example.com/api_execute/{instance_id}" in body and "Ran for" in body
    assert reply["text"] == f"Succeeded: Deploy web, instance {instance_id}"
    assert len(bot.bk.requests("get_job_instance_status")) == 1  # the callback is only a trigger
    message = bot.slack.message(CHANNEL, ts)
    assert message is not None and message["text"].startswith("Succeeded")
    assert ":white_check_mark: *Succeeded*" in json.dumps(message["blocks"])


async def test_failed_job_names_the_failed_step_and_mentions_the_requester(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    assert await bot.bk.finish(instance_id, status=4) == [200]
    reply = await wait_for_reply(bot, ts)
    body = json.dumps(reply["blocks"])
    assert ":x: *Failed*" in body
    # Every step is listed; the failed one with its host counts, the one after it as never run.
    assert ":x: step 1: failed" in body and "1 of 1 hosts failed" in body
    assert "step 2: not run" in body  # a step of a finished job still in 1 never ran
    assert f"<@{USER}>" in body
    message = bot.slack.message(CHANNEL, ts)
    assert message is not None and message["text"].startswith("Failed")
    assert ":x: *Failed*" in json.dumps(message["blocks"])


async def test_unknown_step_status_is_shown_as_its_number(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    await bot.bk.finish(instance_id, status=4, step_statuses=[77, 1])
    reply = await wait_for_reply(bot, ts)
    assert "step 1: status 77" in json.dumps(reply["blocks"])


async def test_a_failed_status_read_posts_nothing_and_the_poller_reports_the_truth(bot: Bot) -> None:
    """The callback's own claim is never reported: when the read fails, the poller reads again soon."""
    instance_id, ts = await launch(bot)
    bot.bk.fail_next("get_job_instance_status", 1244006, "Task instance does not exist")
    assert await bot.bk.finish(instance_id, status=4) == [200]
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == ts, timeout=60)
    await bot.idle()
    (reply,) = replies(bot, ts)
    body = json.dumps(reply["blocks"])
    assert ":x: *Failed*" in body and f"<@{USER}>" in body
    assert "callback reported" not in body
    assert len(bot.bk.requests("get_job_instance_status")) == 2


async def test_a_forged_failure_with_a_failed_read_does_not_turn_success_into_failure(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    await bot.bk.finish(instance_id, status=3)
    await wait_for_reply(bot, ts)
    bot.bk.fail_next("get_job_instance_status", 1244006, "Task instance does not exist")
    forged = {"job_instance_id": instance_id, "status": 4, "step_instances": []}
    assert await bot.bk.send_callback(instance_id, forged) == 200
    await bot.bk.wait_for_request("get_job_instance_status", count=2)
    await bot.idle()
    (reply,) = replies(bot, ts)
    assert "Succeeded" in str(reply["text"])
    message = bot.slack.message(CHANNEL, ts)
    assert message is not None and message["text"].startswith("Succeeded")


async def test_replayed_callbacks_of_a_finished_launch_cost_no_bkjob_call_and_are_rate_limited(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    await bot.bk.finish(instance_id, status=3)
    await wait_for_reply(bot, ts)
    statuses = [await bot.bk.send_callback(instance_id) for _ in range(REPLAYS_PER_WINDOW + 5)]
    await bot.idle()
    # The finish and its first repeat are read (a retry in BK-JOB would call back the same way); no more.
    assert len(bot.bk.requests("get_job_instance_status")) == 2
    assert statuses[: REPLAYS_PER_WINDOW - 1] == [200] * (REPLAYS_PER_WINDOW - 1)
    assert set(statuses[REPLAYS_PER_WINDOW - 1 :]) == {429}
    assert len(replies(bot, ts)) == 1


async def test_a_callback_cannot_revive_a_launch_bkjob_refused(bot: Bot) -> None:
    bot.bk.fail_next("execute_job", 1244012, "Job plan does not exist")
    await bot.command(f"run {PLAN} --yes")
    await bot.bk.wait_for_request("execute_job")
    await bot.idle()
    store = bot.runner.app[STORE]  # type: ignore[union-attr]
    (refused,) = await store.recent_launches(CHANNEL, 5)
    assert refused.state is LaunchState.NOT_STARTED
    (req,) = bot.bk.requests("execute_job")
    token = str(req.body.get("bk_callback_url") or req.body.get("callback_url")).rsplit("/", 1)[1]
    other = 4242
    assert bot.http is not None
    async with bot.http.post(
        f"{bot.url}/bkjob/callback/{token}", json={"job_instance_id": other, "status": 3, "step_instances": []}
    ) as resp:
        assert resp.status == 409
    await bot.idle()
    assert (await store.get_launch(refused.id)).state is LaunchState.NOT_STARTED  # type: ignore[union-attr]
    assert bot.bk.requests("get_job_instance_status") == []


async def test_callback_claiming_success_for_a_running_job_posts_nothing(bot: Bot) -> None:
    """The callback carries no signature: the status BK-JOB reports wins over the body's claim."""
    instance_id, ts = await launch(bot)
    forged = {"job_instance_id": instance_id, "status": 3, "step_instances": []}
    assert await bot.bk.send_callback(instance_id, forged) == 200
    await bot.bk.wait_for_request("get_job_instance_status")
    await bot.idle()
    assert replies(bot, ts) == []
    # The real end is still reported.
    await bot.bk.finish(instance_id, status=3)
    assert "Succeeded" in str((await wait_for_reply(bot, ts))["text"])


# -- what the route accepts and refuses ------------------------------------------------------------------


@pytest.mark.parametrize("token", ["forged", secrets.token_urlsafe(32), "x" * 200])
async def test_forged_token_is_404_and_posts_nothing(bot: Bot, token: str) -> None:
    instance_id, ts = await launch(bot)
    body = json.dumps({"job_instance_id": instance_id, "status": 3, "step_instances": []})
    assert bot.http is not None
    async with bot.http.post(f"{bot.url}/bkjob/callback/{token}", data=body) as resp:
        assert resp.status == 404
    await bot.idle()
    assert replies(bot, ts) == [] and bot.bk.requests("get_job_instance_status") == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[1, 2]",
        b'{"status": 3}',
        b'{"job_instance_id": 0, "status": 3}',
        b'{"job_instance_id": "abc", "status": 3}',
        b'{"job_instance_id": 1, "status": "done"}',
        b"\xff\xfe",
    ],
)
async def test_malformed_body_is_400_and_posts_nothing(bot: Bot, body: bytes) -> None:
    instance_id, ts = await launch(bot)
    assert await bot.bk.send_callback(instance_id, body) == 400
    await bot.idle()
    assert replies(bot, ts) == [] and bot.bk.requests("get_job_instance_status") == []


async def test_callback_for_another_instance_is_refused(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    other = {"job_instance_id": instance_id + 1, "status": 3, "step_instances": []}
    assert await bot.bk.send_callback(instance_id, other) == 409
    await bot.idle()
    assert replies(bot, ts) == []


async def test_form_content_type_resend_carrying_json_is_accepted(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    await bot.bk.finish(instance_id, status=3, callback=False)
    assert await bot.bk.send_callback(instance_id, content_type=FORM_CONTENT_TYPE) == 200
    assert "Succeeded" in str((await wait_for_reply(bot, ts))["text"])


async def test_step_instance_list_alias_is_accepted(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    await bot.bk.finish(instance_id, status=3, callback=False)
    inst = bot.bk.instances[instance_id]
    body = {
        "job_instance_id": instance_id,
        "status": 3,
        "step_instance_list": [{"step_instance_id": s.step_instance_id, "status": s.status} for s in inst.steps],
    }
    assert await bot.bk.send_callback(instance_id, body) == 200
    assert "Succeeded" in str((await wait_for_reply(bot, ts))["text"])


async def test_duplicate_callback_is_200_and_replies_once(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    assert await bot.bk.finish(instance_id, status=3) == [200]
    await wait_for_reply(bot, ts)
    assert await bot.bk.send_callback(instance_id) == 200
    await bot.idle()
    assert len(replies(bot, ts)) == 1


async def test_concurrent_duplicate_callbacks_reply_once(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    await bot.bk.finish(instance_id, status=3, callback=False)
    statuses = await asyncio.gather(*(bot.bk.send_callback(instance_id) for _ in range(5)))
    assert statuses == [200] * 5
    await wait_for_reply(bot, ts)
    assert len(replies(bot, ts)) == 1


# -- restarts ---------------------------------------------------------------------------------------------


async def test_restart_between_launch_and_callback_replies_in_the_right_thread(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    await bot.restart()
    assert await bot.bk.finish(instance_id, status=3) == [200]
    reply = await wait_for_reply(bot, ts)
    assert str(instance_id) in str(reply["text"])
    message = bot.slack.message(CHANNEL, ts)
    assert message is not None and message["text"].startswith("Succeeded")


async def test_result_not_posted_before_a_restart_is_posted_at_start_up(bot: Bot) -> None:
    instance_id, ts = await launch(bot)
    bot.slack.fail_next("chat.postMessage", "internal_error")
    assert await bot.bk.finish(instance_id, status=3) == [200]
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == ts)
    await bot.idle()
    assert replies(bot, ts) == []  # Slack refused it; the result waits in the store
    await bot.restart()
    # The outbox retries it with back-off after the restart: the second attempt is the one Slack accepts.
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == ts, count=2)
    await bot.idle()
    (reply,) = replies(bot, ts)
    assert "Succeeded" in str(reply["text"])
    # A callback re-sent after that posts nothing new.
    assert await bot.bk.send_callback(instance_id) == 200
    await bot.idle()
    assert len(replies(bot, ts)) == 1


# -- secrets ----------------------------------------------------------------------------------------------


async def test_secrets_reach_neither_slack_nor_the_database(bot: Bot, db_path: Path) -> None:
    view = await bot.open_form()
    await bot.submit(view, {"version": "2.0", "servers": "10.0.0.1\n10.0.0.2"})
    (req,) = await bot.bk.wait_for_request("execute_job")
    token = str(req.body["bk_callback_url"]).rsplit("/", 1)[1]
    await bot.slack.wait_for_call("chat.update")
    (instance_id,) = bot.bk.instances
    assert bot.bk.instances[instance_id].resolved_vars["db_password"] == PASSWORD
    await bot.bk.finish(instance_id, status=4)
    (launch_ts,) = [m["ts"] for m in bot.slack.messages(CHANNEL) if "thread_ts" not in m]
    await wait_for_reply(bot, launch_ts)
    await bot.close()  # checkpoints SQLite's write-ahead log into the file

    to_slack = json.dumps([c.args for c in bot.slack.calls()]) + json.dumps([r.body for r in bot.slack.responses()])
    stored = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    assert stored
    for secret in (APP_SECRET, BOT_TOKEN, SIGNING_SECRET, PASSWORD, token):
        assert secret not in to_slack, secret
        assert secret.encode() not in stored, secret


RETRY_PLAN = 130


async def launch_two_host_plan(bot: Bot) -> tuple[int, str]:
    hosts = [{"bk_host_id": 20 + i, "bk_cloud_id": 0, "ip": f"10.0.0.{i}"} for i in (1, 2)]
    bot.bk.add_plan(3, RETRY_PLAN, "Two hosts", [], steps=[{"name": "deploy", "ip_list": hosts}, {"name": "check"}])
    return await launch(bot, f"run {RETRY_PLAN} --yes")


async def wait_for_replies(bot: Bot, ts: str, count: int) -> list[dict[str, object]]:
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == ts, count=count)
    await bot.idle()
    return replies(bot, ts)


async def test_a_job_retried_in_bkjob_reports_every_finish(bot: Bot) -> None:
    """After "retry failed hosts" in BK-JOB's UI the job runs again and calls back again: each finish is told,
    even one with the same status, and a host that succeeded the first time (status 3) counts as a success."""
    instance_id, ts = await launch_two_host_plan(bot)
    assert await bot.bk.finish(instance_id, status=4, host_statuses={0: [9, 104]}) == [200]
    (first,) = await wait_for_replies(bot, ts, 1)
    assert "1 of 2 hosts failed" in step_line(first, "deploy")

    bot.bk.retry_failed_hosts(instance_id)
    assert await bot.bk.finish(instance_id, status=4) == [200]  # failed again, on the same host
    _, second = await wait_for_replies(bot, ts, 2)
    assert ":x: *Failed*" in json.dumps(second["blocks"])
    assert "1 of 2 hosts failed" in step_line(second, "deploy")  # 10.0.0.1 is in 3 (LAST_SUCCESS)
    assert await bot.bk.send_callback(instance_id) == 200  # a duplicate of the second finish
    await bot.idle()
    assert len(replies(bot, ts)) == 2

    bot.bk.retry_failed_hosts(instance_id)
    assert await bot.bk.finish(instance_id, status=3) == [200]
    *_, third = await wait_for_replies(bot, ts, 3)
    assert ":white_check_mark: *Succeeded*" in json.dumps(third["blocks"])
    assert len(replies(bot, ts)) == 3
    message = bot.slack.message(CHANNEL, ts)
    assert message is not None and message["text"].startswith("Succeeded")


async def test_a_job_whose_error_was_ignored_in_bkjob_reports_its_second_failure(bot: Bot) -> None:
    """ "Ignore error" in BK-JOB's UI runs the job on from the next step, which may fail too: the same status
    again, no step run twice, and still a new finish to report (once)."""
    instance_id, ts = await launch_two_host_plan(bot)
    assert await bot.bk.finish(instance_id, status=4) == [200]
    await wait_for_replies(bot, ts, 1)
    bot.bk.ignore_error(instance_id)
    assert await bot.bk.finish(instance_id, status=4) == [200]
    _, second = await wait_for_replies(bot, ts, 2)
    assert "error ignored" in step_line(second, "deploy") and "failed" in step_line(second, "check")
    assert await bot.bk.send_callback(instance_id) == 200
    await bot.idle()
    assert len(replies(bot, ts)) == 2


async def test_before_the_answer_a_callback_naming_another_plans_instance_is_refused(bot: Bot) -> None:
    """execute_job's answer was lost, so the launch has no instance yet: a callback naming one is believed only when
    BK-JOB says that instance runs the launch's plan."""
    bot.bk.lose_answer_next("execute_job")
    await bot.command(f"run {PLAN} --yes")
    await bot.slack.wait_for_response(lambda r: "Unknown" in str(r.body.get("text")))
    await bot.idle()
    (lost,) = bot.bk.instances
    bot.bk.add_plan(3, 101, "Restart", [])
    await bot.command("run 101 --yes")
    await bot.bk.wait_for_request("execute_job", count=2)
    await bot.idle()
    other = next(i for i in bot.bk.instances if i != lost)
    first = bot.bk.requests("execute_job")[0]
    token = str(first.body.get("bk_callback_url") or first.body.get("callback_url")).rsplit("/", 1)[1]
    assert bot.http is not None
    forged = {"job_instance_id": other, "status": 4, "step_instances": []}
    async with bot.http.post(f"{bot.url}/bkjob/callback/{token}", json=forged) as resp:
        # v2's status names the plan: refused. v3's does not: the poller looks the instance up itself.
        assert resp.status == (409 if bot.bk.api_version == "v2" else 200)
    await bot.idle()
    store = bot.runner.app[STORE]  # type: ignore[union-attr]
    launches = await store.recent_launches(CHANNEL, 5)
    assert all(launch.job_instance_id != other for launch in launches if launch.bk_job_id == PLAN)
    await bot.bk.finish(lost, status=3)  # the real callback: the launch's own instance, of its plan
    ts = bot.slack.messages(CHANNEL)[0]["ts"]
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == ts and "Succeeded" in str(c.args.get("text"))
    )
    await bot.idle()
    assert any(str(lost) in str(m["text"]) and "Succeeded" in str(m["text"]) for m in replies(bot, ts))
