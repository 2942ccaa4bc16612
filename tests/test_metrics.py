"""GET /metrics: Prometheus' text format, counting what the bot did (read as differences: the registry is the
process's, shared by every app a test process runs) and gauges of what is; off, behind a bearer token, and without
one served only on the internal METRICS_PORT."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot import metrics
from bot.app import METRICS_PORT, STORE
from bot.errors import ConfigError
from bot.slack.blocks.approvals import APPROVE_ACTION
from bot.store import Backlog, OutboxKind, OutboxMessage
from tests.conftest import CHANNEL, PLAN, Bot
from tests.fakes import FakeBkJob, FakeSlack

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(bot: Bot, headers: dict[str, str] | None = None) -> Samples:
    assert bot.http is not None
    async with bot.http.get(bot.metrics_url, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_a_launch_and_its_result_are_counted(bot: Bot) -> None:
    before = await scrape(bot)
    bot.slack.rate_limit_next("chat.update", retry_after=0)
    await bot.command(f"run {PLAN} --yes version=2.0")
    await bot.bk.wait_for_request("execute_job")
    await bot.idle()
    (instance_id,) = bot.bk.instances
    await bot.bk.finish(instance_id, status=3)
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") is not None)
    await bot.idle()
    after = await scrape(bot)

    assert grew(before, after, "bkjob_launches_total", outcome="started") == 1
    assert grew(before, after, "bkjob_callbacks_received_total", code="200") == 1
    assert grew(before, after, "bkjob_results_total", status="succeeded") == 1
    assert grew(before, after, "bkjob_results_delivered_total") == 1
    assert grew(before, after, "bkjob_slack_calls_total", method="chat.postMessage", code="200") >= 2
    assert grew(before, after, "bkjob_slack_rate_limited_total", method="chat.update") == 1
    assert grew(before, after, "bkjob_bk_call_seconds_count", api="execute_job", outcome="ok") == 1
    assert grew(before, after, "bkjob_bk_answers_total", api="execute_job", code="0") == 1
    assert grew(before, after, "bkjob_bk_call_seconds_count", api="get_job_instance_status", outcome="ok") >= 1
    assert value(after, "bkjob_outbox_depth") == 0 and value(after, "bkjob_outbox_oldest_age_seconds") == 0
    assert value(after, "bkjob_poller_lag_seconds") == 0


async def test_bkjob_unreachable_is_counted_as_an_error(slack: FakeSlack, bk: FakeBkJob, db_path: Path) -> None:
    bot = Bot(slack=slack, bk=bk, db_path=db_path, BK_API_URL="http://127.0.0.1:9")
    await bot.start()
    try:
        before = await scrape(bot)
        await bot.command(f"run {PLAN} --yes")
        await bot.slack.wait_for_response()
        await bot.idle()
        after = await scrape(bot)
        assert grew(before, after, "bkjob_bk_call_seconds_count", api="get_job_detail", outcome="error") == 1
    finally:
        await bot.close()


async def test_bkjob_business_errors_are_counted_by_code(bot: Bot) -> None:
    """JOB refuses with HTTP 200 and `result: false`: the HTTP outcome is `ok`, the code tells what happened."""
    before = await scrape(bot)
    await bot.command("run 999 --yes")  # no such plan: 1243009 from get_job_detail
    await bot.slack.wait_for_response()
    await bot.idle()
    after = await scrape(bot)
    assert grew(before, after, "bkjob_bk_answers_total", api="get_job_detail", code="1243009") == 1
    assert grew(before, after, "bkjob_bk_call_seconds_count", api="get_job_detail", outcome="ok") == 1


POLICY = """
[users]
U0ALICE = "alice"
U0BOB = "bob"

