"""BkClient against the fake BK-JOB over loopback HTTP: the domain answers, errors, time-outs and cache of both
wire formats (each test runs as `[v2]` and `[v3]`, see conftest), and ESB v2's exact wire format.

v3's exact wire format and the API gateway's own errors are in test_bk_v3.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.bkjob.client import BkClient
from bot.bkjob.errors import BkApiError, BkCredentialsRefused, BkPermissionDenied, BkTimeout, BkUnavailable
from bot.bkjob.esb import EsbV2Client
from bot.bkjob.gateway import ApigwV3Client
from bot.bkjob.models import (
    ExecuteJobRequest,
    GlobalVar,
    HostId,
    InstanceList,
    IpEntry,
    Permission,
    PlanVariable,
    TargetServer,
    TopoNode,
)
from tests.conftest import APP_CODE, APP_SECRET, BIZ, PLAN, PLAN_VARS
from tests.fakes import FakeBkJob

USER = "alice"
# What each API is called on the wire, as BkApiError.api names it.
V3_NAMES = {"execute_job": "execute_job_plan", "get_job_detail": "get_job_plan_detail"}


def wire(bk: FakeBkJob, api: str) -> str:
    return V3_NAMES.get(api, api) if bk.api_version == "v3" else api


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client(
    session: aiohttp.ClientSession,
    root: str,
    *,
    version: str = "v2",
    timeout: float = 2.0,
    secret: str = APP_SECRET,
    plan_cache_ttl: float = 60.0,
) -> BkClient:
    cls: type[BkClient] = ApigwV3Client if version == "v3" else EsbV2Client
    return cls(
        session=session,
        api_root=root,
        app_code=APP_CODE,
        app_secret=secret,
        timeout=timeout,
        plan_cache_ttl=plan_cache_ttl,
    )


@pytest.fixture
def bkc(session: aiohttp.ClientSession, bk: FakeBkJob) -> BkClient:
    """The client for the fake's wire format; a trailing slash on the root is harmless."""
    return client(session, bk.base_url + "/", version=bk.api_version)


@pytest.fixture
async def esb() -> AsyncIterator[FakeBkJob]:
    """ESB v2 only, for v2's exact wire format."""
    async with FakeBkJob(app_code=APP_CODE, app_secret=APP_SECRET, skip_user_auth=True) as fake:
        fake.add_plan(BIZ, PLAN, "Deploy web", PLAN_VARS)
        yield fake


@pytest.fixture
def esbc(session: aiohttp.ClientSession, esb: FakeBkJob) -> BkClient:
    return client(session, esb.base_url + "/")


# -- ESB v2's wire format -------------------------------------------------------------------------------------


async def test_credentials_in_body_and_header_english_post_to_the_component_path(
    esbc: BkClient, esb: FakeBkJob
) -> None:
    detail = await esbc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    assert detail.name == "Deploy web" and detail.bk_job_id == PLAN
    (req,) = esb.requests("get_job_detail")
    assert req.api == "get_job_detail" and req.version == "v2"
    assert req.method == "POST"
    credentials = {"bk_app_code": APP_CODE, "bk_app_secret": APP_SECRET, "bk_username": USER}
    assert req.body == {**credentials, "bk_biz_id": BIZ, "bk_job_id": PLAN}
    assert json.loads(req.headers["X-Bkapi-Authorization"]) == credentials
    assert req.headers["Blueking-Language"] == "en"
    assert req.headers["Content-Type"].startswith("application/json")


