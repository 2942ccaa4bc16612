"""End to end: two bot replicas on one PostgreSQL, each receiving part of the clicks and callbacks.

Skipped with the reason when TEST_DATABASE_URL is unset or unreachable (see tests/test_store.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import STORE
from bot.slack.blocks.approvals import APPROVE_ACTION
from bot.store import LaunchState, Store
from tests.conftest import APP_CODE, APP_SECRET, BOT_TOKEN, PLAN, SIGNING_SECRET, Bot
from tests.fakes import FakeBkJob, FakeSlack
from tests.stores import PgSchema

OPS = "C0OPS"  # approval by one of the approvers
OPEN = "C0OPEN"  # no approval: `--yes` launches at once
REQUESTER = "U0ALICE"
APPROVERS = ["U0BOB", "U0CAROL", "U0DAVE"]

POLICY = f"""
[users]
{REQUESTER} = "alice"
U0BOB = "bob"
U0CAROL = "carol"
U0DAVE = "dave"

[channels.{OPS}]
approval = true
approvers = {json.dumps(APPROVERS)}
approval_ttl = "30m"

[defaults]
approval = false
"""


async def start_replicas(
    slack: FakeSlack, bk: FakeBkJob, pg: PgSchema, tmp_path: Path, **overrides: str
) -> tuple[Bot, Bot]:
    """Two apps on two ports sharing the PostgreSQL schema, started at once (so they also race to migrate)."""
    slack.lift_rate_tiers()  # hundreds of results within seconds: Slack's per-minute tiers are not the point here
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    # Hundreds of requests at once on a loaded machine may queue for the database longer than the default 10 s
    # deadline (answered 503): that deadline is not what these tests prove.
    overrides = {"REQUEST_TIMEOUT": "60", **overrides}
    bots = tuple(
        Bot(
            slack=slack,
            bk=bk,
            db_path=tmp_path / "unused.sqlite3",
            DATABASE_URL=pg.url,
            BKJOB_CONFIG=str(policy),
            **overrides,
        )
        for _ in range(2)
    )
    await asyncio.gather(*(b.start() for b in bots))
    return bots[0], bots[1]


@pytest.fixture
async def replicas(slack: FakeSlack, bk: FakeBkJob, pg: PgSchema, tmp_path: Path) -> AsyncIterator[tuple[Bot, Bot]]:
    a, b = await start_replicas(slack, bk, pg, tmp_path)
    try:
        yield a, b
    finally:
        await asyncio.gather(a.close(), b.close())


def store_of(bot: Bot) -> Store:
    assert bot.runner is not None
    return bot.runner.app[STORE]


async def bounded(jobs: Iterable[Awaitable[Any]], limit: int = 25) -> list[Any]:
    """Run many requests at once, as Slack and BK-JOB would, without opening hundreds of sockets together."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Awaitable[Any]) -> Any:
        async with gate:
            return await job

    return await asyncio.gather(*(one(job) for job in jobs))


async def launch_many(bots: tuple[Bot, ...], count: int) -> None:
    """`count` launches with --yes in the open channel, the commands spread over the replicas."""
    for bot in bots:
        assert bot.http is not None
    responses = await bounded(
        bots[i % len(bots)].command(f"run {PLAN} --yes version={i}", channel=OPEN, user=REQUESTER) for i in range(count)
    )
    assert all(r.status == 200 for r in responses)
    await bots[0].bk.wait_for_request("execute_job", count=count, timeout=60)
    # Each launch posts its message in the background once execute_job answers.
    await bots[0].slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("channel") == OPEN and not c.args.get("thread_ts"), count=count
    )
    await asyncio.gather(*(bot.idle() for bot in bots if bot.runner is not None))


