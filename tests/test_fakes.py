"""Tests of the Slack and BK-JOB fakes themselves, over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.fakes.server import FakeServer
from bot.fakes.socket_mode import FakeSocketMode
from tests.fakes import FakeBkJob, FakeSlack

AUTH = {"bk_app_code": "bkjob-bot", "bk_app_secret": "s3cret", "bk_username": "alice"}

# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(users={"U1": {"email": "alice@example.com", "real_name": "Alice"}}) as fake:
        yield fake


@pytest.fixture
async def client(slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    web_client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
    yield web_client
    if web_client.session is not None:
        await web_client.session.close()


@pytest.fixture
async def bk() -> AsyncIterator[FakeBkJob]:
    fake = FakeBkJob(skip_user_auth=True)
    await fake.start()
    fake.add_business(2)
    fake.add_plan(
        2,
        100,
        "deploy",
        [
            {"id": 11, "name": "version", "value": "1.0"},
            {"id": 12, "name": "password", "category": 4, "value": "hunter2"},
            {"id": 13, "name": "hosts", "category": 3, "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.0.9"}]},
        ],
    )
    yield fake
    await fake.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Receiver:
    """A stand-in for the bot's callback route: answers each POST with the next queued status."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[str, bytes]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.headers["Content-Type"], await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/cb", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/cb"

    async def close(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def esb(
    http: aiohttp.ClientSession,
    bk: FakeBkJob,
    api: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    async with http.post(bk.url(api), json=body, headers=headers) as resp:
        assert resp.status == 200
        result: dict[str, Any] = await resp.json()
        return result


async def start_job(http: aiohttp.ClientSession, bk: FakeBkJob, **extra: Any) -> int:
    reply = await esb(http, bk, "execute_job", {**AUTH, "bk_biz_id": 2, "bk_job_id": 100, **extra})
    assert reply["result"] is True, reply
    job_id: int = reply["data"]["job_instance_id"]
    return job_id


# -- FakeSlack ---------------------------------------------------------------------------------------------


async def test_slack_messages_threads_and_updates(slack: FakeSlack, client: AsyncWebClient) -> None:
    assert (await client.auth_test())["user_id"] == "U0BOT"
    parent = await client.chat_postMessage(channel="C1", text="launching", blocks=[{"type": "divider"}])
    reply = await client.chat_postMessage(channel="C1", text="done", thread_ts=parent["ts"])
    assert float(reply["ts"]) > float(parent["ts"])
    await client.chat_update(channel="C1", ts=parent["ts"], text="launched")

    assert [m["text"] for m in slack.messages("C1")] == ["launched", "done"]
    assert [m["ts"] for m in slack.thread("C1", parent["ts"])] == [reply["ts"]]
    assert slack.calls("chat.postMessage")[0].args["blocks"] == [{"type": "divider"}]
    with pytest.raises(SlackApiError, match="message_not_found"):
        await client.chat_update(channel="C1", ts="1.2", text="x")

    # Form-encoded, token in the body: JSON fields are decoded.
    form = {"token": "xoxb-test", "channel": "C1", "user": "U1", "blocks": '[{"type": "divider"}]'}
    await AsyncWebClient(base_url=slack.base_url).api_call("chat.postEphemeral", data=form)
    (call,) = slack.calls("chat.postEphemeral")
    assert (call.token, call.args["blocks"]) == ("xoxb-test", [{"type": "divider"}])


async def test_slack_auth_membership_users_and_injected_errors(slack: FakeSlack, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError, match="invalid_auth"):
        await AsyncWebClient(token="xoxb-wrong", base_url=slack.base_url).auth_test()
    slack.not_in_channel("C2")
    with pytest.raises(SlackApiError, match="not_in_channel"):
        await client.chat_postEphemeral(channel="C2", user="U1", text="hi")
    assert (await client.users_info(user="U1"))["user"]["profile"]["email"] == "alice@example.com"
    with pytest.raises(SlackApiError, match="user_not_found"):
        await client.users_info(user="U404")
    slack.fail_next("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError, match="channel_not_found"):
        await client.chat_postMessage(channel="C1", text="x")
    slack.server_error_next("chat.postMessage", status=503)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 503
    with pytest.raises(SlackApiError, match="unknown_method"):
        await client.api_call("no.such")
    assert (await client.chat_postMessage(channel="C1", text="ok"))["ok"]


async def test_slack_rate_limit_is_retried_by_sdk_handler(slack: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    slack.rate_limit_next("chat.postMessage", retry_after=0)
    try:
        assert (await client.chat_postMessage(channel="C1", text="hi"))["ok"]
    finally:
        if client.session is not None:
            await client.session.close()
    assert len(slack.calls("chat.postMessage")) == 2
    assert len(slack.messages("C1")) == 1


_VIEW = {
    "type": "modal",
    "title": {"type": "plain_text", "text": "Launch"},
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}],
}


async def test_slack_views_trigger_once_and_hash(slack: FakeSlack, client: AsyncWebClient) -> None:
    view = _VIEW
    trigger = slack.new_trigger_id()
    opened = (await client.views_open(trigger_id=trigger, view=view))["view"]
    with pytest.raises(SlackApiError, match="exchanged_trigger_id"):
        await client.views_open(trigger_id=trigger, view=view)
    with pytest.raises(SlackApiError, match="expired_trigger_id"):
        await client.views_open(trigger_id=slack.new_trigger_id(age=3.5), view=view)
    with pytest.raises(SlackApiError, match="invalid_trigger_id"):
        await client.views_open(trigger_id="made-up", view=view)
    updated = (await client.views_update(view_id=opened["id"], hash=opened["hash"], view=view))["view"]
    assert updated["hash"] != opened["hash"]
    with pytest.raises(SlackApiError, match="hash_conflict"):
        await client.views_update(view_id=opened["id"], hash=opened["hash"], view=view)


async def test_slack_closed_views_are_not_found(slack: FakeSlack, client: AsyncWebClient) -> None:
    opened = (await client.views_open(trigger_id=slack.new_trigger_id(), view=_VIEW))["view"]
    slack.close_view(opened["id"])
    with pytest.raises(SlackApiError, match="not_found"):
        await client.views_update(view_id=opened["id"], view=_VIEW)
    with pytest.raises(SlackApiError, match="not_found"):
        await client.views_push(trigger_id=slack.new_trigger_id(view_id=opened["id"]), view=_VIEW)


@pytest.mark.parametrize(
    ("blocks", "text", "error"),
    [
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}], "t", "invalid_blocks"),
        ([{"type": "context", "elements": [{"type": "mrkdwn", "text": "x" * 3001}]}], "t", "invalid_blocks"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "x"}, "bogus": 1}], "t", "invalid_blocks"),
        ([{"type": "no_such_block"}], "t", "invalid_blocks"),
        ([{"type": "divider"}] * 51, "t", "invalid_blocks"),
        (None, "x" * 40_001, "msg_too_long"),
    ],
)
async def test_slack_refuses_invalid_messages_everywhere(
    slack: FakeSlack, client: AsyncWebClient, blocks: Any, text: str, error: str
) -> None:
    with pytest.raises(SlackApiError, match=error):
        await client.chat_postMessage(channel="C1", text=text, blocks=blocks)
    with pytest.raises(SlackApiError, match=error):
        await client.chat_postEphemeral(channel="C1", user="U1", text=text, blocks=blocks)
    ts = (await client.chat_postMessage(channel="C1", text="ok"))["ts"]
    with pytest.raises(SlackApiError, match=error):
        await client.chat_update(channel="C1", ts=ts, text=text, blocks=blocks)
    reply = await AsyncWebhookClient(slack.response_url()).send(text=text, blocks=blocks)
    assert (reply.status_code, reply.body) == (400, error)


