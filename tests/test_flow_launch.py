"""End to end: /bkjob run → modal → execute_job → callback → result in the thread, over real HTTP."""

from __future__ import annotations

import json

from tests.conftest import BIZ, CHANNEL, PLAN, USER, Bot


async def test_modal_path_launches_and_posts_result_in_thread(bot: Bot) -> None:
    view = await bot.open_form()
    assert view["title"]["text"] == "Deploy web"
    status, answer = await bot.submit(
        view, {"version": "2.0", "servers": "10.0.0.1\n2:10.0.0.2\ngroup:abc\nmodule:1000"}
    )
    assert status == 200 and answer is None
    (req,) = await bot.bk.wait_for_request("execute_job")
    assert req.body["bk_biz_id"] == BIZ and req.body["bk_job_id"] == PLAN
    assert req.body["global_vars"] == [
        {
            "id": 436,
            "target_server": {
                "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.0.1"}, {"bk_cloud_id": 2, "ip": "10.0.0.2"}],
                "dynamic_group_id_list": ["abc"],
                "topo_node_list": [{"id": 1000, "node_type": "module"}],
            },
        },
        {"id": 437, "value": "2.0"},
    ]
    await bot.idle()
    (post,) = bot.slack.calls("chat.postMessage")
    assert post.args["channel"] == CHANNEL
    instance_id = next(iter(bot.bk.instances))
    statuses = await bot.bk.finish(instance_id, status=3)
    assert statuses == [200]
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") is not None)
    await bot.idle()
    ts = bot.slack.messages(CHANNEL)[0]["ts"]
    (reply,) = bot.slack.thread(CHANNEL, ts)
    assert "Succeeded" in reply["text"]
    assert USER


TOPO_PLAN = 120


def _topo_plan(bot: Bot) -> None:
    """A plan whose host default is an IP, a dynamic group and a topology node (v2 gives the node only inside
    `value`, JOB's TaskTargetDTO JSON)."""
    bot.bk.add_plan(
        BIZ,
        TOPO_PLAN,
        "Topo deploy",
        [
            {
                "id": 901,
                "name": "servers",
                "category": 3,
                "ip_list": [{"bk_host_id": 11, "bk_cloud_id": 0, "ip": "10.0.0.1"}],
                "custom_query_id": ["g1"],
                "topo_node_list": [{"id": 1000, "node_type": "module"}],
            },
            {"id": 902, "name": "version", "category": 1, "value": "1.0"},
        ],
    )


async def test_host_default_with_groups_and_nodes_keeps_every_target(bot: Bot) -> None:
    _topo_plan(bot)
    view = await bot.open_form(f"run {TOPO_PLAN}")
    (servers,) = [b for b in view["blocks"] if b.get("block_id") == "var:3:id:901"]
    prefilled = servers["element"]["initial_value"]
    assert prefilled.splitlines() == ["10.0.0.1", "group:g1", "module:1000"]

    # Unchanged: nothing is sent for the host variable, BK-JOB keeps its own default.
    await bot.submit(view, {"version": "2.0"})
    (first,) = await bot.bk.wait_for_request("execute_job")
    sent = first.body.get("global_vars") or first.body.get("global_var_list")
    assert sent == [{"id": 902, "value": "2.0"}]

    # Edited: one IP added, the group and the node the person did not remove still run.
    await bot.command(f"run {TOPO_PLAN}")
    second = await bot.slack.wait_for_call("views.update", count=2)
    view = bot.slack.view(second[-1].args["view_id"])
    assert view is not None
    await bot.submit(view, {"servers": prefilled + "\n10.0.0.2"})
    await bot.bk.wait_for_request("execute_job", count=2)
    await bot.idle()
    instance = bot.bk.instances[max(bot.bk.instances)]
    assert instance.resolved_vars["servers"] == {
        "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.0.1"}, {"bk_cloud_id": 0, "ip": "10.0.0.2"}],
        "dynamic_group_id_list": ["g1"],
        "topo_node_list": [{"id": 1000, "node_type": "module"}],
    }
    # The launch message says what the changed host variable runs on.
    message = bot.slack.messages(CHANNEL)[-1]
    assert "2 IPs, 1 dynamic group, 1 topology node" in json.dumps(message["blocks"])


IPV6_PLAN = 140


async def test_ipv6_only_hosts_launch_and_go_by_host_id(bot: Bot) -> None:
    """An IPv6-only default host (`ip` null, `ipv6` and `bk_host_id`): the plan still launches, the form and the
    launch message show it by host ID and IPv6 address, and an edited list names it in v3's `host_id_list`
    (which then holds every host); ESB v2 cannot name hosts by ID, so there the edit is refused, not shortened."""
    hosts = [
        {"bk_host_id": 11, "bk_cloud_id": 0, "ip": "10.0.0.1"},
        {"bk_host_id": 77, "bk_cloud_id": 0, "ip": None, "ipv6": "2001:db8::7"},
    ]
    variables = [
        {"id": 951, "name": "servers", "category": 3, "ip_list": hosts},
        {"id": 952, "name": "version", "category": 1, "value": "1.0"},
    ]
    bot.bk.add_plan(BIZ, IPV6_PLAN, "Dual stack", variables, steps=[{"name": "deploy", "ip_list": hosts}])
    await bot.command(f"run {IPV6_PLAN} --yes version=2.0")
    await bot.bk.wait_for_request("execute_job")
    await bot.idle()
    (first,) = bot.bk.instances.values()
    assert first.resolved_vars["servers"]["host_id_list"] == [77]  # the default, untouched

    view = await bot.open_form(f"run {IPV6_PLAN}")
    (servers,) = [b for b in view["blocks"] if b.get("block_id") == "var:3:id:951"]
    assert servers["element"]["initial_value"] == "10.0.0.1\nhost:77"
    assert "host:77 is 2001:db8::7" in servers["hint"]["text"]
    await bot.submit(view, {"servers": "10.0.0.1\nhost:77\nhost:78"})
    await bot.idle()
    if bot.bk.api_version == "v3":
        (req,) = [r for r in bot.bk.requests("execute_job") if "server" in json.dumps(r.body)]
        assert req.body["global_var_list"] == [{"id": 951, "server": {"host_id_list": [11, 77, 78]}}]
        launched = bot.bk.instances[max(bot.bk.instances)]
        assert launched.resolved_vars["servers"]["host_id_list"] == [11, 77, 78]
        message = json.dumps(bot.slack.messages(CHANNEL)[-1]["blocks"])
        assert "1 IP, 2 hosts by ID" in message and "2001:db8::7 (host:77)" in message
    else:
        assert len(bot.bk.requests("execute_job")) == 1  # nothing sent that would drop the IPv6-only hosts
        (told,) = await bot.slack.wait_for_call("chat.postEphemeral")
        assert "BK_API_VERSION=v3" in json.dumps(told.args) and "host:77" in json.dumps(told.args)
