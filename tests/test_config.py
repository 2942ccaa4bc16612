"""Settings: read from the environment once, with one clear line per missing or invalid setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {
    "SLACK_BOT_TOKEN": "xoxb-real-looking-token",
    "SLACK_SIGNING_SECRET": "signing-secret-value",
    "BK_API_URL": "https://bk.example.com",
    "BK_APP_CODE": "bkjob-bot",
    "BK_APP_SECRET": "app-secret-value",
    "PUBLIC_URL": "https://bot.example.com/",
}


def problems(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_settings(environ)
    return str(err.value).splitlines()


def test_minimal_settings_and_defaults() -> None:
    settings = load_settings(REQUIRED)
    assert settings.slack_api_base() == "https://slack.com/api/"
    assert settings.bk_api_root() == "https://bk.example.com"
    assert settings.public_root() == "https://bot.example.com"
    assert settings.database_url == "sqlite:///bkjob-bot.sqlite3"
    assert (settings.host, settings.port) == ("0.0.0.0", 3000)
    assert settings.bk_username is None and settings.bk_biz_id is None and settings.job_web_root() is None


def test_every_setting_is_read() -> None:
    settings = load_settings(
        {
            **REQUIRED,
            "SLACK_API_URL": "http://127.0.0.1:9/api",
            "BK_USERNAME": "ops-bot",
            "BK_BIZ_ID": "3",
            "BK_JOB_WEB_URL": "https://job.example.com/",
            "DATABASE_URL": "sqlite:////tmp/x.sqlite3",
            "HOST": "127.0.0.1",
            "PORT": "8080",
        }
    )
    assert settings.slack_api_base() == "http://127.0.0.1:9/api/"  # slack_sdk joins method names onto it
    assert (settings.bk_username, settings.bk_biz_id) == ("ops-bot", 3)
    assert settings.job_web_root() == "https://job.example.com"
    assert (settings.host, settings.port, settings.database_url) == ("127.0.0.1", 8080, "sqlite:////tmp/x.sqlite3")


def test_secrets_are_hidden_in_repr() -> None:
    shown = repr(load_settings(REQUIRED))
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "BK_APP_SECRET"):
        assert REQUIRED[name] not in shown


def test_each_missing_setting_is_one_line() -> None:
    assert sorted(problems({})) == sorted(f"{name}: required setting is not set" for name in REQUIRED)


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_one_missing_setting_is_named(missing: str) -> None:
    environ = {k: v for k, v in REQUIRED.items() if k != missing}
    assert problems(environ) == [f"{missing}: required setting is not set"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BK_API_URL", "not a url"),
        ("PUBLIC_URL", "ftp://bot.example.com"),
        ("SLACK_API_URL", "slack"),
        ("BK_BIZ_ID", "0"),
        ("BK_BIZ_ID", "three"),
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("BK_TIMEOUT", "0"),
        ("DATABASE_URL", "mysql://db/bot"),
        ("BK_APP_CODE", "x" * 33),
    ],
)
def test_an_invalid_setting_is_one_line_naming_it(name: str, value: str) -> None:
    (line,) = problems({**REQUIRED, name: value})
    assert line.startswith(f"{name}: ")


def test_several_problems_give_one_line_each() -> None:
    environ = {k: v for k, v in REQUIRED.items() if k != "BK_APP_SECRET"} | {"PORT": "abc", "BK_API_URL": "nope"}
    lines = problems(environ)
    assert len(lines) == 3
    assert sorted(line.split(":", 1)[0] for line in lines) == ["BK_API_URL", "BK_APP_SECRET", "PORT"]


@pytest.mark.parametrize("name", ["BK_USERNAME", "BK_BIZ_ID", "BK_JOB_WEB_URL", "AUDIT_RETENTION_DAYS"])
def test_blank_optional_setting_means_unset(name: str) -> None:
    settings = load_settings({**REQUIRED, name: "  "})
    assert getattr(settings, name.lower()) is None


@pytest.mark.parametrize("name", ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "BK_APP_CODE", "BK_APP_SECRET"])
def test_blank_credential_is_refused(name: str) -> None:
    (line,) = problems({**REQUIRED, name: ""})
    assert line.startswith(f"{name}: ")


def test_environment_is_read_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PORT", "4000")
    assert load_settings().port == 4000


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in REQUIRED.items()) + "BK_BIZ_ID=\n")
    settings = load_settings()
    assert settings.bk_app_code == "bkjob-bot" and settings.bk_biz_id is None


# -- python -m bot ----------------------------------------------------------------------------------------------


def run_bot(tmp_path: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m bot` in an empty directory (no .env) with only `environ` and what Python needs."""
    clean = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), **environ}
    return subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=30
    )


def test_python_m_bot_with_a_missing_setting_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    environ = {k: v for k, v in REQUIRED.items() if k not in ("BK_APP_SECRET", "PUBLIC_URL")} | {"PORT": "abc"}
    done = run_bot(tmp_path, environ)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert sorted(lines) == sorted(
        [
            "bkjob-bot: BK_APP_SECRET: required setting is not set",
            "bkjob-bot: PUBLIC_URL: required setting is not set",
            next(line for line in lines if line.startswith("bkjob-bot: PORT: ")),
        ]
    )
    assert "Traceback" not in done.stderr and done.stdout == ""
    for secret in (REQUIRED["SLACK_BOT_TOKEN"], REQUIRED["SLACK_SIGNING_SECRET"]):
        assert secret not in done.stderr


def test_python_m_bot_with_nothing_set_names_every_required_setting(tmp_path: Path) -> None:
    done = run_bot(tmp_path, {})
    assert done.returncode == 2
    assert sorted(done.stderr.splitlines()) == sorted(
        f"bkjob-bot: {name}: required setting is not set" for name in REQUIRED
    )