async def test_slack_refuses_invalid_views(slack: FakeSlack, client: AsyncWebClient) -> None:
    too_long_title = {**_VIEW, "title": {"type": "plain_text", "text": "x" * 25}}
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        await client.views_open(trigger_id=slack.new_trigger_id(), view=too_long_title)
    many = {**_VIEW, "blocks": [{"type": "divider"}] * 101}
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        await client.views_open(trigger_id=slack.new_trigger_id(), view=many)
    opened = (await client.views_open(trigger_id=slack.new_trigger_id(), view=_VIEW))["view"]
    button = {"type": "button", "text": {"type": "plain_text", "text": "x" * 76}, "action_id": "a"}
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        actions = [{"type": "actions", "elements": [button]}]
        await client.views_update(view_id=opened["id"], view={**_VIEW, "blocks": actions})


async def test_slack_response_url_takes_five_posts_in_thirty_minutes(slack: FakeSlack) -> None:
    hook = AsyncWebhookClient(slack.response_url())
    assert [(await hook.send(text=f"{i}")).status_code for i in range(6)] == [200] * 5 + [404]
    assert (await hook.send(text="again")).body == "used_url"
    late = await AsyncWebhookClient(slack.response_url(age=31 * 60)).send(text="late")
    assert (late.status_code, late.body) == (404, "expired_url")
    assert [r.refused for r in slack.responses()] == [None] * 5 + ["used_url", "used_url", "expired_url"]


