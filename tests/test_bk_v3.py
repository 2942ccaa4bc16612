"""BK-JOB v3 through the API gateway: the exact requests the bot sends, the v3 answers turned into the domain
models, the gateway's own errors, and the v3 counterparts of the flow tests that assert v2's wire body.

Everything else the client and the flows do is run against v3 too: see BOTH_API_VERSIONS in conftest.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from bot.bkjob.client import BkClient, create_bk_client
from bot.bkjob.errors import BkApiError, BkCredentialsRefused, BkTimeout, BkUnavailable
from bot.bkjob.esb import EsbV2Client
from bot.bkjob.gateway import ApigwV3Client
from bot.bkjob.models import ExecuteJobRequest, GlobalVar, IpEntry, TargetServer, TopoNode
from bot.bkjob.wire_v3 import InstanceStatusV3, PlanDetailV3, execute_body
from bot.config import load_settings
from bot.errors import ConfigError
from tests.conftest import APP_CODE, APP_SECRET, BIZ, BOT_TOKEN, CHANNEL, PLAN, SIGNING_SECRET, Bot
from tests.fakes import FakeBkJob, FakeSlack

USER = "alice"
PASSWORD = "hunter2-plan-secret"
# The app-state API (`/api/v3/system/<api>`): only the app in the auth header, the user in X-Bk-Username.
CREDENTIALS = {"bk_app_code": APP_CODE, "bk_app_secret": APP_SECRET}


@pytest.fixture
def bk_api_version() -> str:
    """Every `bk` (and so every `bot`) in this module speaks v3."""
    return "v3"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client(session: aiohttp.ClientSession, bk: FakeBkJob, *, secret: str = APP_SECRET) -> ApigwV3Client:
    return ApigwV3Client(
        session=session,
        api_root=bk.base_url,
        app_code=APP_CODE,
        app_secret=secret,
        timeout=2.0,
        plan_cache_ttl=60.0,
    )


@pytest.fixture
def bkc(session: aiohttp.ClientSession, bk: FakeBkJob) -> ApigwV3Client:
    return client(session, bk)


def assert_header_only_credentials(headers: Mapping[str, str], body: Mapping[str, object]) -> None:
    """APIGW reads credentials only from the header: none may leak into a body or a (logged) query string."""
    assert json.loads(headers["X-Bkapi-Authorization"]) == CREDENTIALS
    assert headers["X-Bk-Username"] == USER
    assert not {"bk_app_code", "bk_app_secret", "bk_username", "bk_token"} & set(body)
    assert APP_SECRET not in json.dumps(body)


# -- the exact v3 requests ------------------------------------------------------------------------------------


async def test_plan_detail_is_a_get_on_the_stage_root_with_scope_and_header_only_credentials(
    bkc: BkClient, bk: FakeBkJob
) -> None:
    assert bk.base_url.endswith("/api/bk-job/prod")
    await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    (req,) = bk.requests("get_job_plan_detail")
    assert (req.api, req.method, req.version) == ("get_job_plan_detail", "GET", "v3")
    assert req.path == "/api/bk-job/prod/api/v3/system/get_job_plan_detail"
    assert req.body == {"bk_scope_type": "biz", "bk_scope_id": str(BIZ), "job_plan_id": str(PLAN)}
    assert_header_only_credentials(req.headers, req.body)
    assert req.headers["Blueking-Language"] == "en"


async def test_execute_job_plan_sends_exactly_the_documented_body(bkc: BkClient, bk: FakeBkJob) -> None:
    request = ExecuteJobRequest(
        bk_biz_id=BIZ,
        bk_job_id=PLAN,
        global_vars=[
            GlobalVar(
                id=436,
                target_server=TargetServer(
                    ip_list=[IpEntry(bk_cloud_id=2, ip="10.0.0.2")],
                    dynamic_group_id_list=["g1"],
                    topo_node_list=[TopoNode(id=1000, node_type="module")],
                ),
            ),
            GlobalVar(name="version", value="2.0"),
        ],
        bk_callback_url="https://bot.example.com/bkjob/callback/t",
    )
    data = await bkc.execute_job(request, bk_username=USER)
    (req,) = bk.requests("execute_job_plan")
    assert (req.api, req.method) == ("execute_job_plan", "POST")
    assert req.headers["Content-Type"].startswith("application/json")
    assert req.body == {
        "bk_scope_type": "biz",
        "bk_scope_id": str(BIZ),
        "job_plan_id": PLAN,
        "global_var_list": [
            {
                "id": 436,
                "server": {
                    "ip_list": [{"bk_cloud_id": 2, "ip": "10.0.0.2"}],
                    "dynamic_group_list": [{"id": "g1"}],
                    "topo_node_list": [{"id": 1000, "node_type": "module"}],
                },
            },
            {"name": "version", "value": "2.0"},
        ],
        "callback_url": "https://bot.example.com/bkjob/callback/t",
    }
    assert_header_only_credentials(req.headers, req.body)
    inst = bk.instances[data.job_instance_id]
    assert inst.resolved_vars["servers"] == {
        "ip_list": [{"bk_cloud_id": 2, "ip": "10.0.0.2"}],
        "dynamic_group_id_list": ["g1"],
        "topo_node_list": [{"id": 1000, "node_type": "module"}],
    }


def test_a_launch_without_overrides_or_callback_sends_only_scope_and_plan() -> None:
    assert execute_body(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN)) == {
        "bk_scope_type": "biz",
        "bk_scope_id": str(BIZ),
        "job_plan_id": PLAN,
    }


async def test_status_and_list_queries(bkc: BkClient, bk: FakeBkJob) -> None:
    data = await bkc.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    await bkc.get_job_instance_status(bk_biz_id=BIZ, job_instance_id=data.job_instance_id, bk_username=USER)
    await bkc.get_job_instance_list(
        bk_biz_id=BIZ, create_time_start_ms=1000, create_time_end_ms=2000, operator="ops-bot", bk_username=USER
    )
    (status,) = bk.requests("get_job_instance_status")
    assert (status.method, status.body) == (
        "GET",
        {
            "bk_scope_type": "biz",
            "bk_scope_id": str(BIZ),
            "job_instance_id": str(data.job_instance_id),
            "return_ip_result": "true",
        },
    )
    (listing,) = bk.requests("get_job_instance_list")
    assert (listing.method, listing.body) == (
        "GET",
        {
            "bk_scope_type": "biz",
            "bk_scope_id": str(BIZ),
            "create_time_start": "1000",
            "create_time_end": "2000",
            "operator": "ops-bot",
            "launch_mode": "2",
            "type": "0",
            "start": "0",
            "length": "1000",
        },
    )
    for req in (status, listing):
        assert_header_only_credentials(req.headers, req.body)


# -- v3 answers as domain models ------------------------------------------------------------------------------


async def test_host_defaults_with_groups_and_nodes_and_a_plan_without_variables(bkc: BkClient, bk: FakeBkJob) -> None:
    bk.add_plan(
        BIZ,
        200,
        "Hosts",
        [
            {
                "id": 7,
                "name": "targets",
                "category": 3,
                "ip_list": [{"bk_cloud_id": 2, "ip": "10.0.0.9"}],
                "custom_query_id": ["grp1"],
                "topo_node_list": [{"id": 1000, "node_type": "module"}],
            },
            {"id": 8, "name": "token", "category": 4, "value": ""},
        ],
    )
    bk.add_plan(BIZ, 300, "No variables", [])
    detail = await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=200, bk_username=USER)
    targets, token = detail.variables
    assert targets.is_host and targets.value is None
    assert targets.default_targets() == TargetServer(
        ip_list=[IpEntry(bk_cloud_id=2, ip="10.0.0.9")],
        dynamic_group_id_list=["grp1"],
        topo_node_list=[TopoNode(id=1000, node_type="module")],
    )
    # v3 masks every password default, an empty one too (docs/bkjob.md §variables): the bot cannot say "not set".
    assert token.is_password and token.value == "******" and token.password_state() == "set (hidden)"
    empty = await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=300, bk_username=USER)
    assert empty.variables == [] and empty.bk_job_id == 300


def test_plan_detail_reads_id_and_tolerates_the_docs_job_plan_id() -> None:
    for key in ("id", "job_plan_id"):
        detail = PlanDetailV3.model_validate(
            {"bk_scope_type": "biz", "bk_scope_id": "3", key: 100, "name": "p", "global_var_list": None}
        ).to_domain()
        assert (detail.bk_job_id, detail.bk_biz_id, detail.variables) == (100, 3, [])


def test_the_references_status_example_becomes_seconds_and_steps() -> None:
    """bk-job's get_job_instance_status example (docs/bkjob.md §instance-status), its names shortened."""
    data = {
        "finished": True,
        "job_instance": {
            "bk_scope_type": "biz",
            "bk_scope_id": "1",
            "job_instance_id": 100,
            "status": 4,
            "name": "...",
            "create_time": 1605064271000,
            "start_time": 1605064271000,
            "end_time": 1605064272000,
            "total_time": 1000,
        },
        "step_instance_list": [
            {
                "step_instance_id": 75,
                "name": "...",
                "status": 4,
                "type": 1,
                "execute_count": 0,
                "start_time": 1605064271000,
                "end_time": 1605064272000,
                "total_time": 1000,
                "create_time": 1605064271000,
                "step_ip_result_list": [
                    {
                        "bk_host_id": 101,
                        "ip": "127.0.0.1",
                        "bk_cloud_id": 0,
                        "status": 9,
                        "tag": "",
                        "exit_code": 0,
                        "error_code": 0,
                        "start_time": 1605064271000,
                        "end_time": 1605064272000,
                        "total_time": 1000,
                    }
                ],
            }
        ],
    }
    got = InstanceStatusV3.model_validate(data).to_domain()
    assert got.is_finished and got.job_instance.status == 4 and got.job_instance.total_time == 1.0
    assert got.job_instance.start_time == "2020-11-11 03:11:11 +0000"
    (step,) = got.steps
    assert (step.step_instance_id, step.total_time, step.host_counts()) == (75, 1.0, (1, 1))