async def test_execute_job_sends_exactly_the_documented_body(esbc: BkClient, esb: FakeBkJob) -> None:
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
    data = await esbc.execute_job(request, bk_username=USER)
    (req,) = esb.requests("execute_job")
    assert req.body == {
        "bk_app_code": APP_CODE,
        "bk_app_secret": APP_SECRET,
        "bk_username": USER,
        "bk_biz_id": BIZ,
        "bk_job_id": PLAN,
        "global_vars": [
            {
                "id": 436,
                "target_server": {
                    "ip_list": [{"bk_cloud_id": 2, "ip": "10.0.0.2"}],
                    "dynamic_group_id_list": ["g1"],
                    "topo_node_list": [{"id": 1000, "node_type": "module"}],
                },
            },
            {"name": "version", "value": "2.0"},
        ],
        "bk_callback_url": "https://bot.example.com/bkjob/callback/t",
    }
    assert data.job_instance_id in esb.instances and data.job_instance_name == "Deploy web"
    assert esb.instances[data.job_instance_id].resolved_vars["version"] == "2.0"


async def test_wrong_app_secret_is_the_esbs_error(session: aiohttp.ClientSession, esb: FakeBkJob) -> None:
    bad = client(session, esb.base_url, secret="wrong")
    with pytest.raises(BkApiError) as err:
        await bad.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    assert err.value.code == 1306000 and "APP Secret" in err.value.message
    assert isinstance(err.value, BkCredentialsRefused) and "BK_APP_SECRET" in err.value.hint


async def test_bare_username_without_the_esbs_exemption_says_what_to_set(esbc: BkClient, esb: FakeBkJob) -> None:
    """The ESB believes a bare bk_username only from apps on its skip-user-auth list (paas2/esb bkauth)."""
    esb.skip_user_auth = False
    with pytest.raises(BkCredentialsRefused) as err:
        await esbc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    assert err.value.code == 1306000 and err.value.message.startswith("User authentication failed")
    assert APP_CODE in err.value.hint and "skip-user-auth" in err.value.hint and "BK_API_VERSION=v3" in err.value.hint


# -- the same answers from both wire formats ------------------------------------------------------------------


async def test_plan_variables_are_read_with_their_types(bkc: BkClient) -> None:
    detail = await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    by_name = {v.name: v for v in detail.variables}
    assert detail.bk_job_id == PLAN and detail.bk_biz_id == BIZ and detail.name == "Deploy web"
    assert [v.category for v in detail.variables] == [3, 1, 4, 2, 6]
    assert by_name["servers"].is_host and by_name["db_password"].is_password
    assert by_name["servers"].default_targets() == TargetServer(ip_list=[IpEntry(bk_cloud_id=0, ip="10.0.0.1")])
    assert by_name["version"].id == 437 and by_name["version"].value == "1.0"
    assert by_name["version"].description == "release to deploy"
    assert by_name["env"].value == "prod" and by_name["ports"].value == "80 443"


async def test_password_defaults_never_reach_the_bot(bkc: BkClient) -> None:
    """v2 answers the default in clear, v3 masks it: either way the bot only knows that one is set."""
    detail = await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    (password,) = [v for v in detail.variables if v.is_password]
    assert password.value == "******"
    assert "hunter2" not in detail.model_dump_json()


async def test_execute_job_starts_the_instance_with_the_overrides(bkc: BkClient, bk: FakeBkJob) -> None:
    request = ExecuteJobRequest(
        bk_biz_id=BIZ,
        bk_job_id=PLAN,
        global_vars=[
            GlobalVar(id=436, target_server=TargetServer(dynamic_group_id_list=["g1"])),
            GlobalVar(name="version", value="2.0"),
        ],
        bk_callback_url="https://bot.example.com/bkjob/callback/t",
    )
    data = await bkc.execute_job(request, bk_username=USER)
    inst = bk.instances[data.job_instance_id]
    assert data.job_instance_name == "Deploy web" and inst.operator == USER
    assert inst.callback_url == "https://bot.example.com/bkjob/callback/t"
    assert inst.resolved_vars["version"] == "2.0" and inst.resolved_vars["env"] == "prod"
    assert inst.resolved_vars["servers"] == {"ip_list": [], "dynamic_group_id_list": ["g1"], "topo_node_list": []}