async def test_slack_scopes_come_from_the_manifest() -> None:
    async with FakeSlack(users={"U1": {"email": "a@example.com"}}) as full:
        assert {"chat:write", "users:read", "users:read.email", "usergroups:read"} <= full.scopes
    async with FakeSlack(users={"U1": {"email": "a@example.com"}}, scopes=["users:read"]) as narrow:
        client = AsyncWebClient(token="xoxb-test", base_url=narrow.base_url)
        try:
            with pytest.raises(SlackApiError, match="missing_scope") as err:
                await client.chat_postMessage(channel="C1", text="x")
            assert err.value.response["needed"] == "chat:write"
            assert "email" not in (await client.users_info(user="U1"))["user"]["profile"]
            assert (await client.chat_getPermalink(channel="C1", message_ts="1.2")).get("ok") is None
        except SlackApiError as exc:
            assert exc.response["error"] == "message_not_found"  # getPermalink needs no scope
        finally:
            if client.session is not None:
                await client.session.close()


async def test_slack_rate_tiers_answer_429_with_retry_after(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.usergroups["S1"] = ["U1"]
    for _ in range(20):  # usergroups.users.list is Tier 2: 20 a minute
        await client.usergroups_users_list(usergroup="S1")
    with pytest.raises(SlackApiError) as err:
        await client.usergroups_users_list(usergroup="S1")
    assert err.value.response.status_code == 429
    assert 1 <= int(err.value.response.headers["Retry-After"]) <= 60


async def test_slack_permalinks(slack: FakeSlack, client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel="C1", text="a")
    reply = await client.chat_postMessage(channel="C1", text="b", thread_ts=parent["ts"])
    link = (await client.chat_getPermalink(channel="C1", message_ts=parent["ts"]))["permalink"]
    assert link.endswith(f"/archives/C1/p{parent['ts'].replace('.', '')}")
    threaded = (await client.chat_getPermalink(channel="C1", message_ts=reply["ts"]))["permalink"]
    assert f"thread_ts={parent['ts']}" in threaded
    with pytest.raises(SlackApiError, match="message_not_found"):
        await client.chat_getPermalink(channel="C1", message_ts="1.2")


async def test_slack_waits_and_response_urls(slack: FakeSlack, client: AsyncWebClient) -> None:
    waiter = asyncio.create_task(slack.wait_for_call("chat.postMessage", lambda c: c.args["channel"] == "C9"))
    await client.chat_postMessage(channel="C1", text="a")
    await client.chat_postMessage(channel="C9", text="b")
    assert [c.args["text"] for c in await waiter] == ["b"]

    url = slack.response_url()
    hook = AsyncWebhookClient(url)  # what Bolt's respond() uses
    assert (await hook.send(text="queued", response_type="ephemeral")).status_code == 200
    (post,) = await slack.wait_for_response()
    assert (post.url, post.body["text"]) == (url, "queued")
    with pytest.raises(AssertionError, match="views.open"):
        await slack.wait_for_call("views.open", timeout=0.05)


# -- FakeBkJob ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        ({**AUTH, "bk_app_code": "x"}, None, "Invalid APP Code [bk_app_code=x]"),
        ({**AUTH, "bk_app_secret": "x"}, None, "APP Secret verification failed, pelase confirm"),
        ({"bk_app_code": "bkjob-bot", "bk_app_secret": "s3cret"}, None, "User authentication failed"),
        (AUTH, {"X-Bkapi-Authorization": "{nope"}, "not a valid JSON format string"),
        ({}, {"X-Bkapi-Authorization": json.dumps(AUTH)}, None),
    ],
)
async def test_bk_esb_auth(
    bk: FakeBkJob,
    http: aiohttp.ClientSession,
    body: dict[str, Any],
    headers: dict[str, str] | None,
    message: str | None,
) -> None:
    reply = await esb(http, bk, "get_job_detail", {**body, "bk_biz_id": 2, "bk_job_id": 100}, headers)
    if message is None:
        assert reply["result"] is True
    else:
        assert (reply["result"], reply["code"], reply["data"]) == (False, 1306000, None)
        assert message in reply["message"] and len(reply["request_id"]) == 32


