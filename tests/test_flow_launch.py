"""End to end: /bkjob run → modal → execute_job → callback → result in the thread, over real HTTP."""

from __future__ import annotations

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