async def post_callback(bot: Bot, bk: FakeBkJob, instance_id: int) -> int:
    """BK-JOB's callback for `instance_id`, sent to `bot` (a load balancer may route it to any replica)."""
    inst = bk.instances[instance_id]
    assert inst.callback_url is not None and bot.http is not None
    token = inst.callback_url.rsplit("/", 1)[1]
    async with bot.http.post(
        f"{bot.url}/bkjob/callback/{token}", data=json.dumps(inst.callback_body()).encode()
    ) as resp:
        await resp.read()
        return resp.status


async def assert_one_reply_per_launch(bot: Bot, count: int) -> None:
    launches = await store_of(bot).recent_launches(OPEN, 10 * count)
    assert len(launches) == count
    assert all(lr.state == LaunchState.FINISHED for lr in launches)
    replies = [len(bot.slack.thread(OPEN, lr.message_ts or "")) for lr in launches]
    assert replies == [1] * count, f"threads with no or several replies: {[r for r in replies if r != 1]}"
    assert await store_of(bot).unposted_results() == []


async def test_fifty_approve_clicks_over_two_replicas_launch_once(replicas: tuple[Bot, Bot]) -> None:
    a, b = replicas
    await a.command(f"run {PLAN} --yes version=2.0", user=REQUESTER, channel=OPS)
    await a.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("channel") == OPS)
    await a.idle()
    (message,) = a.slack.messages(OPS)
    approval_id = next(
        str(block["elements"][0]["value"]) for block in message["blocks"] if block.get("type") == "actions"
    )

    responses = await asyncio.gather(
        *(
            (a, b)[i % 2].click(
                APPROVE_ACTION, approval_id, user=APPROVERS[i % 3], channel=OPS, message_ts=message["ts"]
            )
            for i in range(50)
        )
    )
    assert all(r.status == 200 for r in responses)
    await a.bk.wait_for_request("execute_job")
    await asyncio.gather(a.idle(), b.idle())

    assert len(a.bk.requests("execute_job")) == 1
    actions = [e.action for e in await store_of(b).audit_events()]
    assert actions.count("approved") == 1 and actions.count("launched") == 1
    approval = await store_of(b).get_approval(approval_id)
    assert approval is not None and approval.launch_id is not None