async def test_instance_status_is_read(bkc: BkClient, bk: FakeBkJob) -> None:
    data = await bkc.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    running = await bkc.get_job_instance_status(bk_biz_id=BIZ, job_instance_id=data.job_instance_id, bk_username=USER)
    assert not running.is_finished and running.job_instance.status == 2
    assert [s.status for s in running.steps] == [2, 1]
    await bk.finish(data.job_instance_id, status=4)
    got = await bkc.get_job_instance_status(bk_biz_id=BIZ, job_instance_id=data.job_instance_id, bk_username=USER)
    assert got.is_finished and got.job_instance.status == 4
    assert got.job_instance.job_instance_id == data.job_instance_id and got.job_instance.name == "Deploy web"
    assert [s.status for s in got.steps] == [4, 1]
    assert [s.name for s in got.steps] == ["step 1", "step 2"]
    assert got.steps[0].host_counts() == (0, 1) and got.steps[1].host_counts() == (0, 1)
    # Seconds for both: v2 sends seconds, v3 milliseconds.
    assert got.job_instance.total_time is not None and 0 <= got.job_instance.total_time < 60
    assert got.steps[0].total_time is not None and 0 <= got.steps[0].total_time < 60
    assert got.job_instance.start_time is not None and got.job_instance.end_time is not None


async def test_recent_instances_are_listed_by_operator_and_time(bkc: BkClient, bk: FakeBkJob) -> None:
    data = await bkc.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    started_ms = int(bk.instances[data.job_instance_id].create_time * 1000)
    listing = await bkc.get_job_instance_list(
        bk_biz_id=BIZ,
        create_time_start_ms=started_ms - 60_000,
        create_time_end_ms=started_ms + 60_000,
        operator=USER,
        bk_username=USER,
    )
    (row,) = listing.data or []
    expected = (data.job_instance_id, PLAN, USER, started_ms)
    assert (row.job_instance_id, row.job_plan_id, row.operator, row.create_time) == expected
    (wire_row,) = bk.requests("get_job_instance_list")
    other = await bkc.get_job_instance_list(
        bk_biz_id=BIZ,
        create_time_start_ms=started_ms - 60_000,
        create_time_end_ms=started_ms + 60_000,
        operator="bob",
        bk_username=USER,
    )
    assert not other.data
    assert wire_row.body["launch_mode"] in (2, "2") and wire_row.body["type"] in (0, "0")


async def test_business_set_ids_are_business_sets_in_both_versions(bkc: BkClient, bk: FakeBkJob) -> None:
    """IDs 8000000–9999999 are business sets: v2's bk_biz_id says so by its range, v3 names the scope."""
    bk.add_plan(8_000_001, 5, "set-wide", [])
    detail = await bkc.get_job_detail(bk_biz_id=8_000_001, bk_job_id=5, bk_username=USER)
    assert detail.bk_biz_id == 8_000_001
    data = await bkc.execute_job(ExecuteJobRequest(bk_biz_id=8_000_001, bk_job_id=5), bk_username=USER)
    assert bk.instances[data.job_instance_id].bk_biz_id == 8_000_001
    (req,) = bk.requests("execute_job")
    if bk.api_version == "v3":
        assert (req.body["bk_scope_type"], req.body["bk_scope_id"]) == ("biz_set", "8000001")
    else:
        assert req.body["bk_biz_id"] == 8_000_001


def test_instance_list_rows_are_read_by_job_instance_id_or_the_docs_id() -> None:
    """JOB sends `job_instance_id` (EsbTaskInstanceV3DTO); the published doc shows `id`."""
    for key in ("job_instance_id", "id"):
        listing = InstanceList.model_validate({"data": [{key: 20001, "job_plan_id": PLAN}], "total": 1})
        assert [r.job_instance_id for r in listing.data or []] == [20001]


async def test_running_instances_have_no_total_time_yet(bkc: BkClient, bk: FakeBkJob) -> None:
    """`total_time` is set by finishJob: null while the job runs, in both versions."""
    data = await bkc.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    running = await bkc.get_job_instance_status(bk_biz_id=BIZ, job_instance_id=data.job_instance_id, bk_username=USER)
    assert running.job_instance.total_time is None and running.steps[0].total_time is None