[channels.C0OPS]
approval = true
approvers = ["U0BOB"]
"""


@pytest.fixture
async def governed(slack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[Bot]:
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "m.sqlite3", BKJOB_CONFIG=str(policy))
    await bot.start()
    try:
        yield bot
    finally:
        await bot.close()


async def test_approvals_are_counted_by_decision(governed: Bot) -> None:
    before = await scrape(governed)
    await governed.command(f"run {PLAN} --yes", channel=CHANNEL)
    await governed.slack.wait_for_call("chat.postMessage")
    await governed.idle()
    message = governed.slack.messages(CHANNEL)[-1]
    approval_id = next(str(b["elements"][0]["value"]) for b in message["blocks"] if b.get("type") == "actions")
    await governed.click(APPROVE_ACTION, approval_id, user="U0BOB", message_ts=message["ts"])
    await governed.bk.wait_for_request("execute_job")
    await governed.idle()
    after = await scrape(governed)
    assert grew(before, after, "bkjob_approval_requests_total") == 1
    assert grew(before, after, "bkjob_approvals_total", decision="approved") == 1
    assert grew(before, after, "bkjob_launches_total", outcome="started") == 1


async def test_metrics_behind_a_bearer_token(slack: FakeSlack, bk: FakeBkJob, db_path: Path) -> None:
    bot = Bot(slack=slack, bk=bk, db_path=db_path, METRICS_TOKEN="scrape-secret-123")
    await bot.start()
    try:
        assert bot.http is not None
        for url in (f"{bot.url}/metrics", bot.metrics_url):  # with a token, on the public port too
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-secret-123"}):
                async with bot.http.get(url, headers=headers) as resp:
                    assert resp.status == 401
            async with bot.http.get(url, headers={"Authorization": "Bearer scrape-secret-123"}) as resp:
                assert resp.status == 200 and "bkjob_launches_total" in await resp.text()
    finally:
        await bot.close()


async def test_metrics_off_is_not_served(slack: FakeSlack, bk: FakeBkJob, db_path: Path) -> None:
    bot = Bot(slack=slack, bk=bk, db_path=db_path, METRICS="off")
    await bot.start()
    try:
        assert bot.http is not None
        async with bot.http.get(f"{bot.url}/metrics") as resp:
            assert resp.status == 404
        assert bot.runner is not None and METRICS_PORT not in bot.runner.app  # no internal listener either
    finally:
        await bot.close()


async def test_without_a_token_metrics_are_only_on_the_internal_port(bot: Bot) -> None:
    """The port Slack and BK-JOB reach serves no /metrics without METRICS_TOKEN; METRICS_PORT serves it alone."""
    assert bot.http is not None
    async with bot.http.get(f"{bot.url}/metrics") as resp:
        assert resp.status == 404
    assert "bkjob_launches_total" in str(await scrape(bot))
    internal = bot.metrics_url.removesuffix("/metrics")
    for path in ("/healthz", "/slack/events", "/bkjob/callback/x"):
        async with bot.http.get(f"{internal}{path}") as resp:
            assert resp.status in (404, 405), path


def test_metrics_port_must_be_another_port(db_path: Path, slack: FakeSlack, bk: FakeBkJob) -> None:
    bot = Bot(slack=slack, bk=bk, db_path=db_path, PORT="3000", METRICS_PORT="3000")
    with pytest.raises(ConfigError, match="METRICS_PORT: .*must differ from PORT"):
        bot.settings()


async def test_a_scrape_counts_the_backlog_without_loading_it(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    """50,000 pending messages once drove 20 concurrent scrapes to 2 GB: the gauges come from the database's
    counts, and concurrent scrapes share one reading. Counted, not timed: no row is loaded, one query is run."""
    assert bot.runner is not None
    store = bot.runner.app[STORE]
    now = time.time()
    for i in range(500):
        await store.enqueue(
            OutboxMessage(
                id=f"m{i}",
                created_at=now - 100 + i,
                channel="C0ELSEWHERE",
                order_key=f"k{i}",
                kind=OutboxKind.POST,
                payload={"text": "waiting"},
                next_attempt_at=now + 3600,  # not due: the outbox leaves them be
            )
        )

    def loads(*_: object, **__: object) -> None:
        raise AssertionError("a scrape loaded rows")

    monkeypatch.setattr(store, "outbox_messages", loads)
    monkeypatch.setattr(store, "unfinished_launches", loads)
    arrived = 0
    all_in = asyncio.Event()
    authorized = metrics.authorized

    def arriving(*args: Any) -> bool:
        nonlocal arrived
        arrived += 1
        if arrived == 20:
            all_in.set()
        return authorized(*args)

    readings = 0
    backlog = store.backlog

    async def counted(*, now: float) -> Backlog:
        nonlocal readings
        readings += 1
        await all_in.wait()  # a slow database: every other scrape arrives meanwhile
        return await backlog(now=now)

    monkeypatch.setattr(metrics, "authorized", arriving)
    monkeypatch.setattr(store, "backlog", counted)
    scrapes = await asyncio.gather(*(scrape(bot) for _ in range(20)))
    assert readings == 1
    for samples in scrapes:
        assert value(samples, "bkjob_outbox_depth") == 500
        assert value(samples, "bkjob_outbox_oldest_age_seconds") >= 100


async def test_socket_state_and_envelopes(slack: FakeSlack, bk: FakeBkJob, db_path: Path) -> None:
    bot = Bot(slack=slack, bk=bk, db_path=db_path, mode="socket")
    await bot.start()
    try:
        before = await scrape(bot)
        assert bot.socket is not None
        bot.socket.ack_timeout = 60  # only the lost ack makes Slack deliver again, however slow the machine
        bot.socket.lose_acks = 1
        envelope = bot.socket.deliver("slash_commands", bot.command_payload("help"), accepts_response_payload=True)
        await envelope.wait_acked()
        await bot.idle()
        after = await scrape(bot)
        assert value(after, "bkjob_socket_state", state="connected") == 1
        assert value(after, "bkjob_socket_state", state="reconnecting") == 0
        assert value(after, "bkjob_socket_connects") == 1
        assert grew(before, after, "bkjob_socket_envelopes_total", type="slash_commands", redelivered="no") == 1
        assert grew(before, after, "bkjob_socket_envelopes_total", type="slash_commands", redelivered="yes") == 1
        assert value(after, "bkjob_slack_calls_total", method="apps.connections.open", code="200") >= 1
    finally:
        await bot.close()