async def test_bk_job_detail(bk: FakeBkJob, http: aiohttp.ClientSession) -> None:
    async with http.get(bk.url("get_job_detail"), params={**AUTH, "bk_biz_id": "2", "bk_job_id": "100"}) as r:
        data = (await r.json())["data"]
    assert [s["name"] for s in data["steps"]] == ["step 1", "step 2"]
    version, password, hosts = data["global_vars"]
    assert (version["ip_list"], password["value"]) == (None, "hunter2")
    assert hosts["ip_list"][0]["ip"] == "10.0.0.9" and hosts["custom_query_id"] == []
    reply = await esb(http, bk, "get_job_detail", {**AUTH, "bk_biz_id": 2, "bk_job_id": 7})
    assert (reply["code"], reply["message"], "data" in reply) == (1243009, "执行方案不存在", False)


@pytest.mark.parametrize(
    ("extra", "code", "en_message"),
    [
        ({"bk_biz_id": 0}, 1240003, "Invalid bk_biz_id"),
        ({"bk_biz_id": 3}, 1243049, "Business/Business Set not exist or archived"),
        ({"bk_job_id": None}, 1241005, "Invalid request parameter [bk_job_id]"),
        ({"bk_job_id": 101}, 1244012, "Job plan does not exist"),
        (
            {"global_vars": [{"value": "x"}]},
            1241005,
            "Invalid request parameter [global_vars.id|global_vars.name]",
        ),
        ({"bk_username": "mallory"}, 9900403, "User (mallory) permission not allowed"),
        ({"bk_callback_url": "ftp://x/"}, 1240003, "Callback url is invalid"),
    ],
)
async def test_bk_execute_job_errors(
    bk: FakeBkJob, http: aiohttp.ClientSession, extra: dict[str, Any], code: int, en_message: str
) -> None:
    bk.deny_user("mallory")
    body = {**AUTH, "bk_biz_id": 2, "bk_job_id": 100, **extra}
    reply = await esb(http, bk, "execute_job", body, {"Blueking-Language": "en"})
    assert (reply["result"], reply["code"]) == (False, code)
    assert reply["message"].startswith(en_message)
    assert ("permission" in reply) == (code == 9900403)
    assert not bk.instances