# -- the API gateway's own errors -----------------------------------------------------------------------------


async def test_rate_limit_is_bk_api_error_naming_the_gateway_code(bkc: BkClient, bk: FakeBkJob) -> None:
    bk.gateway_error_next("execute_job", status=429, code=1642902, code_name="RATE_LIMIT_RESTRICTION")
    with pytest.raises(BkApiError) as err:
        await bkc.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    assert str(err.value) == (
        "BK-JOB execute_job_plan failed: [1642902] API gateway RATE_LIMIT_RESTRICTION: Request has been throttled"
    )
    assert err.value.request_id and bk.instances == {}


async def test_app_not_granted_is_bk_api_error(bkc: BkClient, bk: FakeBkJob) -> None:
    bk.gateway_error_next(
        "get_job_detail", status=403, code=1640301, code_name="APP_NO_PERMISSION", message="App has no permission"
    )
    with pytest.raises(BkApiError) as err:
        await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    assert (err.value.api, err.value.code) == ("get_job_plan_detail", 1640301)
    assert err.value.message == "API gateway APP_NO_PERMISSION: App has no permission"


async def test_wrong_secret_is_the_gateways_invalid_args(session: aiohttp.ClientSession, bk: FakeBkJob) -> None:
    with pytest.raises(BkApiError) as err:
        await client(session, bk, secret="wrong").get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    assert err.value.code == 1640001
    assert err.value.message == "API gateway INVALID_ARGS: bk_app_code or bk_app_secret is incorrect"


