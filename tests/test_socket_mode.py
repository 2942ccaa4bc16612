"""Socket Mode end to end: the bot dials the fake Socket Mode server, answers envelopes, survives Slack's
redeliveries and disconnects, reports its socket on /healthz and leaves cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import SOCKET
from bot.fakes.slack_rules import manifest_scopes
from bot.fakes.socket_mode import FakeSocketMode
from bot.slack.blocks.finder import PLAN_PICKER_ACTION, PLAN_PICKER_BLOCK
from bot.slack.socket_mode import SocketState, backoff
from tests.conftest import (
    APP_CODE,
    APP_SECRET,
    APP_TOKEN,
    BIZ,
    BOT_TOKEN,
    CHANNEL,
    PLAN,
    Bot,
    _free_port,
    start_refused,
)
from tests.fakes import FakeBkJob, FakeSlack

FAST = {"SOCKET_PING_INTERVAL": "0.2"}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def sbot(slack: FakeSlack, bk: FakeBkJob, db_path: Path) -> AsyncIterator[Bot]:
    instance = Bot(slack=slack, bk=bk, db_path=db_path, mode="socket", **FAST)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


def state(bot: Bot) -> SocketState:
    assert bot.runner is not None
    return bot.runner.app[SOCKET]


async def healthz(bot: Bot) -> dict[str, Any]:
    assert bot.http is not None
    async with bot.http.get(f"{bot.url}/healthz") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def test_slack_reaches_the_bot_only_over_the_socket(sbot: Bot) -> None:
    opens = sbot.slack.calls("apps.connections.open")
    assert [c.token for c in opens] == [APP_TOKEN]
    assert sbot.socket is not None and len(sbot.socket.connections()) == 1
    assert sbot.http is not None
    async with sbot.http.post(f"{sbot.url}/slack/events", data=b"payload=%7B%7D") as resp:
        assert resp.status == 404  # nothing may arrive over HTTP claiming to be Slack
    body = await healthz(sbot)
    assert body["ok"] is True
    assert body["socket"]["state"] == "connected" and body["socket"]["connects"] == 1
    assert body["socket"]["since"].endswith("Z")


async def test_launch_with_yes_is_acked_and_launches(sbot: Bot) -> None:
    resp = await sbot.command(f"run {PLAN} --yes version=2.0")
    assert resp.status == 200
    await sbot.bk.wait_for_request("execute_job")
    await sbot.idle()
    assert len([m for m in sbot.slack.messages(CHANNEL) if not m.get("thread_ts")]) == 1


@pytest.mark.parametrize("kind", ["command", "form"])
async def test_envelopes_delivered_again_launch_once(sbot: Bot, kind: str) -> None:
    """Slack delivers an envelope again (retry_attempt 1, 2, 3) when no ack came in time: here three acks are lost."""
    assert sbot.socket is not None
    view = await sbot.open_form() if kind == "form" else None
    sbot.socket.ack_timeout = 60  # only the lost acks make Slack deliver again, however slow the machine
    sbot.socket.lose_acks = 3
    if view is None:
        envelope = sbot.socket.deliver(
            "slash_commands", sbot.command_payload(f"run {PLAN} --yes version=2.0"), accepts_response_payload=True
        )
    else:
        payload = {
            "type": "view_submission",
            "team": {"id": "T0TEAM", "domain": "example"},
            "user": {"id": "U0ALICE", "username": "u0alice", "team_id": "T0TEAM"},
            "api_app_id": "A0BKJOB",
            "trigger_id": sbot.slack.new_trigger_id(),
            "view": {**view, "state": {"values": {}}},
        }
        envelope = sbot.socket.deliver("interactive", payload, accepts_response_payload=True)
    await envelope.wait_acked()
    await sbot.bk.wait_for_request("execute_job")
    await sbot.idle()
    assert [attempt for _, attempt in envelope.deliveries] == [0, 1, 2, 3]
    assert len(sbot.bk.requests("execute_job")) == 1
    assert len([m for m in sbot.slack.messages(CHANNEL) if not m.get("thread_ts")]) == 1


async def test_inline_errors_travel_in_the_ack(sbot: Bot) -> None:
    view = await sbot.open_form()
    status, answer = await sbot.submit(view, {"servers": "not-a-host"})
    assert status == 200
    assert answer is not None and answer["response_action"] == "errors"
    assert sbot.bk.requests("execute_job") == []


async def test_the_usage_and_a_command_that_does_not_parse_travel_in_the_ack(sbot: Bot) -> None:
    assert "*Usage*" in await sbot.answered("help")
    assert (await sbot.answered("run 0")).startswith(":warning:")
    assert sbot.slack.responses() == []


async def test_the_plan_pickers_options_travel_in_the_ack(sbot: Bot) -> None:
    """block_suggestion over Socket Mode: the options are the ack's payload (no options URL in the manifest)."""
    assert sbot.socket is not None
    sbot.bk.add_plan(BIZ, 201, "Deploy API", steps=[{"name": "one"}])
    view = await sbot.open_form("run")
    suggestion = {
        "type": "block_suggestion",
        "user": {"id": "U0ALICE", "username": "u0alice", "team_id": "T0TEAM"},
        "team": {"id": "T0TEAM", "domain": "example"},
        "api_app_id": "A0BKJOB",
        "container": {"type": "view", "view_id": view["id"]},
        "action_id": PLAN_PICKER_ACTION,
        "block_id": PLAN_PICKER_BLOCK,
        "value": "deploy",
        "view": view,
    }
    envelope = await sbot.socket.interactive(suggestion)
    answer = envelope.response_payload
    assert answer is not None and envelope.accepts_response_payload
    groups = answer.get("option_groups") or [{"options": answer.get("options", [])}]
    assert {o["value"] for g in groups for o in g["options"]} == {"plan:100", "plan:201"}