async def test_bk_execute_resolves_vars_and_reports_status(bk: FakeBkJob, http: aiohttp.ClientSession) -> None:
    passed = [
        {"id": 11, "name": "password", "value": "2.0"},  # id wins over name
        {"name": "password", "value": "pw"},
        {"name": "nope", "value": "ignored"},
        {"id": 13, "target_server": {"ip_list": [{"bk_cloud_id": 0, "ip": "10.0.0.1"}]}},
    ]
    job_id = await start_job(http, bk, global_vars=passed)
    inst = bk.instances[job_id]
    assert job_id == 10000 and inst.request["global_vars"] == passed
    assert inst.resolved_vars["version"] == "2.0" and inst.resolved_vars["password"] == "pw"
    assert inst.resolved_vars["hosts"]["ip_list"] == [{"bk_cloud_id": 0, "ip": "10.0.0.1"}]

    query = {**AUTH, "bk_biz_id": 2, "job_instance_id": job_id}
    data = (await esb(http, bk, "get_job_instance_status", query))["data"]
    assert data["is_finished"] is False and data["job_instance"]["end_time"] is None
    assert [b["step_instances"][0]["status"] for b in data["blocks"]] == [2, 1]
    await bk.finish(job_id, status=4)
    data = (await esb(http, bk, "get_job_instance_status", query))["data"]
    assert data["is_finished"] is True and data["job_instance"]["status"] == 4
    assert [b["step_instances"][0]["status"] for b in data["blocks"]] == [4, 1]
    other_biz = await esb(http, bk, "get_job_instance_status", {**query, "bk_biz_id": 2, "job_instance_id": 9})
    assert other_biz["code"] == 1244006


async def test_bk_callback_delivery_and_resend(bk: FakeBkJob, http: aiohttp.ClientSession) -> None:
    receiver = Receiver([500, 200, 200])
    await receiver.start()
    try:
        job_id = await start_job(http, bk, bk_callback_url=receiver.url)
        assert await bk.finish(job_id) == [500, 200]
        (ct1, body1), (ct2, body2) = receiver.received
        assert (ct1, ct2) == ("application/json", "application/x-www-form-urlencoded")
        assert body1 == body2
        assert json.loads(body1) == {
            "job_instance_id": job_id,
            "status": 3,
            "step_instances": [
                {"step_instance_id": s.step_instance_id, "status": 3} for s in bk.instances[job_id].steps
            ],
        }
        assert await bk.send_callback(job_id) == 200  # a duplicate, as JOB sends after a retried FAIL
        assert receiver.received[-1][1] == body1
    finally:
        await receiver.close()
    # Nobody listens now: a transport error gets no second attempt.
    job_id = await start_job(http, bk, bk_callback_url=receiver.url)
    assert await bk.finish(job_id) == []
    assert len(bk.instances[job_id].callbacks) == 1 and bk.instances[job_id].callbacks[0].error


async def test_bk_injected_failures_and_delay(http: aiohttp.ClientSession) -> None:
    async with FakeBkJob(skip_user_auth=True) as bk:
        bk.add_plan(2, 100, "deploy", [])
        bk.fail_next("execute_job", 1244032, "quota")
        assert (await esb(http, bk, "execute_job", {**AUTH, "bk_biz_id": 2, "bk_job_id": 100}))["code"] == 1244032
        bk.http_error_next("execute_job")
        async with http.post(bk.url("execute_job"), json=AUTH) as resp:
            assert (resp.status, await resp.text()) == (502, "Bad Gateway")
        bk.garbage_next("execute_job")
        async with http.post(bk.url("execute_job"), json=AUTH) as resp:
            assert resp.status == 200 and await resp.read() == b"<html>oops</html>"
        bk.delay_next("get_job_detail", 60)
        with pytest.raises(TimeoutError):
            async with http.post(bk.url("get_job_detail"), json=AUTH, timeout=aiohttp.ClientTimeout(total=0.1)):
                pass
        assert len(await bk.wait_for_request("execute_job", count=3)) == 3
    # Leaving the block did not wait out the 60 s delay.


