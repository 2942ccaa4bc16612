"""Why did it fail: the failure digest in the result reply and full logs on request, over real HTTP (v2 and v3)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bot.fakes.bkjob import HostOutcome, file_log
from bot.slack.blocks.results import LOGS_ACTION
from tests.conftest import BIZ, CHANNEL, Bot
from tests.fakes import FakeBkJob, FakeSlack

ROLLOUT = 200
PASSWORD = "hunter2-plan-secret"
QUIET = "C0QUIET"
FULL = "C0FULL"
VIEWERS = "C0VIEWERS"
POLICY = f"""
[users]
U0ALICE = "alice"
U0BOB = "bob"

[defaults]
logs = "digest"

[channels.{QUIET}]
logs = "none"

[channels.{FULL}]
logs = "full"
secret_vars = ["api_key"]

[channels.{VIEWERS}]
logs = "full"
log_viewers = ["U0BOB"]
"""
CHANNEL_USER = "U0ALICE"
RED = "\x1b[31m"
RESET = "\x1b[0m"


def hosts(count: int) -> list[dict[str, Any]]:
    return [
        {"bk_host_id": 1000 + i, "bk_cloud_id": 0, "ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"}
        for i in range(count)
    ]


def add_rollout(bk: FakeBkJob, count: int) -> list[dict[str, Any]]:
    """Plan 200: a script step on `count` hosts, then a file step on the same hosts."""
    targets = hosts(count)
    bk.add_plan(
        BIZ,
        ROLLOUT,
        "Roll out",
        [
            {"id": 901, "name": "db_password", "category": 4, "value": PASSWORD},
            {"id": 902, "name": "api_key", "category": 1, "value": "key-abc-123456"},
        ],
        steps=[
            {"name": "deploy", "ip_list": targets},
            {"name": "fetch artefact", "execute_type": 2, "ip_list": targets},
        ],
    )
    return targets


@pytest.fixture
async def lbot(slack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[Bot]:
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "logs.sqlite3", BKJOB_CONFIG=str(policy))
    await bot.start()
    try:
        yield bot
    finally:
        await bot.close()


async def launch(bot: Bot, channel: str = CHANNEL) -> tuple[int, str]:
    before = len(bot.bk.requests("execute_job"))
    await bot.command(f"run {ROLLOUT} --yes", channel=channel)
    await bot.bk.wait_for_request("execute_job", count=before + 1)
    await bot.idle()
    ts = bot.slack.messages(channel)[-1]["ts"]
    return next(reversed(bot.bk.instances)), ts


async def failed_reply(bot: Bot, instance_id: int, ts: str, channel: str = CHANNEL) -> dict[str, Any]:
    await bot.bk.finish(instance_id, status=4, step_statuses=[4, 1])
    await bot.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == ts and "Failed" in json.dumps(c.args), timeout=10
    )
    await bot.idle()
    (reply,) = [m for m in bot.slack.thread(channel, ts) if "Failed" in json.dumps(m)]
    return reply


def asked_hosts(body: Mapping[str, Any]) -> list[Any]:
    return list(body.get("host_id_list") or body.get("ip_list") or [])


def sections_of(message: Mapping[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in message.get("blocks", []) if b.get("type") == "section"]


def within_slack_limits(message: Mapping[str, Any]) -> None:
    blocks = message.get("blocks", [])
    assert len(blocks) <= 50
    for block in blocks:
        if block.get("type") == "section":
            assert len(block["text"]["text"]) <= 3000
    assert len(json.dumps(blocks)) < 40_000


async def test_one_failed_host_shows_its_exit_code_and_last_lines_masked(lbot: Bot) -> None:
    add_rollout(lbot.bk, 1)
    instance_id, ts = await launch(lbot)
    log = (
        "starting deploy\n"
        f"{RED}ERROR{RESET} cannot connect: DB_PASSWORD={PASSWORD}\n"
        "curl https://deploy:s3cr3t-in-url@repo.example.com/app.tgz\n"
        "<!channel> <@U123> ```x```\n"
        "exit 2\n"
    )
    lbot.bk.set_host_outcomes(instance_id, 0, {"10.0.0.0": HostOutcome(status=104, exit_code=2, log=log)})
    reply = await failed_reply(lbot, instance_id, ts)
    text = "\n".join(sections_of(reply))
    assert "*deploy*: 1 of 1 hosts failed" in text
    assert "exit code 2" in text and "`10.0.0.0`" in text
    assert "cannot connect" in text and "exit 2" in text
    assert PASSWORD not in json.dumps(reply) and "s3cr3t-in-url" not in json.dumps(reply)
    assert "\x1b" not in json.dumps(reply) and "[31m" not in text
    assert "&lt;!channel&gt; &lt;@U123&gt;" in text and "<!channel>" not in text and "```x" not in text
    assert not [b for b in reply["blocks"] if b["type"] == "actions"]  # "digest" channel: no Logs button
    within_slack_limits(reply)


async def test_fifty_hosts_are_grouped_by_reason_and_only_representatives_are_read(lbot: Bot) -> None:
    targets = add_rollout(lbot.bk, 50)
    instance_id, ts = await launch(lbot)
    outcomes: dict[str, HostOutcome] = {}
    for i, host in enumerate(targets):
        if i < 30:
            outcomes[host["ip"]] = HostOutcome(status=104, exit_code=1, log=f"host {i}: disk full\n")
        elif i < 45:
            outcomes[host["ip"]] = HostOutcome(status=18, log="")
        else:
            outcomes[host["ip"]] = HostOutcome(status=102, log=f"host {i}: still waiting for lock\n")
    lbot.bk.set_host_outcomes(instance_id, 0, outcomes)
    reply = await failed_reply(lbot, instance_id, ts)
    text = "\n".join(sections_of(reply))
    assert "50 of 50 hosts failed" in text
    assert "*exit code 1*: 30 hosts" in text and "and 25 more" in text
    assert "*agent not installed*: 15 hosts" in text
    assert "timed out" in text and "5 hosts" in text
    assert "host 0: disk full" in text and "still waiting for lock" in text
    if lbot.bk.api_version == "v3":
        batches = lbot.bk.requests("batch_get_job_instance_ip_log")
        assert len(batches) == 1 and len(asked_hosts(batches[0].body)) == 3  # one host per reason
    else:
        assert len(lbot.bk.requests("get_job_instance_log")) == 1
    within_slack_limits(reply)


async def test_five_thousand_failed_hosts_still_fit_one_message(lbot: Bot) -> None:
    targets = add_rollout(lbot.bk, 5000)
    instance_id, ts = await launch(lbot)
    outcomes = {
        h["ip"]: HostOutcome(status=104, exit_code=1 + i % 10, log="x" * 300 + f"\nfailed with {1 + i % 10}\n")
        for i, h in enumerate(targets)
    }
    lbot.bk.set_host_outcomes(instance_id, 0, outcomes)
    reply = await failed_reply(lbot, instance_id, ts)
    text = "\n".join(sections_of(reply))
    assert "5,000 of 5,000 hosts failed" in text
    assert "*exit code 1*: 500 hosts" in text
    assert "7 other reasons on 3,500 hosts" in text
    within_slack_limits(reply)
    if lbot.bk.api_version == "v3":
        assert sum(len(asked_hosts(r.body)) for r in lbot.bk.requests("batch_get_job_instance_ip_log")) == 3


async def test_file_step_shows_failing_source_and_destination(lbot: Bot) -> None:
    add_rollout(lbot.bk, 2)
    instance_id, ts = await launch(lbot)
    lbot.bk.set_host_outcomes(
        instance_id,
        1,
        {
            ip: HostOutcome(
                status=203,
                files=[file_log("10.9.9.9", "/data/app.tgz", ip, "/opt/app/", detail="source file not found")],
            )
            for ip in ("10.0.0.0", "10.0.0.1")
        },
    )
    await lbot.bk.finish(instance_id, status=4, step_statuses=[3, 4])
    await lbot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == ts, timeout=60)
    await lbot.idle()
    (reply,) = lbot.slack.thread(CHANNEL, ts)
    text = "\n".join(sections_of(reply))
    assert "*fetch artefact*: 2 of 2 hosts failed" in text
    assert "source file missing" in text
    assert "`10.9.9.9:/data/app.tgz` → `10.0.0.0:/opt/app/`" in text
    assert "source file not found" in text


async def test_non_utf8_bytes_and_a_huge_log_never_break_the_reply(lbot: Bot) -> None:
    add_rollout(lbot.bk, 2)
    instance_id, ts = await launch(lbot)
    huge = ("line of output\n" * 200_000 + "the real error\n").encode()
    lbot.bk.set_host_outcomes(
        instance_id,
        0,
        {
            "10.0.0.0": HostOutcome(status=104, exit_code=3, log=b"caf\xe9 \xff\xfe broken bytes\n"),
            "10.0.0.1": HostOutcome(status=104, exit_code=4, log=huge),
        },
    )
    reply = await failed_reply(lbot, instance_id, ts)
    text = "\n".join(sections_of(reply))
    assert "caf\ufffd \ufffd\ufffd broken bytes" in text
    assert "the real error" in text
    within_slack_limits(reply)


async def test_channel_with_logs_none_reads_no_logs(lbot: Bot) -> None:
    add_rollout(lbot.bk, 3)
    instance_id, ts = await launch(lbot, channel=QUIET)
    lbot.bk.set_host_outcomes(instance_id, 0, {"10.0.0.0": HostOutcome(status=104, exit_code=1, log="boom\n")})
    reply = await failed_reply(lbot, instance_id, ts, channel=QUIET)
    assert "boom" not in json.dumps(reply) and "exit code" not in json.dumps(reply)
    assert not lbot.bk.requests("get_job_instance_log") and not lbot.bk.requests("batch_get_job_instance_ip_log")


@pytest.mark.parametrize("failure", ["error", "slow"])
async def test_bkjob_failing_while_logs_are_read_still_sends_the_reply(
    slack: FakeSlack, bk: FakeBkJob, tmp_path: Path, failure: str
) -> None:
    bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "f.sqlite3", LOG_DIGEST_BUDGET="0.5")
    await bot.start()
    try:
        add_rollout(bot.bk, 2)
        instance_id, ts = await launch(bot)
        bot.bk.set_host_outcomes(instance_id, 0, {"10.0.0.0": HostOutcome(status=104, exit_code=1, log="boom\n")})
        api = "get_job_instance_log" if bk.api_version == "v2" else "batch_get_job_instance_ip_log"
        if failure == "error":
            bot.bk.fail_next(api, 1244006, "Task instance does not exist")
        else:
            bot.bk.delay_next(api, 5)
        reply = await failed_reply(bot, instance_id, ts)
        text = "\n".join(sections_of(reply))
        assert "Failed" in json.dumps(reply)
        if failure == "error":
            assert "could not be read" in text and "1244006" in text
        else:
            assert "within 0.5 s" in text
        # Once per finish: a repeated callback reads no logs again.
        calls = len(bot.bk.requests(api))
        assert await bot.bk.send_callback(instance_id) == 200
        await bot.idle()
        assert len(bot.bk.requests(api)) == calls
    finally:
        await bot.close()


def logs_button(reply: Mapping[str, Any]) -> str:
    (actions,) = [b for b in reply["blocks"] if b["type"] == "actions"]
    (button,) = actions["elements"]
    assert button["action_id"] == LOGS_ACTION
    return str(button["value"])


async def answer(bot: Bot, needle: str) -> str:
    posts = await bot.slack.wait_for_response(lambda r: needle in str(r.body.get("text")), timeout=60)
    return str(posts[-1].body["text"])


async def test_logs_button_attaches_every_failed_hosts_log_masked_in_the_thread(lbot: Bot) -> None:
    targets = add_rollout(lbot.bk, 1200)
    instance_id, ts = await launch(lbot, channel=FULL)
    outcomes = {
        h["ip"]: HostOutcome(
            status=104,
            exit_code=1,
            log=f"{RED}deploying{RESET} on {h['ip']}\nDB_PASSWORD={PASSWORD}\nbare {PASSWORD}\nkey key-abc-123456\n",
        )
        for h in targets[:1100]
    }
    outcomes.update({h["ip"]: HostOutcome(status=18) for h in targets[1100:]})
    lbot.bk.set_host_outcomes(instance_id, 0, outcomes)
    reply = await failed_reply(lbot, instance_id, ts, channel=FULL)
    launch_id = logs_button(reply)
    before = len(lbot.bk.requests("batch_get_job_instance_ip_log"))

    await lbot.click(LOGS_ACTION, launch_id, user=CHANNEL_USER, channel=FULL, message_ts=reply["ts"])
    assert "Attached the logs of 1,200 failed hosts" in await answer(lbot, "Attached")
    (upload,) = lbot.slack.files()
    assert upload.channel == FULL and upload.thread_ts == ts and upload.data is not None
    content = upload.data.decode()
    assert content.count("===== 10.") == 1200
    assert "===== 10.0.0.7 · step 'deploy' (failed) · script exit code not zero · exit code 1" in content
    assert "agent not installed" in content
    assert "\x1b" not in content and "deploying on 10.0.0.7" in content
    assert "DB_PASSWORD=******" in content and "key-abc-123456" not in content
    if lbot.bk.api_version == "v2":
        assert PASSWORD not in content  # v2 reveals the plan's password default, so it is masked wherever it appears
        assert len(lbot.bk.requests("get_job_instance_log")) == 2  # the digest's read and this one
    else:
        batches = lbot.bk.requests("batch_get_job_instance_ip_log")[before:]
        assert [len(asked_hosts(b.body)) for b in batches] == [500, 500, 200]
    assert upload.initial_comment is not None and f"<@{CHANNEL_USER}>" in upload.initial_comment

    # A second click within minutes reads nothing again.
    calls = len(lbot.bk.requests())
    await lbot.click(LOGS_ACTION, launch_id, user=CHANNEL_USER, channel=FULL, message_ts=reply["ts"])
    assert "a few minutes ago" in await answer(lbot, "a few minutes ago")
    assert len(lbot.slack.files()) == 1
    assert len([r for r in lbot.bk.requests()[calls:] if "log" in r.api]) == 0


async def test_logs_command_attaches_one_hosts_log(lbot: Bot) -> None:
    add_rollout(lbot.bk, 3)
    instance_id, ts = await launch(lbot, channel=FULL)
    lbot.bk.set_host_outcomes(
        instance_id,
        0,
        {ip: HostOutcome(status=104, exit_code=7, log=f"log of {ip}\n") for ip in ("10.0.0.0", "10.0.0.1", "10.0.0.2")},
    )
    await failed_reply(lbot, instance_id, ts, channel=FULL)
    await lbot.command(f"logs {instance_id} 10.0.0.1", channel=FULL)
    assert "Attached the logs of 1 failed host " in await answer(lbot, "Attached")
    (upload,) = lbot.slack.files()
    assert upload.data is not None and b"log of 10.0.0.1" in upload.data and b"log of 10.0.0.0" not in upload.data


async def test_logs_command_finds_an_instance_older_than_the_last_50_launches(lbot: Bot) -> None:
    lbot.slack.lift_rate_tiers()  # 51 launch messages and their edits: the volume is not what this test is about
    add_rollout(lbot.bk, 1)
    instance_id, ts = await launch(lbot, channel=FULL)
    lbot.bk.set_host_outcomes(instance_id, 0, {"10.0.0.0": HostOutcome(status=104, exit_code=9, log="old one\n")})
    await failed_reply(lbot, instance_id, ts, channel=FULL)
    before = len(lbot.bk.requests("execute_job"))
    await asyncio.gather(*(lbot.command(f"run {ROLLOUT} --yes", channel=FULL) for _ in range(50)))
    await lbot.bk.wait_for_request("execute_job", count=before + 50, timeout=60)
    await lbot.idle()
    assert len(lbot.slack.messages(FULL)) >= 51

    await lbot.command(f"logs {instance_id}", channel=FULL)
    assert "Attached the logs of 1 failed host " in await answer(lbot, "Attached")
    (upload,) = lbot.slack.files()
    assert upload.thread_ts == ts and upload.data is not None and b"old one" in upload.data
    # Still only for launches made in the channel asking.
    await lbot.command(f"logs {instance_id}", channel=VIEWERS)
    assert "not launched from this channel" in await answer(lbot, "not launched from this channel")
    assert len(lbot.slack.files()) == 1


async def test_full_logs_only_where_the_policy_allows_and_for_whom(lbot: Bot) -> None:
    add_rollout(lbot.bk, 1)
    instance_id, ts = await launch(lbot)  # CHANNEL: logs = "digest"
    lbot.bk.set_host_outcomes(instance_id, 0, {"10.0.0.0": HostOutcome(status=104, exit_code=1, log="x\n")})
    await failed_reply(lbot, instance_id, ts)
    await lbot.command(f"logs {instance_id}")
    assert 'logs = "digest"' in await answer(lbot, "logs = ")
    await lbot.command(f"logs {instance_id}", channel=FULL)  # not launched from there
    assert "not launched from this channel" in await answer(lbot, "not launched from this channel")
    assert not lbot.slack.files()


async def test_only_listed_log_viewers_get_full_logs(lbot: Bot) -> None:
    add_rollout(lbot.bk, 1)
    instance_id, ts = await launch(lbot, channel=VIEWERS)
    lbot.bk.set_host_outcomes(instance_id, 0, {"10.0.0.0": HostOutcome(status=104, exit_code=1, log="x\n")})
    reply = await failed_reply(lbot, instance_id, ts, channel=VIEWERS)
    launch_id = logs_button(reply)
    await lbot.click(LOGS_ACTION, launch_id, user=CHANNEL_USER, channel=VIEWERS, message_ts=reply["ts"])
    assert "log_viewers" in await answer(lbot, "log_viewers")
    assert not lbot.slack.files()
    await lbot.click(LOGS_ACTION, launch_id, user="U0BOB", channel=VIEWERS, message_ts=reply["ts"])
    assert "Attached the logs of 1 failed host " in await answer(lbot, "Attached")
    # The button works only in its own launch's channel.
    await lbot.click(LOGS_ACTION, launch_id, user="U0BOB", channel=FULL, message_ts=reply["ts"])
    assert "not for a launch made in this channel" in await answer(lbot, "not for a launch")


async def test_callback_and_poller_racing_read_the_logs_once_and_post_one_digest(
    slack: FakeSlack, bk: FakeBkJob, tmp_path: Path
) -> None:
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "race.sqlite3", BKJOB_CONFIG=str(policy), CALLBACK_GRACE="0.1")
    await bot.start()
    try:
        add_rollout(bot.bk, 2)
        instance_id, ts = await launch(bot)
        bot.bk.set_host_outcomes(instance_id, 0, {"10.0.0.0": HostOutcome(status=104, exit_code=5, log="boom\n")})
        await bot.bk.finish(instance_id, status=4, step_statuses=[4, 1], callback=False)
        assert await bot.bk.send_callback(instance_id) == 200  # races the poller, due within 0.1 s
        await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == ts, timeout=60)
        await bot.idle()
        (reply,) = bot.slack.thread(CHANNEL, ts)
        assert "exit code 5" in json.dumps(reply) and "boom" in json.dumps(reply)
        api = "get_job_instance_log" if bk.api_version == "v2" else "batch_get_job_instance_ip_log"
        assert len(bot.bk.requests(api)) == 1
    finally:
        await bot.close()


async def test_no_log_line_is_shown_when_the_plans_secrets_cannot_be_read(lbot: Bot) -> None:
    add_rollout(lbot.bk, 1)
    instance_id, ts = await launch(lbot)
    lbot.bk.set_host_outcomes(
        instance_id, 0, {"10.0.0.0": HostOutcome(status=104, exit_code=1, log=f"echo {PASSWORD}\nfailed\n")}
    )
    lbot.bk.fail_next("get_job_detail", 9900403, "permission denied")  # the read of the plan's secrets
    reply = await failed_reply(lbot, instance_id, ts)
    text = "\n".join(sections_of(reply))
    assert "*exit code 1*: 1 host" in text  # the grouping still tells what went wrong
    assert "Logs are withheld" in text and "echo" not in text and PASSWORD not in json.dumps(reply)


async def test_a_retried_job_shows_the_latest_attempts_logs(lbot: Bot) -> None:
    """After "retry failed hosts" in BK-JOB the job finishes again: its digest is read again, from the new attempt."""
    add_rollout(lbot.bk, 2)
    instance_id, ts = await launch(lbot)
    first = {"10.0.0.0": HostOutcome(status=104, exit_code=1, log="first try\n"), "10.0.0.1": HostOutcome(status=9)}
    lbot.bk.set_host_outcomes(instance_id, 0, first)
    reply = await failed_reply(lbot, instance_id, ts)
    assert "first try" in json.dumps(reply) and "1 of 2 hosts failed" in json.dumps(reply)

    lbot.bk.retry_failed_hosts(instance_id)
    lbot.bk.set_host_outcomes(instance_id, 0, {"10.0.0.0": HostOutcome(status=104, exit_code=2, log="second try\n")})
    await lbot.bk.finish(instance_id, status=4, step_statuses=[4, 1])
    await lbot.slack.wait_for_call("chat.postMessage", lambda c: "second try" in json.dumps(c.args), timeout=10)
    await lbot.idle()
    second = lbot.slack.thread(CHANNEL, ts)[-1]
    text = "\n".join(sections_of(second))
    assert "exit code 2" in text and "second try" in text and "first try" not in text
    assert "1 of 2 hosts failed" in text  # 10.0.0.1 succeeded in the first attempt (status 3)


async def test_a_slow_log_read_does_not_hold_back_another_launchs_result(
    slack: FakeSlack, bk: FakeBkJob, tmp_path: Path
) -> None:
    """The poller reports two failed jobs: the first one's logs hang in BK-JOB, the second's result goes out anyway."""
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    bot = Bot(
        slack=slack,
        bk=bk,
        db_path=tmp_path / "slow.sqlite3",
        BKJOB_CONFIG=str(policy),
        BK_CALLBACK="off",
        CALLBACK_GRACE="0.1",
        PROGRESS_INTERVAL="0.1",
        LOG_DIGEST_BUDGET="60",
        BK_TIMEOUT="60",
    )
    await bot.start()
    try:
        add_rollout(bot.bk, 1)
        slow_id, slow_ts = await launch(bot)
        quick_id, quick_ts = await launch(bot)
        for instance_id in (slow_id, quick_id):
            outcome = HostOutcome(status=104, exit_code=3, log=f"broken {instance_id}\n")
            bot.bk.set_host_outcomes(instance_id, 0, {"10.0.0.0": outcome})
        api = "get_job_instance_log" if bk.api_version == "v2" else "batch_get_job_instance_ip_log"
        bot.bk.delay_next(api, 60)  # held until the fake closes
        await bot.bk.finish(slow_id, status=4, step_statuses=[4, 1])
        await bot.bk.wait_for_request(api, count=1, timeout=10)
        await bot.bk.finish(quick_id, status=4, step_statuses=[4, 1])
        await bot.slack.wait_for_call(
            "chat.postMessage",
            lambda c: c.args.get("thread_ts") == quick_ts and "Failed" in json.dumps(c.args),
            timeout=20,
        )
        assert f"broken {quick_id}" in json.dumps(bot.slack.thread(CHANNEL, quick_ts))
        assert not bot.slack.thread(CHANNEL, slow_ts)  # its log read is still held by BK-JOB
        await bot.bk.close()  # the held read fails: the result goes out once, saying the logs are missing
        await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == slow_ts, timeout=20)
        await bot.idle()
        (reply,) = bot.slack.thread(CHANNEL, slow_ts)
        assert "Failed" in json.dumps(reply) and f"broken {slow_id}" not in json.dumps(reply)
        assert len(bot.bk.requests(api)) == 2  # one read per finish
    finally:
        await bot.close()
