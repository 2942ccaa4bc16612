"""Structured logs: JSON lines in production, request IDs on every line, secrets and callback tokens scrubbed."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.logs import REQUEST_ID, JsonFormatter, SecretFilter, redact_path
from tests.conftest import PLAN, Bot

TOKEN = "kT9yJ3c2x1_abcDEFghiJKLmnoPQRstuVWxyz0123456"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The production handler set-up (JSON formatter, secret filter) on the root logger, into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(SecretFilter(["xoxb-test", "s3cret"]))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def lines(buffer: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_the_request_id_and_scrub_secrets(captured: io.StringIO) -> None:
    token = REQUEST_ID.set("abc123")
    try:
        logging.getLogger("bot.test").info(
            "token %s secret %s path %s", "xoxb-test", "s3cret", f"/bkjob/callback/{TOKEN}"
        )
    finally:
        REQUEST_ID.reset(token)
    (entry,) = lines(captured)
    assert entry["request_id"] == "abc123" and entry["level"] == "INFO" and entry["logger"] == "bot.test"
    assert "xoxb-test" not in entry["message"] and "s3cret" not in entry["message"] and TOKEN not in entry["message"]
    assert entry["message"] == "token [redacted] secret [redacted] path /bkjob/callback/***"


def test_redact_path_hides_only_the_token() -> None:
    assert redact_path(f"POST /bkjob/callback/{TOKEN} 200") == "POST /bkjob/callback/*** 200"
    assert redact_path("/healthz") == "/healthz"


async def test_every_line_of_a_request_and_its_background_work_has_its_id(bot: Bot, captured: io.StringIO) -> None:
    await bot.command(f"run {PLAN} --yes")
    await bot.bk.wait_for_request("execute_job")
    await bot.idle()
    launched = [e for e in lines(captured) if e["message"].startswith("audit ") and "launched" in e["message"]]
    assert launched and launched[0]["request_id"] not in ("-", "")
    instance_id = next(iter(bot.bk.instances))
    await bot.bk.finish(instance_id, status=3)
    await bot.idle()
    callback_lines = [e for e in lines(captured) if f"callback for instance {instance_id}" in e["message"]]
    (line,) = callback_lines
    result = [e for e in lines(captured) if '"action": "result"' in e["message"]]
    assert result and result[0]["request_id"] == line["request_id"]  # the callback's work logs under its ID
    assert all("xoxb-test" not in e["message"] and "s3cret" not in e["message"] for e in lines(captured))


async def test_request_id_is_echoed_or_made(bot: Bot) -> None:
    assert bot.http is not None
    async with bot.http.get(f"{bot.url}/healthz", headers={"X-Request-Id": "lb-42"}) as resp:
        assert resp.headers["X-Request-Id"] == "lb-42"
    async with bot.http.get(f"{bot.url}/healthz", headers={"X-Request-Id": "bad id!"}) as resp:
        assert resp.headers["X-Request-Id"] != "bad id!" and len(resp.headers["X-Request-Id"]) == 16


def test_python_m_bot_logs_json_without_secrets(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SLACK_BOT_TOKEN": "xoxb-live-token-123",
        "SLACK_SIGNING_SECRET": "signing-secret-456",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
        "BK_API_URL": "http://127.0.0.1:9",
        "BK_APP_CODE": "bkjob-bot",
        "BK_APP_SECRET": "app-secret-789",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
        "BKJOB_OPEN_MODE": "on",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)  # waiting for another process to bind its port; no event to wait on
        request = urllib.request.Request(f"http://127.0.0.1:{port}/bkjob/callback/{TOKEN}", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    text = err.decode()
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert entries and all({"ts", "level", "logger", "request_id", "message"} <= set(e) for e in entries)
    assert any("/healthz 200" in e["message"] for e in entries)
    for secret in ("xoxb-live-token-123", "signing-secret-456", "app-secret-789", TOKEN):
        assert secret not in text