async def test_bk_instance_list_validates_and_filters_like_job(bk: FakeBkJob, http: aiohttp.ClientSession) -> None:
    """EsbGetJobInstanceListV3ResourceImpl: rows keyed `job_instance_id` with scope fields, filters applied,
    end after start within 30 days, `length` 1..1000; `total_time` null while running."""
    api_job = await start_job(http, bk)
    web_job = await start_job(http, bk)
    bk.instances[web_job].launch_mode = 1  # started from BK-JOB's web UI
    await bk.finish(web_job, status=3)
    now_ms = int(bk.instances[api_job].create_time * 1000)
    url = bk.url("get_job_instance_list").replace("/v2/job/", "/v2/jobv3/")
    async with http.post(bk.url("get_job_instance_list"), json=AUTH) as resp:
        assert resp.status == 404  # a v3 API: the ESB serves it under jobv3 only

    async def listing(**params: Any) -> dict[str, Any]:
        body = {**AUTH, "bk_biz_id": 2, "create_time_start": now_ms - 60_000, "create_time_end": now_ms + 60_000}
        async with http.post(url, json={**body, **params}, headers={"Blueking-Language": "en"}) as resp:
            result: dict[str, Any] = await resp.json()
            return result

    rows = (await listing())["data"]["data"]
    assert [r["job_instance_id"] for r in rows] == [web_job, api_job]  # newest first
    assert "id" not in rows[0] and "bk_biz_id" not in rows[0] and rows[0]["bk_scope_id"] == "2"
    assert rows[1]["total_time"] is None and rows[0]["total_time"] is not None
    assert [r["job_instance_id"] for r in (await listing(launch_mode=2))["data"]["data"]] == [api_job]
    assert [r["job_instance_id"] for r in (await listing(status=3))["data"]["data"]] == [web_job]
    assert (await listing(name="nope"))["data"]["data"] is None
    page = (await listing(length=1))["data"]
    assert (len(page["data"]), page["total"]) == (1, 2)

    refused = [
        ({"create_time_end": now_ms - 120_000}, 1241007, "[create_time_start|create_time_end]"),
        ({"create_time_start": now_ms - 31 * 86_400_000}, 1241002, "Invalid request parameters"),
        ({"length": 0}, 1240003, "must be in range: [1,1000]"),
        ({"length": 1001}, 1240003, "must be in range: [1,1000]"),
        ({"create_time_start": None}, 1241007, "[create_time_start]"),
    ]
    for params, code, message in refused:
        reply = await listing(**params)
        assert (reply["code"], message in reply["message"]) == (code, True), (params, reply)


async def test_bk_variable_without_id_or_name_is_refused_before_the_plan_lookup(
    bk: FakeBkJob, http: aiohttp.ClientSession
) -> None:
    """checkExecuteTaskRequest runs before the plan is read: `id <= 0` with a blank name is 1241005 even for a
    plan that does not exist."""
    for item in ({"id": 0, "name": ""}, {"id": -1, "name": "  "}):
        body = {**AUTH, "bk_biz_id": 2, "bk_job_id": 999, "global_vars": [item]}
        reply = await esb(http, bk, "execute_job", body, {"Blueking-Language": "en"})
        expected = (1241005, "Invalid request parameter [global_vars.id|global_vars.name]")
        assert (reply["code"], reply["message"]) == expected


async def test_bk_v2_target_server_has_no_host_ids(bk: FakeBkJob, http: aiohttp.ClientSession) -> None:
    """EsbServerDTO (v2) knows only IPs, groups and nodes: a `host_id_list` is dropped, not used."""
    job_id = await start_job(http, bk, global_vars=[{"id": 13, "target_server": {"host_id_list": [77]}}])
    assert bk.instances[job_id].resolved_vars["hosts"] == {
        "ip_list": [],
        "dynamic_group_id_list": [],
        "topo_node_list": [],
    }