async def test_host_default_with_topology_nodes_is_read_whole(bkc: BkClient, bk: FakeBkJob) -> None:
    """v2 gives the nodes only in `value` (TaskTargetDTO JSON), v3 in `server.topo_node_list`."""
    bk.add_plan(
        BIZ,
        120,
        "topo",
        [
            {
                "id": 7,
                "name": "servers",
                "category": 3,
                "ip_list": [{"bk_host_id": 11, "bk_cloud_id": 2, "ip": "10.0.0.1"}],
                "custom_query_id": ["g1"],
                "topo_node_list": [{"id": 1000, "node_type": "module"}, {"id": 5, "node_type": "set"}],
            }
        ],
    )
    detail = await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=120, bk_username=USER)
    (servers,) = detail.variables
    assert servers.default_targets() == TargetServer(
        ip_list=[IpEntry(bk_cloud_id=2, ip="10.0.0.1")],
        dynamic_group_id_list=["g1"],
        topo_node_list=[TopoNode(id=1000, node_type="module"), TopoNode(id=5, node_type="set")],
    )


def test_task_target_json_of_a_v2_host_default_is_parsed() -> None:
    """JOB's stored TaskTargetDTO, as v2 get_job_detail hands it out in `value` (historical `<appId>:` group
    prefixes stripped as JOB does)."""
    value = json.dumps(
        {
            "hostNodeList": {
                "nodeInfoList": [{"id": 1000, "type": "module"}],
                "dynamicGroupId": ["2:g1", "g2"],
                "hostList": [{"hostId": 11, "ip": "10.0.0.1", "cloudAreaId": 0, "cloudIp": "0:10.0.0.1"}],
            }
        }
    )
    var = PlanVariable.model_validate({"id": 1, "name": "servers", "category": 3, "value": value, "ip_list": []})
    assert var.value is None
    assert var.default_targets() == TargetServer(
        ip_list=[IpEntry(bk_cloud_id=0, ip="10.0.0.1")],
        dynamic_group_id_list=["g1", "g2"],
        topo_node_list=[TopoNode(id=1000, node_type="module")],
    )


# -- BK-JOB's own errors --------------------------------------------------------------------------------------


async def test_unknown_plan_on_detail_is_bk_api_error_1243009(bkc: BkClient, bk: FakeBkJob) -> None:
    with pytest.raises(BkApiError) as err:
        await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=999, bk_username=USER)
    expected = (wire(bk, "get_job_detail"), 1243009, "Job plan does not exist")
    assert (err.value.api, err.value.code, err.value.message) == expected
    assert err.value.request_id


async def test_unknown_plan_on_execute_is_1244012(bkc: BkClient) -> None:
    with pytest.raises(BkApiError) as err:
        await bkc.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=999), bk_username=USER)
    assert (err.value.code, err.value.message) == (1244012, "Job plan does not exist")


async def test_unknown_business_is_1243049(bkc: BkClient) -> None:
    with pytest.raises(BkApiError) as err:
        await bkc.get_job_detail(bk_biz_id=77, bk_job_id=PLAN, bk_username=USER)
    assert (err.value.code, err.value.message) == (1243049, "Business/Business Set not exist or archived")


async def test_no_permission_is_9900403_with_the_users_name(bkc: BkClient, bk: FakeBkJob) -> None:
    bk.deny_user(USER)
    with pytest.raises(BkApiError) as err:
        await bkc.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    assert err.value.code == 9900403 and "User (alice) permission not allowed" in err.value.message
    assert bk.instances == {}
    assert isinstance(err.value, BkPermissionDenied)
    assert err.value.missing == ["执行方案运行 (launch_job_plan) on 执行方案 Deploy web (100)"]


