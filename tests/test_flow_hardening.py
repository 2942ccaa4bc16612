"""The smaller holes of issue 12 (item 10): each reproduced against the real app or `python -m bot`, and refused."""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.logs import configure
from bot.slack.blocks.approvals import APPROVE_ACTION
from bot.slack.blocks.launch import RUN_VIEW
from tests.conftest import APP_CODE, APP_SECRET, BIZ, PLAN, Bot
from tests.fakes import FakeBkJob, FakeSlack

ALICE, ERIN = "U0ALICE", "U0ERIN"


async def test_form_metadata_with_a_non_ascii_signature_is_refused_quietly(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    view = {"id": "V0FORGED", "hash": "1.x", "type": "modal", "callback_id": RUN_VIEW, "blocks": []}
    with caplog.at_level(logging.WARNING):
        status, answer = await bot.submit({**view, "private_metadata": "eyJwIjoicnVuIn0.\u00e9\u00e9"}, {})
    assert status == 200 and answer["response_action"] == "update"
    assert "not issued to you" in str(answer["view"])
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert bot.bk.requests() == []


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "s",
        "BK_API_URL": "http://127.0.0.1:9",
        "BK_APP_CODE": APP_CODE,
        "BK_APP_SECRET": APP_SECRET,
        "PUBLIC_URL": "http://127.0.0.1:9",
        "BKJOB_OPEN_MODE": "on",
        "HOST": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
        **extra,
    }


def test_a_port_already_taken_is_a_one_line_start_up_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "bot"],
            env=_env(tmp_path, PORT=str(port)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("bkjob-bot:")]
    assert "cannot start" in line


def test_an_unreachable_database_is_a_one_line_start_up_error(tmp_path: Path) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    url = f"postgresql://bot:pg-pass-123@127.0.0.1:{port}/bot"
    done = subprocess.run(
        [sys.executable, "-m", "bot"],
        env=_env(tmp_path, DATABASE_URL=url, PORT="0"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "pg-pass-123" not in done.stderr
    assert "bkjob-bot: cannot start" in done.stderr


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure() replaces the root logger's handlers: put pytest's back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    sql_level = logging.getLogger("aiosqlite").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiosqlite").setLevel(sql_level)


def test_the_scrubber_cleans_exception_text_too(restore_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for fmt in ("text", "json"):
        stream = io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        configure("INFO", fmt="text" if fmt == "text" else "json", secrets=["xoxb-live-secret-123"])
        try:
            raise RuntimeError("Slack said no to token xoxb-live-secret-123")
        except RuntimeError:
            logging.getLogger("bot.test").exception("a failure")
        out = stream.getvalue()
        assert "RuntimeError" in out and "xoxb-live-secret-123" not in out and "[redacted]" in out


def test_debug_logs_sql_statements_only_when_asked(restore_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    configure("DEBUG", fmt="text")
    assert not logging.getLogger("aiosqlite").isEnabledFor(logging.DEBUG)
    configure("DEBUG", fmt="text", log_sql=True)
    assert logging.getLogger("aiosqlite").isEnabledFor(logging.DEBUG)


# -- removing someone from an approver group takes effect within the directory cache's TTL --------------------------

GROUP_POLICY = f"""
[users]
{ALICE} = "alice"
{ERIN} = "erin"

[channels.C0OPS]
bk_biz_id = {BIZ}
allowed_biz = [{BIZ}]
approval = true
approvers = ["S0ONCALL"]

[defaults]
allowed_biz = []
"""


@pytest.fixture
async def group_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(token="xoxb-test", usergroups={"S0ONCALL": [ERIN]}) as fake:
        yield fake


async def test_someone_removed_from_the_approver_group_can_no_longer_approve(
    group_slack: FakeSlack, bk: FakeBkJob, tmp_path: Path
) -> None:
    policy = tmp_path / "bkjob.toml"
    policy.write_text(GROUP_POLICY)
    bot = Bot(
        slack=group_slack, bk=bk, db_path=tmp_path / "g.sqlite3", BKJOB_CONFIG=str(policy), DIRECTORY_CACHE_TTL="0"
    )
    await bot.start()
    try:
        await bot.command(f"run {PLAN} --yes", user=ALICE)
        await bot.slack.wait_for_call("chat.postMessage")
        await bot.idle()
        message = bot.slack.messages("C0OPS")[-1]
        value = next(b for b in message["blocks"] if b.get("type") == "actions")["elements"][0]["value"]
        group_slack.usergroups["S0ONCALL"] = []  # Erin leaves on-call
        await bot.click(APPROVE_ACTION, value, user=ERIN, message_ts=message["ts"])
        (answer,) = await bot.slack.wait_for_response(lambda r: "may decide" in str(r.body.get("text")))
        assert answer.body.get("response_type") == "ephemeral"
        await bot.idle()
        assert bot.bk.requests("execute_job") == []
    finally:
        await bot.close()