async def test_slack_response_url_replaces_or_deletes_the_message_it_came_from(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    button = [{"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Go"}}]}]
    ts = (await client.chat_postMessage(channel="C1", text="pick one", blocks=button))["ts"]

    # Without a flag the answer is a new (ephemeral) message; the original stays as it was.
    hook = AsyncWebhookClient(slack.response_url(channel="C1", message_ts=ts))
    assert (await hook.send(text="only you", replace_original=False)).status_code == 200
    original = slack.message("C1", ts)
    assert original is not None and original["text"] == "pick one" and original["blocks"] == button

    replaced = await AsyncWebhookClient(slack.response_url(channel="C1", message_ts=ts)).send(
        text="picked", replace_original=True
    )
    assert replaced.status_code == 200
    message = slack.message("C1", ts)
    assert message is not None and message["text"] == "picked" and "blocks" not in message and "edited" in message

    raw = {"delete_original": "true"}  # Slack's own examples send the flag as a string
    async with aiohttp.ClientSession() as http:
        async with http.post(slack.response_url(channel="C1", message_ts=ts), json=raw) as resp:
            assert resp.status == 200
    assert slack.message("C1", ts) is None and slack.messages("C1") == []


def test_slack_rules_judge_a_repeated_view_or_block_as_strictly_as_the_first_time() -> None:
    """The fake remembers verdicts by content (to spend less of the benchmarks' CPU): a bad block stays bad, for
    every person a form is opened for, and a good one stays good."""
    from bot.fakes.slack_rules import message_problems, view_problems

    bad_input = {"type": "input", "block_id": "b", "element": {"type": "plain_text_input", "action_id": "a"}}
    good = {"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}
    for person in ("alice", "bob", "alice"):
        view = {"type": "modal", "title": {"type": "plain_text", "text": "T"}, "private_metadata": person}
        assert view_problems({**view, "blocks": [good]}) == []
        problems = view_problems({**view, "blocks": [good, bad_input]})
        assert problems and "label" in problems[0]
        assert message_problems([good, {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}], "t")
        assert message_problems([good], "t") is None
    # Left out of the remembered verdict, the metadata is still checked on its own, as Slack does.
    assert view_problems(
        {"type": "modal", "title": {"type": "plain_text", "text": "T"}, "blocks": [good], "private_metadata": 7}
    )


# -- the server they share ------------------------------------------------------------------------------------


async def test_every_fake_is_a_loopback_server_on_a_port_of_its_own() -> None:
    slack = FakeSlack()
    fakes: list[FakeServer] = [slack, FakeBkJob(), FakeBkJob(api_version="v3"), FakeSocketMode(slack=slack)]
    for fake in fakes:
        with pytest.raises(RuntimeError, match=f"{type(fake).__name__} is not started"):
            _ = fake.origin
    async with slack, fakes[1], fakes[2], fakes[3]:
        assert [fake.origin.split("://")[0] for fake in fakes] == ["http", "http", "http", "ws"]
        assert all(fake.origin == f"{fake.origin.split('://')[0]}://127.0.0.1:{fake.port}" for fake in fakes)
        assert len({fake.port for fake in fakes}) == len(fakes)
        async with aiohttp.ClientSession() as http:
            for fake in fakes[:3]:
                async with http.get(f"http://127.0.0.1:{fake.port}/nowhere") as answer:
                    assert answer.status == 404
    for fake in fakes:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{fake.port}/"):
                pass


async def test_slack_can_be_out_of_reach(slack: FakeSlack) -> None:
    """An outage: every Web API call's connection drops unanswered (and is recorded), until Slack comes back."""
    quick = AsyncWebClient(token="xoxb-test", base_url=slack.base_url, retry_handlers=[])
    slack.go_down()
    with pytest.raises(aiohttp.ClientError):
        await quick.auth_test()
    assert [c.method for c in slack.calls()] == ["auth.test"]
    slack.come_back()
    assert (await quick.auth_test())["user_id"] == "U0BOT"