async def test_plan_and_status_reads_can_be_refused_9900403_too(bkc: BkClient, bk: FakeBkJob) -> None:
    """Viewing a plan needs `view_job_plan`, reading an instance `view_history` (docs/bkjob.md §permissions)."""
    data = await bkc.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    bk.deny_user(USER, "view_job_plan")
    bk.deny_user(USER, "view_history")
    with pytest.raises(BkPermissionDenied) as plan_err:
        await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    assert plan_err.value.missing == ["执行方案查看 (view_job_plan) on 执行方案 Deploy web (100)"]
    with pytest.raises(BkPermissionDenied) as status_err:
        await bkc.get_job_instance_status(bk_biz_id=BIZ, job_instance_id=data.job_instance_id, bk_username=USER)
    assert status_err.value.missing == [f"执行历史查看 (view_history) on 业务 {BIZ}"]


def test_permission_payload_is_read_by_name_with_an_apply_url_when_one_is_sent() -> None:
    permission = Permission.model_validate(
        {
            "system_id": "bk_job",
            "actions": [
                {
                    "id": "launch_job_plan",
                    "name": "Launch Job Plan",
                    "related_resource_types": [
                        {"type": "job_plan", "instances": [[{"id": "3", "type": "biz"}, {"id": "100", "name": "x"}]]},
                        {"type": "host", "type_name": "Host", "instances": [[{"id": "7", "name": "10.0.0.1"}]]},
                    ],
                },
                {"id": "use_account"},
            ],
            "apply_url": "https://iam.example.com/apply?x=1",
        }
    )
    assert permission.missing() == [
        "Launch Job Plan (launch_job_plan) on job_plan x (100), Host 10.0.0.1 (7)",
        "use_account",
    ]
    assert permission.apply_url == "https://iam.example.com/apply?x=1"


async def test_injected_failure_keeps_code_and_message(bkc: BkClient, bk: FakeBkJob) -> None:
    bk.fail_next("execute_job", 1244028, "Step [deploy] target execute object is empty")
    with pytest.raises(BkApiError) as err:
        await bkc.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    expected = f"BK-JOB {wire(bk, 'execute_job')} failed: [1244028] Step [deploy] target execute object is empty"
    assert str(err.value) == expected


# -- BK-JOB broken, slow or gone ------------------------------------------------------------------------------


async def test_garbage_answer_is_unavailable(bkc: BkClient, bk: FakeBkJob) -> None:
    bk.garbage_next("execute_job")
    with pytest.raises(BkUnavailable) as err:
        await bkc.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    assert err.value.request_sent is True  # BK-JOB may have acted on it
    assert "unreadable" in str(err.value)


async def test_http_502_is_unavailable(bkc: BkClient, bk: FakeBkJob) -> None:
    bk.http_error_next("get_job_detail", 502)
    with pytest.raises(BkUnavailable) as err:
        await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    assert err.value.request_sent is True and "502" in str(err.value)


async def test_envelope_with_unreadable_data_is_unavailable(bkc: BkClient, bk: FakeBkJob) -> None:
    bk.garbage_next("get_job_detail", body=b'{"result": true, "code": 0, "data": {"nothing": "useful"}}')
    with pytest.raises(BkUnavailable, match="cannot read"):
        await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)


async def test_slow_answer_is_a_timeout(session: aiohttp.ClientSession, bk: FakeBkJob) -> None:
    fast = client(session, bk.base_url, version=bk.api_version, timeout=0.1)
    bk.delay_next("execute_job", 5.0)
    with pytest.raises(BkTimeout, match=f"{wire(bk, 'execute_job')} did not answer within 0.1 s"):
        await fast.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    assert len(bk.requests("execute_job")) == 1  # never retried


@pytest.mark.parametrize("version", ["v2", "v3"])
async def test_connection_refused_is_unavailable_and_not_sent(session: aiohttp.ClientSession, version: str) -> None:
    gone = client(session, "http://127.0.0.1:1", version=version)
    with pytest.raises(BkUnavailable) as err:
        await gone.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    assert err.value.request_sent is False
    assert "could not be reached" in str(err.value)


# -- the plan-detail cache ------------------------------------------------------------------------------------