async def test_two_hundred_callbacks_over_two_replicas_give_one_reply_each(
    replicas: tuple[Bot, Bot], bk: FakeBkJob, slack: FakeSlack
) -> None:
    a, b = replicas
    await launch_many((a, b), 200)
    instances = sorted(bk.instances)
    assert len(instances) == 200
    for instance_id in instances:
        await bk.finish(instance_id, status=3, callback=False)
    # Every callback goes to the replica that did NOT launch it half the time, and each is sent twice (BK-JOB's
    # JSON-then-form re-send, or a retry through the load balancer), once to each replica.
    statuses = await bounded(
        post_callback((a, b)[(i // 2 + j) % 2], bk, instance_id)
        for i, instance_id in enumerate(instances)
        for j in range(2)
    )
    assert set(statuses) == {200}
    await slack.wait_for_call(
        "chat.postMessage",
        lambda c: c.args.get("channel") == OPEN and bool(c.args.get("thread_ts")),
        count=200,
        timeout=60,
    )
    await asyncio.gather(a.idle(), b.idle())
    await assert_one_reply_per_launch(a, 200)
    thread_posts = [c for c in slack.calls("chat.postMessage") if c.args.get("thread_ts")]
    assert len(thread_posts) == 200


async def test_a_replica_stopping_mid_run_loses_no_result(
    slack: FakeSlack, bk: FakeBkJob, pg: PgSchema, tmp_path: Path
) -> None:
    """B stops while results arrive; callbacks meant for it are then lost, and A's poller reports those."""
    # B is stopped while its poller holds leases on running launches (they are read every PROGRESS_INTERVAL):
    # A takes them over once those leases run out, so they are kept short here.
    a, b = await start_replicas(slack, bk, pg, tmp_path, CALLBACK_GRACE="0.5", PROGRESS_INTERVAL="0.2", POLL_LEASE="2")
    try:
        await launch_many((a, b), 40)
        instances = sorted(bk.instances)
        # Which replica launched each instance (its callback URL names it), so that the split below does not rest
        # on the order in which a loaded machine happened to number the launches.
        by_b = [i for i in instances if (bk.instances[i].callback_url or "").startswith(f"{b.url}/")]
        by_a = [i for i in instances if i not in by_b]
        assert len(by_a) == len(by_b) == 20

        async def finish(ids: list[int]) -> None:
            await asyncio.gather(*(bk.finish(i, status=3) for i in ids))

        # Half of each replica's launches finish while B shuts down; the rest after it is gone (B's callbacks fail).
        await asyncio.gather(finish(by_a[:10] + by_b[:10]), b.stop())
        await finish(by_a[10:] + by_b[10:])
        lost = [i for i in instances if not any(c.status == 200 for c in bk.callbacks if c.job_instance_id == i)]
        assert set(by_b[10:]) <= set(lost), "the callbacks to the stopped replica should have failed"
        await slack.wait_for_call(
            "chat.postMessage",
            lambda c: c.args.get("channel") == OPEN and bool(c.args.get("thread_ts")),
            count=40,
            timeout=120,
        )
        await a.idle()
        await assert_one_reply_per_launch(a, 40)
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_a_replica_stopping_gracefully_hands_its_leases_over_at_once(
    slack: FakeSlack, bk: FakeBkJob, pg: PgSchema, tmp_path: Path
) -> None:
    """A rolling deploy: A stops while it polls a running launch and while a result waits in its outbox for the
    channel's slot. B, whose leases (like A's) last two minutes, takes both over at once: each result goes out
    once. Without the hand-over, B would wait out A's 120 s leases and the waits below would time out."""
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    long_leases = {
        "DATABASE_URL": pg.url,
        "BKJOB_CONFIG": str(policy),
        "POLL_LEASE": "120",
        "OUTBOX_LEASE": "120",
        "CALLBACK_GRACE": "0",
        "PROGRESS_INTERVAL": "0.2",
        "BK_TIMEOUT": "90",  # A's held status read is cut off by the shutdown, not by its own time-out
    }
    # A paces posts a minute apart per channel: a result queued after a launch message waits for its slot.
    a = Bot(slack=slack, bk=bk, db_path=tmp_path / "unused.sqlite3", SLACK_CHANNEL_INTERVAL="60", **long_leases)
    b = Bot(slack=slack, bk=bk, db_path=tmp_path / "unused.sqlite3", **long_leases)
    running, finished = "C0RUN", "C0DONE"
    await a.start()
    try:
        bk.delay_next("get_job_instance_status", 60)  # A's poll of the running launch hangs, its lease held
        assert (await a.command(f"run {PLAN} --yes", channel=running, user=REQUESTER)).status == 200
        await bk.wait_for_request("get_job_instance_status", timeout=30)
        assert (await a.command(f"run {PLAN} --yes", channel=finished, user=REQUESTER)).status == 200
        await bk.wait_for_request("execute_job", count=2, timeout=30)
        launch_ts = {}
        for channel in (running, finished):
            await slack.wait_for_call(
                "chat.postMessage",
                lambda c, ch=channel: c.args.get("channel") == ch and not c.args.get("thread_ts"),
                timeout=30,
            )
            (message,) = slack.messages(channel)
            launch_ts[channel] = message["ts"]
        running_id, finished_id = sorted(bk.instances)
        await bk.finish(finished_id, status=3)  # its callback reaches A, which queues the reply
        # The launch message's edit goes in the same outbox round as the reply, which then waits for its slot.
        await slack.wait_for_call("chat.update", lambda c: c.args.get("ts") == launch_ts[finished], timeout=30)
        assert slack.thread(finished, launch_ts[finished]) == []

        await a.stop()
        assert slack.thread(finished, launch_ts[finished]) == []
        await b.start()
        await slack.wait_for_call(
            "chat.postMessage",
            lambda c: c.args.get("thread_ts") == launch_ts[finished] and slack.accepted(c),
            timeout=30,
        )
        # B reads the running launch long before A's lease would have run out, then sees it end (no callback:
        # BK-JOB would call the stopped replica's address).
        await bk.wait_for_request("get_job_instance_status", count=2, timeout=30)
        await bk.finish(running_id, status=3, callback=False)
        await slack.wait_for_call(
            "chat.postMessage",
            lambda c: c.args.get("thread_ts") == launch_ts[running] and slack.accepted(c),
            timeout=30,
        )
        await b.idle()
        assert len(slack.thread(finished, launch_ts[finished])) == 1
        assert len(slack.thread(running, launch_ts[running])) == 1
        assert await store_of(b).unposted_results() == []
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_a_replica_killed_mid_delivery_leaves_its_work_to_the_other(
    slack: FakeSlack, bk: FakeBkJob, pg: PgSchema, tmp_path: Path
) -> None:
    """Replica A is a real `python -m bot` process, SIGKILLed while Slack holds it in a 429 wait with results
    leased in its outbox; replica B takes those messages over once A's leases expire. Nothing is lost or doubled."""
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.base_url,
        "BK_API_URL": bk.base_url,
        "BK_APP_CODE": APP_CODE,
        "BK_APP_SECRET": APP_SECRET,
        "BK_USERNAME": "ops-bot",
        "BK_BIZ_ID": "3",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": pg.url,
        "OUTBOX_LEASE": "1",
        "POLL_LEASE": "1",
        "SLACK_CHANNEL_INTERVAL": "0",
        "LOG_FORMAT": "text",
        "BKJOB_OPEN_MODE": "on",
    }
    replica_a = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    client = Bot(slack=slack, bk=bk, db_path=tmp_path / "unused.sqlite3")  # only signs and sends requests to A
    client.port = port
    client.http = aiohttp.ClientSession()
    replica_b: Bot | None = None
    try:
        await _wait_for_health(client, replica_a)
        for _ in range(6):
            assert (await client.command(f"run {PLAN} --yes", channel=OPEN)).status == 200
        await bk.wait_for_request("execute_job", count=6, timeout=60)
        await slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") is None, count=6, timeout=60)
        # From now on Slack lets one post per 5 s into the channel: A's second reply waits out a 429.
        slack.channel_rate = 0.2
        await asyncio.gather(*(bk.finish(i, status=3) for i in list(bk.instances)))
        await slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") is not None, count=2)
        replica_a.kill()
        await replica_a.wait()
        slack.channel_rate = None
        replica_b = Bot(slack=slack, bk=bk, db_path=tmp_path / "unused.sqlite3", DATABASE_URL=pg.url, OUTBOX_LEASE="1")
        await replica_b.start()
        launches = [m["ts"] for m in slack.messages(OPEN) if not m.get("thread_ts")]
        assert len(launches) == 6
        for ts in launches:
            # An attempt A made before it died may have been refused (429): wait for the reply Slack accepted.
            await slack.wait_for_call(
                "chat.postMessage", lambda c, ts=ts: c.args.get("thread_ts") == ts and slack.accepted(c), timeout=20
            )
        await replica_b.idle()
        assert sorted(len(slack.thread(OPEN, ts)) for ts in launches) == [1] * 6
    finally:
        if replica_a.returncode is None:
            replica_a.kill()
            await replica_a.wait()
        if replica_b is not None:
            await replica_b.close()
        await client.http.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_for_health(client: Bot, process: asyncio.subprocess.Process) -> None:
    """The replica is another process: there is no event to wait on, so ask /healthz until it answers (bounded)."""
    assert client.http is not None
    deadline = asyncio.get_running_loop().time() + 60  # a generous bound: a loaded machine starts Python slowly
    while asyncio.get_running_loop().time() < deadline:
        if process.returncode is not None:
            raise AssertionError(f"replica exited with {process.returncode}")
        try:
            async with client.http.get(f"{client.url}/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("replica did not answer /healthz within 60 s")