def test_the_socket_manifest_is_the_http_one_without_urls() -> None:
    """Both manifests ask for the same app (scopes, command, interactivity); only how Slack reaches it differs."""
    http = (ROOT / "manifest.yml").read_text().splitlines()
    socket = (ROOT / "manifest-socket.yml").read_text().splitlines()

    def body(lines: list[str]) -> list[str]:
        kept = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return [line for line in kept if not re.search(r"\b(url|request_url|[a-z_]+_url|socket_mode_enabled):", line)]

    assert body(http) == body(socket)
    assert manifest_scopes(ROOT / "manifest-socket.yml") == manifest_scopes()
    assert "  socket_mode_enabled: true" in socket and "  socket_mode_enabled: false" in http
    assert not any("https://" in line for line in socket if not line.startswith("#"))


async def test_a_payload_that_is_not_slacks_is_acked_and_ignored(sbot: Bot) -> None:
    assert sbot.socket is not None
    envelope = await sbot.socket.interactive({"type": "block_actions", "user": "U0ALICE", "actions": "x"})
    assert envelope.response_payload is None and len(envelope.deliveries) == 1
    await sbot.idle()
    assert sbot.slack.calls("chat.postMessage") == [] and sbot.slack.responses() == []


@pytest.mark.parametrize("reason", ["refresh_requested", "warning", "link_disabled"])
async def test_disconnect_message_reconnects_on_a_fresh_url(sbot: Bot, reason: str) -> None:
    assert sbot.socket is not None
    await sbot.socket.disconnect(reason)
    await sbot.socket.wait_connections(1, opened=2)
    await state(sbot).wait_for("connected", connects=2)
    body = await healthz(sbot)
    assert body["socket"]["last_disconnect"] == reason and body["socket"]["connects"] == 2
    assert (await sbot.command(f"run {PLAN} --yes")).status == 200
    await sbot.bk.wait_for_request("execute_job")


async def test_dropped_connection_reconnects(sbot: Bot) -> None:
    assert sbot.socket is not None
    sbot.socket.drop()
    await state(sbot).wait_for("connected", connects=2)
    await sbot.socket.wait_connections(1, opened=2)
    assert (await sbot.command(f"run {PLAN} --yes")).status == 200
    await sbot.bk.wait_for_request("execute_job")


async def test_healthz_says_disconnected_before_the_sdk_notices(slack: FakeSlack, bk: FakeBkJob, db_path: Path) -> None:
    """With pings 30 s apart the SDK reconnects late; /healthz must not claim a dropped connection is up meanwhile."""
    bot = Bot(slack=slack, bk=bk, db_path=db_path, mode="socket", SOCKET_PING_INTERVAL="30")
    await bot.start()
    try:
        assert bot.socket is not None
        (conn,) = bot.socket.connections()
        bot.socket.drop()
        await conn.closed.wait()
        seen = []
        for _ in range(200):  # the client learns of the drop a few loop turns after the server: ask, don't sleep
            seen.append((await healthz(bot))["socket"]["state"])
            if seen[-1] == "disconnected":
                break
        assert seen[-1] == "disconnected" and set(seen) <= {"connected", "disconnected"}, seen
        assert state(bot).connects == 1  # nothing reconnected yet: the next ping round does that
    finally:
        await bot.close()