async def test_backend_timeout_at_the_gateway_is_a_timeout_not_a_refusal(bkc: BkClient, bk: FakeBkJob) -> None:
    """JOB may have started the job before the gateway gave up: the launch must be looked for, not called off."""
    bk.lose_answer_next("execute_job")
    with pytest.raises(BkTimeout, match=r"HTTP 504 \[1650401\] API gateway REQUEST_BACKEND_TIMEOUT"):
        await bkc.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    assert len(bk.instances) == 1


async def test_bad_gateway_is_unavailable_with_the_request_maybe_sent(bkc: BkClient, bk: FakeBkJob) -> None:
    bk.gateway_error_next("execute_job", status=502, code=1650200, code_name="BAD_GATEWAY", message="Bad Gateway")
    with pytest.raises(BkUnavailable) as err:
        await bkc.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    assert err.value.request_sent is True and "BAD_GATEWAY" in str(err.value)


async def test_jobs_own_errors_stay_http_200_result_false(bkc: BkClient, bk: FakeBkJob) -> None:
    with pytest.raises(BkApiError) as err:
        await bkc.get_job_instance_status(bk_biz_id=BIZ, job_instance_id=424242, bk_username=USER)
    assert (err.value.code, err.value.message) == (1244006, "Task instance does not exist")


