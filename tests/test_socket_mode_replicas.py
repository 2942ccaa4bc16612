"""Two replicas in Socket Mode on one PostgreSQL: each holds its own connection, Slack spreads envelopes (and
their redeliveries) over both, and every launch still happens once.

Skipped with the reason when TEST_DATABASE_URL is unset or unreachable (see tests/test_store.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.fakes.socket_mode import FakeSocketMode
from bot.slack.blocks.approvals import APPROVE_ACTION
from tests.conftest import APP_TOKEN, PLAN, Bot
from tests.fakes import FakeBkJob, FakeSlack
from tests.stores import PgSchema, postgres_url_or_skip

OPS = "C0OPS"
OPEN = "C0OPEN"
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

[defaults]
approval = false
"""


@pytest.fixture
async def replicas(slack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[tuple[Bot, Bot]]:
    url = await postgres_url_or_skip()
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    async with PgSchema(url) as pg, FakeSocketMode(slack=slack, app_token=APP_TOKEN) as socket:
        bots = [
            Bot(
                slack=slack,
                bk=bk,
                db_path=tmp_path / "unused.sqlite3",
                socket=socket,
                DATABASE_URL=pg.url,
                BKJOB_CONFIG=str(policy),
            )
            for _ in range(2)
        ]
        await asyncio.gather(*(b.start() for b in bots))
        try:
            await socket.wait_connections(2)
            yield bots[0], bots[1]
        finally:
            await asyncio.gather(*(b.close() for b in bots))


async def test_redelivered_commands_over_two_connections_launch_once_each(replicas: tuple[Bot, Bot]) -> None:
    a, b = replicas
    socket = a.socket
    assert socket is not None
    # Only a lost ack makes Slack deliver again: an ack merely slowed by a loaded machine must not count as lost.
    socket.ack_timeout = 60
    envelopes = [
        socket.deliver(
            "slash_commands",
            a.command_payload(f"run {PLAN} --yes version={i}", channel=OPEN, user=REQUESTER),
            accepts_response_payload=True,
            lose_acks=1,  # half the deliveries are answered too late and delivered again, on the other connection
        )
        for i in range(20)
    ]
    await asyncio.gather(*(e.wait_acked(timeout=60) for e in envelopes))
    await a.bk.wait_for_request("execute_job", count=20, timeout=60)
    await asyncio.gather(a.idle(), b.idle())

    assert sum(len(e.deliveries) for e in envelopes) == 40
    assert all(len({conn for conn, _ in e.deliveries}) == 2 for e in envelopes), "an envelope reached one replica"
    assert len(a.bk.requests("execute_job")) == 20
    launches = [m for m in a.slack.messages(OPEN) if not m.get("thread_ts")]
    assert len(launches) == 20


async def test_approve_clicks_spread_over_two_connections_launch_once(replicas: tuple[Bot, Bot]) -> None:
    a, b = replicas
    assert (await a.command(f"run {PLAN} --yes version=2.0", user=REQUESTER, channel=OPS)).status == 200
    await a.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("channel") == OPS)
    await asyncio.gather(a.idle(), b.idle())
    (message,) = a.slack.messages(OPS)
    approval_id = next(str(blk["elements"][0]["value"]) for blk in message["blocks"] if blk.get("type") == "actions")
    clicks = await asyncio.gather(
        *(
            a.click(APPROVE_ACTION, approval_id, user=APPROVERS[i % 3], channel=OPS, message_ts=message["ts"])
            for i in range(30)
        )
    )
    assert all(c.status == 200 for c in clicks)
    await a.bk.wait_for_request("execute_job")
    await asyncio.gather(a.idle(), b.idle())
    assert len(a.bk.requests("execute_job")) == 1
    assert a.socket is not None
    assert {conn for e in a.socket.envelopes for conn, _ in e.deliveries} == {c.id for c in a.socket.connections()}
