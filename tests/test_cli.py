"""`python -m bot --help` and a mistyped sub-command, as a person at a shell meets them: a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot ARGS` in an empty directory, with no settings at all in its environment."""
    clean = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_usage_and_exits_0_without_starting(tmp_path: Path, flag: str) -> None:
    done = run(tmp_path, flag)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert out.startswith("usage: python -m bot")
    # The sub-commands, the demo's options (from its own parser) and where the README is.
    assert "python -m bot demo [options]" in out and "(none)" in out
    for option in ("--host", "--port", "--step-seconds", "--database", "--log-level"):
        assert option in out
    assert str(ROOT / "README.md") in out
    # Every setting Settings reads, one line each, with what is required and the defaults.
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    for name in Settings.model_fields:
        assert name.upper() in lines, name
    for name in ("SLACK_BOT_TOKEN", "BK_API_URL", "BK_APP_CODE", "BK_APP_SECRET"):
        assert lines[name].endswith("required")
    assert lines["PORT"].endswith("default 3000")
    assert lines["BK_API_VERSION"].endswith("v2 | v3; default v2")
    assert lines["BKJOB_OPEN_MODE"].endswith("default false")
    assert lines["SLACK_APP_TOKEN"].endswith("unset by default")
    # It did not try to start: no complaint about the missing settings, nothing written where it ran.
    assert "required setting is not set" not in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["serve"], ["--port", "3000"], ["Demo"]])
def test_an_unknown_sub_command_prints_the_usage_to_stderr_and_exits_2(tmp_path: Path, args: list[str]) -> None:
    done = run(tmp_path, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("usage: python -m bot")
    assert f"bkjob-bot: unknown command {args[0]!r}" in done.stderr
    assert "Traceback" not in done.stderr and "required setting is not set" not in done.stderr


def test_demo_help_is_still_the_demos_own(tmp_path: Path) -> None:
    done = run(tmp_path, "demo", "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m bot demo")
