"""End to end: two bot replicas on one PostgreSQL, each receiving part of the clicks and callbacks.

Skipped with the reason when TEST_DATABASE_URL is unset or unreachable (see tests/test_store.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Iterable
from pathlib import Path
from typing import Any

import pytest

from bot.app import STORE
from bot.blocks import APPROVE_ACTION
from bot.store import LaunchState, Store
from tests.conftest import PLAN, Bot
from tests.fakes import FakeBkJob, FakeSlack
from tests.test_store import PgSchema, postgres_url_or_skip

OPS = "C0OPS"  # approval by one of the approvers
OPEN = "C0OPEN"  # no approval: `--yes` launches at once
REQUESTER = "U0ALICE"
APPROVERS = ["U0BOB", "U0CAROL", "U0DAVE"]

POLICY = f"""
[users]
{REQUESTER} = "alice"

[channels.{OPS}]
approval = true
approvers = {json.dumps(APPROVERS)}
approval_ttl = "30m"

[defaults]
approval = false
"""


@pytest.fixture
async def pg() -> AsyncIterator[PgSchema]:
    async with PgSchema(await postgres_url_or_skip()) as schema:
        yield schema


async def start_replicas(
    slack: FakeSlack, bk: FakeBkJob, pg: PgSchema, tmp_path: Path, **overrides: str
) -> tuple[Bot, Bot]:
    """Two apps on two ports sharing the PostgreSQL schema, started at once (so they also race to migrate)."""
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
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
    a, b = await start_replicas(slack, bk, pg, tmp_path, CALLBACK_GRACE="0.5", PROGRESS_INTERVAL="0.2")
    try:
        await launch_many((a, b), 40)
        instances = sorted(bk.instances)

        async def finish(ids: list[int]) -> None:
            await asyncio.gather(*(bk.finish(i, status=3) for i in ids))

        # The first half finishes while B shuts down; the second half after it is gone (its callbacks fail).
        await asyncio.gather(finish(instances[:20]), b.stop())
        await finish(instances[20:])
        lost = [i for i in instances if not any(c.status == 200 for c in bk.callbacks if c.job_instance_id == i)]
        assert lost, "some callbacks should have gone to the stopped replica"
        await slack.wait_for_call(
            "chat.postMessage",
            lambda c: c.args.get("channel") == OPEN and bool(c.args.get("thread_ts")),
            count=40,
            timeout=60,
        )
        await a.idle()
        await assert_one_reply_per_launch(a, 40)
    finally:
        await asyncio.gather(a.close(), b.close())