async def test_credentials_only_in_the_body_are_ignored_by_the_gateway(
    session: aiohttp.ClientSession, bk: FakeBkJob
) -> None:
    body = {**CREDENTIALS, "bk_scope_type": "biz", "bk_scope_id": str(BIZ), "job_plan_id": PLAN}
    async with session.post(bk.url("execute_job_plan"), json=body) as resp:
        answer = await resp.json()
    assert resp.status == 400
    assert answer == {
        "code_name": "INVALID_ARGS",
        "data": None,
        "code": 1640001,
        "message": "app code cannot be empty",
        "result": False,
    }
    assert bk.instances == {}


async def test_the_fake_validates_v3_variables_like_job(session: aiohttp.ClientSession, bk: FakeBkJob) -> None:
    headers = {"X-Bkapi-Authorization": json.dumps(CREDENTIALS), "X-Bk-Username": USER}
    cases = [
        ({"id": 0, "value": "x"}, 1240003, "Invalid id of globalVar"),
        ({"value": "x"}, 1241005, "Invalid request parameter [global_var.id|global_var.name]"),
        ({"id": 436, "server": {"ip_list": [{"bk_cloud_id": 0, "ip": "10.0.0"}]}}, 1240003, "Invalid IP"),
        ({"id": 436, "server": {"ip_list": [{"ip": "10.0.0.1"}]}}, 1240003, "Invalid BK-Net"),
    ]
    for item, code, message in cases:
        body = {"bk_scope_type": "biz", "bk_scope_id": str(BIZ), "job_plan_id": PLAN, "global_var_list": [item]}
        async with session.post(
            bk.url("execute_job_plan"), json=body, headers={**headers, "Blueking-Language": "en"}
        ) as resp:
            answer = await resp.json()
        assert resp.status == 200 and (answer["code"], answer["message"]) == (code, message), item
        assert "request_id" not in answer and answer["result"] is False
    async with session.get(bk.url("execute_job_plan"), headers=headers) as resp:
        assert resp.status == 404 and (await resp.json())["code_name"] == "API_NOT_FOUND"
    assert bk.instances == {}


# -- choosing the wire format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "cls"), [(None, EsbV2Client), ("v2", EsbV2Client), ("V3", ApigwV3Client)])
async def test_bk_api_version_picks_the_client(
    session: aiohttp.ClientSession, value: str | None, cls: type[BkClient]
) -> None:
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "BK_API_URL": "https://bkapi.example.com/api/bk-job/prod/",
        "BK_APP_CODE": APP_CODE,
        "BK_APP_SECRET": APP_SECRET,
        "PUBLIC_URL": "https://bot.example.com",
    }
    if value is not None:
        env["BK_API_VERSION"] = value
    assert type(create_bk_client(load_settings(env), session)) is cls


def test_an_unknown_bk_api_version_stops_start_up() -> None:
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "BK_API_URL": "https://bkapi.example.com",
        "BK_APP_CODE": APP_CODE,
        "BK_APP_SECRET": APP_SECRET,
        "PUBLIC_URL": "https://bot.example.com",
        "BK_API_VERSION": "v4",
    }
    with pytest.raises(ConfigError, match="BK_API_VERSION"):
        load_settings(env)


# -- v3 counterparts of the flow tests that assert v2's wire body ---------------------------------------------


