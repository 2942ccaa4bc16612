"""End to end: `/bkjob run --yes`, and every way a slash command can fail, answered ephemerally over real HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import APP_CODE, APP_SECRET, BIZ, CHANNEL, PLAN, USER, Bot
from tests.fakes import FakeBkJob, FakeSlack

PASSWORD = "hunter2-plan-secret"


async def ephemeral(bot: Bot) -> str:
    """The one response_url answer a command gets: it must be ephemeral; returns its text."""
    (post,) = await bot.slack.wait_for_response()
    assert post.body.get("response_type") == "ephemeral", post.body
    text = post.body.get("text")
    assert isinstance(text, str)
    return text


def assert_nothing_launched(bot: Bot) -> None:
    assert bot.bk.requests("execute_job") == []
    assert bot.bk.instances == {}


@pytest.fixture
async def make_bot(slack: FakeSlack, bk: FakeBkJob, db_path: Path) -> AsyncIterator[type[Bot]]:
    """Bots with extra settings (a dead BK-JOB, a short time-out), closed after the test."""
    made: list[Bot] = []

    class _Bot(Bot):
        def __init__(self, **overrides: str) -> None:
            super().__init__(slack=slack, bk=bk, db_path=db_path, **overrides)
            made.append(self)

    yield _Bot
    for instance in made:
        await instance.close()


# -- --yes: launching straight away ---------------------------------------------------------------------


async def test_yes_sends_exact_execute_job_body_and_posts_result(bot: Bot) -> None:
    resp = await bot.command(
        f"run {PLAN} --yes version=2.0 env=prod 'ports=80 443' "
        '"servers=10.0.0.1, 2:10.0.0.2 group:grp-1 module:1000 set:7"'
    )
    assert resp.status == 200
    (req,) = await bot.bk.wait_for_request("execute_job")
    callback_url = req.body.pop("bk_callback_url")
    assert req.body == {
        "bk_app_code": APP_CODE,
        "bk_app_secret": APP_SECRET,
        "bk_username": "ops-bot",
        "bk_biz_id": BIZ,
        "bk_job_id": PLAN,
        # env and ports equal the plan's defaults: not sent. Each is identified by the plan's id.
        "global_vars": [
            {
                "id": 436,
                "target_server": {
                    "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.0.1"}, {"bk_cloud_id": 2, "ip": "10.0.0.2"}],
                    "dynamic_group_id_list": ["grp-1"],
                    "topo_node_list": [{"id": 1000, "node_type": "module"}, {"id": 7, "node_type": "set"}],
                },
            },
            {"id": 437, "value": "2.0"},
        ],
    }
    assert isinstance(callback_url, str) and callback_url.startswith(f"{bot.url}/bkjob/callback/")
    token = callback_url.rsplit("/", 1)[1]
    assert len(token) >= 32
    assert req.headers["Blueking-Language"] == "en"
    assert json.loads(req.headers["X-Bkapi-Authorization"]) == {
        "bk_app_code": APP_CODE,
        "bk_app_secret": APP_SECRET,
        "bk_username": "ops-bot",
    }
    (instance,) = bot.bk.instances.values()
    assert instance.resolved_vars["version"] == "2.0"
    assert instance.resolved_vars["db_password"] == PASSWORD  # kept from the plan
    assert instance.resolved_vars["servers"]["topo_node_list"] == [
        {"id": 1000, "node_type": "module"},
        {"id": 7, "node_type": "set"},
    ]

    # The launch message is posted, then updated with the instance once execute_job answered.
    (update,) = await bot.slack.wait_for_call("chat.update")
    (post,) = bot.slack.calls("chat.postMessage")
    assert post.args["channel"] == CHANNEL and "thread_ts" not in post.args
    message = bot.slack.message(CHANNEL, update.args["ts"])
    assert message is not None and message["ts"] == bot.slack.messages(CHANNEL)[0]["ts"]
    shown = json.dumps(message["blocks"])
    assert f"<@{USER}>" in shown and "Deploy web" in shown and f"ID {PLAN}" in shown
    assert f"*Business:* {BIZ}" in shown
    assert f"https://job.example.com/api_execute/{instance.job_instance_id}" in shown
    assert "`version` = `2.0`" in shown and "`env`" not in shown
    assert message["text"].startswith("Running")
    assert bot.slack.responses() == []  # a launch that worked needs no private answer

    assert await bot.bk.finish(instance.job_instance_id, status=3) == [200]
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == message["ts"])
    await bot.idle()
    (reply,) = bot.slack.thread(CHANNEL, message["ts"])
    assert "Succeeded" in reply["text"] and str(instance.job_instance_id) in reply["text"]


async def test_yes_identifies_a_variable_without_id_by_name(bot: Bot) -> None:
    bot.bk.add_plan(BIZ, 200, "No ids", [{"id": None, "name": "msg", "category": 1, "value": "hi"}])
    await bot.command("run 200 --yes 'msg=hello world'")
    (req,) = await bot.bk.wait_for_request("execute_job")
    assert req.body["global_vars"] == [{"name": "msg", "value": "hello world"}]
    (instance,) = bot.bk.instances.values()
    assert instance.resolved_vars == {"msg": "hello world"}
    await bot.slack.wait_for_call("chat.update")


async def test_yes_with_only_default_values_sends_no_global_vars(bot: Bot) -> None:
    await bot.command(f"run {PLAN} --yes version=1.0 servers=10.0.0.1")
    (req,) = await bot.bk.wait_for_request("execute_job")
    assert "global_vars" not in req.body
    (update,) = await bot.slack.wait_for_call("chat.update")
    assert "the plan's defaults" in json.dumps(update.args["blocks"])


async def test_yes_with_unknown_variable_lists_the_plans_variables(bot: Bot) -> None:
    await bot.command(f"run {PLAN} --yes colour=red")
    text = await ephemeral(bot)
    assert "colour" in text and "no such variable" in text
    for name in ("servers", "version", "db_password", "env", "ports"):
        assert f"`{name}`" in text
    assert_nothing_launched(bot)
    assert bot.slack.calls("chat.postMessage") == []


async def test_yes_refuses_a_password_override_without_echoing_it(bot: Bot) -> None:
    await bot.command(f"run {PLAN} --yes db_password=letmein-typed")
    text = await ephemeral(bot)
    assert "db_password" in text and "password" in text and "keeps the plan's value" in text
    assert "letmein-typed" not in text and PASSWORD not in text
    assert_nothing_launched(bot)
    assert bot.slack.calls("chat.postMessage") == []


# -- the command itself ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["help", "", "   ", "frobnicate 3"])
async def test_help_empty_and_unknown_subcommand_answer_with_usage(bot: Bot, text: str) -> None:
    answer = await bot.answered(text)
    assert "/bkjob run &lt;job_id&gt;" in answer and "/bkjob help" in answer
    if text.startswith("frobnicate"):
        assert "I don't know `frobnicate`" in answer
    assert bot.bk.requests() == []
    assert bot.slack.calls("chat.postMessage") == [] and bot.slack.calls("views.open") == []
    assert bot.slack.responses() == []  # answered in the ack: nothing more is sent


@pytest.mark.parametrize("text", ["run 12x --yes", "run -5", "run 0", "run --yes", "run ４２"])
async def test_bad_job_id_is_answered_with_the_problem_and_usage(bot: Bot, text: str) -> None:
    answer = await bot.answered(text)
    assert answer.startswith(":warning:") and "job id" in answer
    assert "*Usage*" in answer
    assert bot.bk.requests() == []


# -- BK-JOB's refusals, with its own code and message ---------------------------------------------------


async def test_unknown_plan_on_get_job_detail_shows_1243009(bot: Bot) -> None:
    await bot.command("run 999 --yes version=2.0")
    answer = await ephemeral(bot)
    assert "[1243009] Job plan does not exist" in answer and "get_job_detail" in answer
    assert_nothing_launched(bot)
    assert bot.slack.calls("chat.postMessage") == []


async def test_unknown_plan_on_execute_job_shows_1244012_and_marks_the_message(bot: Bot) -> None:
    bot.bk.fail_next("execute_job", 1244012, "Job plan does not exist")
    await bot.command(f"run {PLAN} --yes version=2.0")
    answer = await ephemeral(bot)
    assert "[1244012] Job plan does not exist" in answer and "execute_job" in answer
    assert len(bot.bk.requests("execute_job")) == 1
    await bot.idle()  # the status line is edited through the outbox
    (update,) = bot.slack.calls("chat.update")
    assert update.args["text"].startswith("Not launched")
    assert "[1244012] Job plan does not exist" in json.dumps(update.args["blocks"])


async def test_unknown_business_shows_1243049(bot: Bot) -> None:
    await bot.command(f"run {PLAN} --biz 77 --yes")
    answer = await ephemeral(bot)
    assert "[1243049] Business/Business Set not exist or archived" in answer
    assert_nothing_launched(bot)


async def test_no_permission_shows_9900403(bot: Bot) -> None:
    bot.bk.deny_user("ops-bot")
    await bot.command(f"run {PLAN} --yes version=2.0")
    answer = await ephemeral(bot)
    assert (
        "[9900403] User (ops-bot) permission not allowed, please confirm and apply permission in IAM and try again"
        in answer
    )
    assert len(bot.bk.requests("execute_job")) == 1 and bot.bk.instances == {}
    await bot.idle()  # the status line is edited through the outbox
    (update,) = bot.slack.calls("chat.update")
    assert update.args["text"].startswith("Not launched") and "9900403" in json.dumps(update.args["blocks"])


async def test_esb_refusing_a_bare_username_tells_the_operator_what_to_set(bot: Bot) -> None:
    bot.bk.skip_user_auth = False  # the app is not on the ESB's skip-user-auth list
    await bot.command(f"run {PLAN} --yes version=2.0")
    answer = await ephemeral(bot)
    assert "refused the bot's credentials" in answer and "[1306000] User authentication failed" in answer
    assert "skip-user-auth" in answer and "BK_API_VERSION=v3" in answer
    assert_nothing_launched(bot)


async def test_no_default_business_asks_for_biz(make_bot: type[Bot]) -> None:
    bot = make_bot(BK_BIZ_ID="")
    await bot.start()
    await bot.command(f"run {PLAN} --yes")
    answer = await ephemeral(bot)
    assert "--biz" in answer
    assert bot.bk.requests() == []


# -- BK-JOB unreachable, broken or slow -----------------------------------------------------------------


async def test_bk_unreachable_is_answered_and_nothing_is_launched(make_bot: type[Bot]) -> None:
    bot = make_bot(BK_API_URL="http://127.0.0.1:1")
    await bot.start()
    await bot.command(f"run {PLAN} --yes version=2.0")
    answer = await ephemeral(bot)
    assert "could not be reached" in answer and "Nothing was launched" in answer
    assert bot.slack.calls("chat.postMessage") == []


async def test_get_job_detail_timing_out_is_answered(make_bot: type[Bot]) -> None:
    bot = make_bot(BK_TIMEOUT="0.2")
    await bot.start()
    bot.bk.delay_next("get_job_detail", 5.0)
    await bot.command(f"run {PLAN} --yes version=2.0")
    answer = await ephemeral(bot)
    assert "get_job_detail did not answer within 0.2 s" in answer
    assert_nothing_launched(bot)
    assert bot.slack.calls("chat.postMessage") == []


async def test_execute_job_timing_out_is_unknown_and_never_retried(make_bot: type[Bot]) -> None:
    bot = make_bot(BK_TIMEOUT="0.2")
    await bot.start()
    bot.bk.delay_next("execute_job", 5.0)
    await bot.command(f"run {PLAN} --yes version=2.0")
    answer = await ephemeral(bot)
    assert "Unknown: check BK-JOB" in answer and "will not retry" in answer
    assert len(bot.bk.requests("execute_job")) == 1
    await bot.idle()  # the status line is edited through the outbox
    (update,) = bot.slack.calls("chat.update")
    assert update.args["text"].startswith("Unknown")
    assert "Unknown: check BK-JOB" in json.dumps(update.args["blocks"])


@pytest.mark.parametrize("fail", ["http_502", "garbage"])
async def test_execute_job_answer_lost_is_unknown_and_never_retried(bot: Bot, fail: str) -> None:
    if fail == "http_502":
        bot.bk.http_error_next("execute_job", 502)
    else:
        bot.bk.garbage_next("execute_job")
    await bot.command(f"run {PLAN} --yes version=2.0")
    answer = await ephemeral(bot)
    assert "Unknown: check BK-JOB" in answer
    assert len(bot.bk.requests("execute_job")) == 1
    await bot.idle()  # the status line is edited through the outbox
    (update,) = bot.slack.calls("chat.update")
    assert update.args["text"].startswith("Unknown")


# -- Slack refusing ---------------------------------------------------------------------------------------


async def test_bot_not_in_channel_explains_and_launches_nothing(bot: Bot) -> None:
    bot.slack.not_in_channel(CHANNEL)
    await bot.command(f"run {PLAN} --yes version=2.0")
    answer = await ephemeral(bot)
    assert "not in this channel" in answer and "/invite" in answer
    assert_nothing_launched(bot)


# -- Slack's Web API out of reach ---------------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["unreachable", "failing"])
async def test_slack_web_api_out_of_reach_still_answers_slack_and_logs_one_line(
    bot: Bot, outage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Bolt checks the bot token with auth.test before any listener runs; while Slack's Web API cannot be reached
    (or answers with an error) that check must not turn every request into a traceback and a 400: requests are
    acked as usual (what needs the Web API waits in the outbox for it), and the log says so once."""
    if outage == "unreachable":
        bot.slack.go_down()
    else:
        bot.slack.server_error_next("auth.test", times=100, status=503)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            resp = await bot.command("help")
            assert resp.status == 200
        resp = await bot.command(f"run {PLAN} --yes")
        assert resp.status == 200
        await bot.bk.wait_for_request("get_job_detail")
    assert [r for r in caplog.records if r.exc_info] == []
    assert [r for r in caplog.records if r.name.startswith("slack_bolt") and r.levelno >= logging.WARNING] == []
    said = [r.getMessage() for r in caplog.records if r.name.startswith("bot.") and "auth.test" in r.getMessage()]
    assert len(said) == 1, said
    assert len(bot.slack.calls("auth.test")) == 1  # one attempt shared by the requests, no retries


async def test_the_bot_token_is_confirmed_once_slack_comes_back(slack: FakeSlack) -> None:
    """No `auth.test` within RETRY_AFTER of a failed one (requests go on meanwhile); the first after it that
    succeeds is kept for good."""
    from slack_bolt.context.async_context import AsyncBoltContext
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.slack.authorize import RETRY_AFTER, WorkspaceAuthorize

    now = 1000.0
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url, session=session)
        authorize = WorkspaceAuthorize(client=client, clock=lambda: now)
        ids = {"context": AsyncBoltContext(), "enterprise_id": None, "team_id": "T0TEAM", "user_id": USER}
        slack.go_down()
        assert (await authorize(**ids)).bot_user_id is None
        slack.come_back()
        meanwhile = await authorize(**ids)
        assert (meanwhile.bot_user_id, meanwhile.bot_token, meanwhile.user_id) == (None, "xoxb-test", USER)
        assert len(slack.calls("auth.test")) == 1
        now += RETRY_AFTER
        for _ in range(2):
            confirmed = await authorize(**ids)
            assert (confirmed.bot_user_id, confirmed.bot_id, confirmed.user_id) == ("U0BOT", "B0BOT", USER)
        assert len(slack.calls("auth.test")) == 2