async def test_stale_connection_is_replaced(sbot: Bot) -> None:
    """Slack stops answering pings: the SDK's heartbeat notices, and a new connection replaces it."""
    assert sbot.socket is not None
    sbot.socket.go_stale()
    await state(sbot).wait_for("connected", connects=2)
    await sbot.socket.wait_connections(1, opened=2)
    assert (await sbot.command(f"run {PLAN} --yes")).status == 200


async def test_failed_reconnects_back_off_and_healthz_says_so(sbot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    assert sbot.socket is not None
    sbot.slack.fail_next("apps.connections.open", error="internal_error", times=2)
    await sbot.socket.disconnect("refresh_requested")
    await state(sbot).wait_for("reconnecting")
    assert (await healthz(sbot))["socket"]["state"] == "reconnecting"
    await state(sbot).wait_for("connected", connects=2)
    assert len(sbot.slack.calls("apps.connections.open")) == 4
    retries = [r.getMessage() for r in caplog.records if "could not connect" in r.getMessage()]
    assert len(retries) == 2 and all("internal_error" in r for r in retries)
    assert APP_TOKEN not in caplog.text


async def test_a_replica_beyond_slacks_connection_limit_waits_its_turn(
    slack: FakeSlack, bk: FakeBkJob, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack refuses an 11th connection with `too_many_websockets`: that replica backs off instead of redialling
    in a loop, and takes over when a place frees up."""
    async with FakeSocketMode(slack=slack, app_token=APP_TOKEN) as socket:
        socket.max_connections = 1
        first = Bot(slack=slack, bk=bk, db_path=tmp_path / "a.sqlite3", socket=socket)
        spare = Bot(slack=slack, bk=bk, db_path=tmp_path / "b.sqlite3", socket=socket)
        await first.start()
        try:
            await spare.start()  # its handshake succeeds; then Slack says `too_many_websockets`
            assert spare.runner is not None
            spare_state = spare.runner.app[SOCKET]
            await asyncio.wait_for(spare_state.wait_for("disconnected"), timeout=60)
            assert any("too many connections for this app; waiting" in r.getMessage() for r in caplog.records)
            connects = spare_state.connects
            await first.stop()
            await asyncio.wait_for(spare_state.wait_for("connected", connects=connects + 1), timeout=60)
            assert (await spare.command(f"run {PLAN} --yes")).status == 200
            await bk.wait_for_request("execute_job")
        finally:
            await first.close()
            await spare.close()


def test_backoff_doubles_up_to_a_cap_with_jitter() -> None:
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (10, 30.0), (50, 30.0)]:
        for _ in range(20):
            assert ceiling / 2 <= backoff(failures) <= ceiling


async def test_an_app_token_that_slack_refuses_keeps_trying_and_serves_callbacks(
    slack: FakeSlack, bk: FakeBkJob, db_path: Path
) -> None:
    bot = Bot(slack=slack, bk=bk, db_path=db_path, mode="socket", SLACK_APP_TOKEN="xapp-1-revoked")
    try:
        await start_refused(bot, slack.wait_for_call("apps.connections.open", count=2))  # refused, tried again
        body = await healthz(bot)
        assert body["ok"] is True and body["socket"]["state"] == "connecting"
        assert {c.token for c in slack.calls("apps.connections.open")} == {"xapp-1-revoked"}
    finally:
        await bot.close()


async def test_sigterm_closes_the_socket_and_exits_within_the_budget(
    slack: FakeSlack, bk: FakeBkJob, tmp_path: Path
) -> None:
    """`python -m bot` in Socket Mode: SIGTERM closes the connection and the process exits well within 30 s."""
    port = _free_port()
    async with FakeSocketMode(slack=slack, app_token=APP_TOKEN) as fake:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "SLACK_API_URL": slack.base_url,
            "BK_API_URL": bk.base_url,
            "BK_APP_CODE": APP_CODE,
            "BK_APP_SECRET": APP_SECRET,
            "CALLBACK_URL": f"http://127.0.0.1:{port}",
            "BKJOB_OPEN_MODE": "on",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
            "LOG_FORMAT": "text",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE
        )
        try:
            (conn,) = await fake.wait_connections(1, timeout=30)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await conn.closed.wait()
                stderr = await process.stderr.read() if process.stderr else b""
                assert await process.wait() == 0
            elapsed = time.monotonic() - started
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert elapsed < 30
    assert b"Traceback" not in stderr and APP_TOKEN.encode() not in stderr