async def test_modal_path_sends_the_v3_body(bot: Bot) -> None:
    """test_flow_launch's story through the API gateway."""
    view = await bot.open_form()
    assert view["title"]["text"] == "Deploy web"
    status, answer = await bot.submit(
        view, {"version": "2.0", "servers": "10.0.0.1\n2:10.0.0.2\ngroup:abc\nmodule:1000"}
    )
    assert status == 200 and answer is None
    (req,) = await bot.bk.wait_for_request("execute_job_plan")
    callback_url = req.body.pop("callback_url")
    assert str(callback_url).startswith(f"{bot.url}/bkjob/callback/")
    assert req.body == {
        "bk_scope_type": "biz",
        "bk_scope_id": str(BIZ),
        "job_plan_id": PLAN,
        "global_var_list": [
            {
                "id": 436,
                "server": {
                    "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.0.1"}, {"bk_cloud_id": 2, "ip": "10.0.0.2"}],
                    "dynamic_group_list": [{"id": "abc"}],
                    "topo_node_list": [{"id": 1000, "node_type": "module"}],
                },
            },
            {"id": 437, "value": "2.0"},
        ],
    }
    assert req.headers["X-Bk-Username"] == "ops-bot" and "bk_username" not in req.headers["X-Bkapi-Authorization"]
    await bot.idle()
    instance_id = next(iter(bot.bk.instances))
    assert await bot.bk.finish(instance_id, status=3) == [200]
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") is not None)
    await bot.idle()
    ts = bot.slack.messages(CHANNEL)[0]["ts"]
    (reply,) = bot.slack.thread(CHANNEL, ts)
    assert "Succeeded" in reply["text"]


async def test_a_v3_password_default_is_shown_as_hidden(bot: Bot) -> None:
    """v3 masks every password default, empty or not: the form cannot say "set" or "not set"."""
    view = await bot.open_form()
    assert "*db_password* (password): set (hidden), keeps the plan's value" in json.dumps(view)


async def test_a_business_set_named_as_a_business_is_refused_by_the_fake(
    session: aiohttp.ClientSession, bk: FakeBkJob
) -> None:
    bk.add_plan(8_000_001, 5, "set-wide", [])
    headers = {"X-Bkapi-Authorization": json.dumps(CREDENTIALS), "X-Bk-Username": USER, "Blueking-Language": "en"}
    for kind, code in (("biz", 1243049), ("biz_set", 0)):
        query = {"bk_scope_type": kind, "bk_scope_id": "8000001", "job_plan_id": "5"}
        async with session.get(bk.url("get_job_plan_detail"), params=query, headers=headers) as resp:
            assert (await resp.json())["code"] == code, kind


async def test_secrets_stay_out_through_v3(bot: Bot, db_path: Path) -> None:
    """test_flow_callback's secrets story: the v3 callback URL's token, the app secret and the password."""
    view = await bot.open_form()
    await bot.submit(view, {"version": "2.0", "servers": "10.0.0.1\n10.0.0.2"})
    (req,) = await bot.bk.wait_for_request("execute_job")
    token = str(req.body["callback_url"]).rsplit("/", 1)[1]
    await bot.slack.wait_for_call("chat.update")
    (instance_id,) = bot.bk.instances
    assert bot.bk.instances[instance_id].resolved_vars["db_password"] == PASSWORD
    await bot.bk.finish(instance_id, status=4)
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") is not None)
    await bot.idle()
    await bot.close()

    to_slack = json.dumps([c.args for c in bot.slack.calls()]) + json.dumps([r.body for r in bot.slack.responses()])
    stored = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    assert stored
    for secret in (APP_SECRET, BOT_TOKEN, SIGNING_SECRET, PASSWORD, token):
        assert secret not in to_slack, secret
        assert secret.encode() not in stored, secret


async def test_a_rate_limited_launch_is_shown_with_the_gateways_code_and_not_started(bot: Bot) -> None:
    bot.bk.gateway_error_next("execute_job", status=429, code=1642902, code_name="RATE_LIMIT_RESTRICTION")
    await bot.command(f"run {PLAN} --yes version=2.0")
    (answer,) = await bot.slack.wait_for_response()
    text = str(answer.body["text"])
    assert "[1642902] API gateway RATE_LIMIT_RESTRICTION: Request has been throttled" in text
    assert bot.bk.instances == {}
    await bot.idle()
    (update,) = bot.slack.calls("chat.update")
    assert update.args["text"].startswith("Not launched")


# -- credentials the way a current gateway takes them ---------------------------------------------------------