async def test_plan_detail_is_cached_per_business_and_plan(bkc: BkClient, bk: FakeBkJob) -> None:
    bk.add_plan(BIZ, 200, "Other plan")
    first = await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    again = await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    assert again == first
    assert len(bk.requests("get_job_detail")) == 1
    other = await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=200, bk_username=USER)
    assert other.name == "Other plan"
    assert len(bk.requests("get_job_detail")) == 2


async def test_errors_are_not_cached(bkc: BkClient, bk: FakeBkJob) -> None:
    bk.fail_next("get_job_detail", 1243009, "Job plan does not exist")
    with pytest.raises(BkApiError):
        await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    detail = await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=PLAN, bk_username=USER)
    assert detail.name == "Deploy web"
    assert len(bk.requests("get_job_detail")) == 2


async def test_status_reads_are_never_cached(bkc: BkClient, bk: FakeBkJob) -> None:
    data = await bkc.execute_job(ExecuteJobRequest(bk_biz_id=BIZ, bk_job_id=PLAN), bk_username=USER)
    first = await bkc.get_job_instance_status(bk_biz_id=BIZ, job_instance_id=data.job_instance_id, bk_username=USER)
    await bk.finish(data.job_instance_id, status=3)
    second = await bkc.get_job_instance_status(bk_biz_id=BIZ, job_instance_id=data.job_instance_id, bk_username=USER)
    assert (first.is_finished, second.is_finished) == (False, True)


async def test_a_large_plan_arriving_in_many_chunks_is_read_whole(bkc: BkClient, bk: FakeBkJob) -> None:
    """aiohttp's `read(n)` returns what has arrived so far: a 2 MB answer must still be read to its end."""
    many = [{"id": 5000 + i, "name": f"v{i}", "category": 1, "value": "x" * 2000} for i in range(1000)]
    bk.add_plan(BIZ, 777, "Big plan", many)
    detail = await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=777, bk_username="ops-bot")
    assert len(detail.variables) == 1000 and detail.variables[-1].value == "x" * 2000


async def test_ipv6_only_default_hosts_are_read_by_host_id(bkc: BkClient, bk: FakeBkJob) -> None:
    """`ip` is null for an IPv6-only host (EsbIpDTO / v3 `server.ip_list`): it is kept, by host ID and IPv6."""
    hosts = [{"bk_host_id": 11, "ip": "10.0.0.1"}, {"bk_host_id": 77, "ip": None, "ipv6": "2001:db8::7"}]
    bk.add_plan(BIZ, 140, "dual", [{"id": 9, "name": "servers", "category": 3, "ip_list": hosts}])
    detail = await bkc.get_job_detail(bk_biz_id=BIZ, bk_job_id=140, bk_username=USER)
    (servers,) = detail.variables
    assert servers.default_targets() == TargetServer(
        ip_list=[IpEntry(bk_cloud_id=0, ip="10.0.0.1")], host_id_list=[HostId(bk_host_id=77, ipv6="2001:db8::7")]
    )
    assert servers.host_ids() == {(0, "10.0.0.1"): 11}


@pytest.mark.parametrize(
    ("raw", "log"),
    [
        (b"plain \\u00e9t\\u00e9 caf\xc3\xa9", "plain été café"),  # valid: read as it is
        (b"pair \\ud83d\\ude00 ok", "pair \U0001f600 ok"),  # a surrogate pair is one character, kept
        (b"lone \\udc80 and \\uD800x", "lone \ufffd and \ufffdx"),  # escaped lone surrogates: U+FFFD
        (b"bytes \xff\xfe end", "bytes \ufffd\ufffd end"),  # invalid UTF-8: U+FFFD
    ],
)
def test_a_log_answer_reads_whatever_a_host_printed(raw: bytes, log: str) -> None:
    body = b'{"result": true, "code": 0, "data": {"log_content": "' + raw + b'"}}'
    envelope = BkClient._lenient_envelope("get_job_instance_log", 200, body)
    assert envelope.data == {"log_content": log}