async def test_user_state_path_needs_the_retired_exemption_and_says_what_to_set(
    session: aiohttp.ClientSession, bk: FakeBkJob
) -> None:
    """A new gateway has no skip-user-auth list: `/api/v3/<api>` with a bare bk_username is refused (INVALID_ARGS),
    and the error names the setting that fixes it; an old gateway with the app on its list lets it through."""
    user_state = ApigwV3Client(
        session=session,
        api_root=bk.base_url,
        app_code=APP_CODE,
        app_secret=APP_SECRET,
        timeout=2.0,
        plan_cache_ttl=60.0,
        path="user",
    )
    with pytest.raises(BkCredentialsRefused) as err:
        await user_state.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    assert err.value.code == 1640001 and "user authentication failed" in err.value.message
    assert "BK_API_V3_PATH=system" in err.value.hint
    bk.skip_user_auth = True
    detail = await user_state.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    assert detail.bk_job_id == PLAN
    req = bk.requests("get_job_plan_detail")[-1]
    assert req.path == "/api/bk-job/prod/api/v3/get_job_plan_detail"
    assert json.loads(req.headers["X-Bkapi-Authorization"])["bk_username"] == USER


async def test_app_state_without_a_user_is_jobs_401(session: aiohttp.ClientSession, bk: FakeBkJob) -> None:
    """job-gateway (CheckOpenApiJwtGatewayFilterFactory): no user in the JWT nor in X-Bk-Username is HTTP 401
    with 1247002."""
    headers = {"X-Bkapi-Authorization": json.dumps(CREDENTIALS), "Blueking-Language": "en"}
    query = {"bk_scope_type": "biz", "bk_scope_id": str(BIZ), "job_plan_id": str(PLAN)}
    async with session.get(bk.url("get_job_plan_detail"), params=query, headers=headers) as resp:
        assert resp.status == 401
        assert (await resp.json())["code"] == 1247002


async def test_app_not_granted_the_resources_says_what_to_grant(bkc: BkClient, bk: FakeBkJob) -> None:
    bk.gateway_error_next("get_job_plan_detail", status=403, code=1640301, code_name="APP_NO_PERMISSION")
    with pytest.raises(BkCredentialsRefused) as err:
        await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    assert err.value.code == 1640301 and "/api/v3/system/*" in err.value.hint and APP_CODE in err.value.hint


@pytest.mark.parametrize(("value", "path"), [(None, "system"), ("system", "system"), ("USER", "user")])
def test_bk_api_v3_path_setting(value: str | None, path: str) -> None:
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "BK_API_URL": "https://bkapi.example.com/api/bk-job/prod/",
        "BK_API_VERSION": "v3",
        "BK_APP_CODE": APP_CODE,
        "BK_APP_SECRET": APP_SECRET,
        "PUBLIC_URL": "https://bot.example.com",
    }
    if value is not None:
        env["BK_API_V3_PATH"] = value
    assert load_settings(env).bk_api_v3_path == path
    with pytest.raises(ConfigError, match="BK_API_V3_PATH"):
        load_settings({**env, "BK_API_V3_PATH": "esb"})


async def test_a_launch_refused_for_its_credentials_tells_the_operator_what_to_set(
    slack: FakeSlack, bk: FakeBkJob, tmp_path: Path
) -> None:
    bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "user-path.sqlite3", BK_API_V3_PATH="user")
    await bot.start()
    try:
        await bot.command(f"run {PLAN} --yes version=2.0")
        (answer,) = await bot.slack.wait_for_response()
        text = str(answer.body["text"])
        assert "refused the bot's credentials" in text and "BK_API_V3_PATH=system" in text
        assert bot.bk.instances == {}
    finally:
        await bot.close()


async def test_status_of_a_running_instance_counts_from_its_start(bot: Bot) -> None:
    """`total_time` is null while a job runs (docs/bkjob.md §instance-status); v3's epoch-ms start time places it."""
    await bot.command(f"run {PLAN} --yes version=2.0")
    await bot.bk.wait_for_request("execute_job")
    await bot.idle()
    (instance_id,) = bot.bk.instances
    await bot.command(f"status {instance_id}")
    (post,) = await bot.slack.wait_for_response(lambda r: str(instance_id) in str(r.body.get("text")))
    assert "running" in str(post.body["text"]) and "so far" in str(post.body["text"])
