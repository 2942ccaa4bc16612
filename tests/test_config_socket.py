"""Settings for Socket Mode and the callback URL: what each way of running needs, and nothing more."""

from __future__ import annotations

import pytest

from bot.config import load_settings
from bot.errors import ConfigError

BASE = {
    "SLACK_BOT_TOKEN": "xoxb-real-looking-token",
    "BK_API_URL": "https://bk.example.com",
    "BK_APP_CODE": "bkjob-bot",
    "BK_APP_SECRET": "app-secret-value",
}
SOCKET = {**BASE, "SLACK_APP_TOKEN": "xapp-1-A0-1-abc", "CALLBACK_URL": "http://10.0.0.5:3000/"}


def problems(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_settings(environ)
    return str(err.value).splitlines()


def test_socket_mode_needs_no_signing_secret_and_no_public_url() -> None:
    settings = load_settings(SOCKET)
    assert settings.socket_mode()
    assert settings.callback_root() == "http://10.0.0.5:3000"
    assert settings.slack_signing_secret is None and settings.public_url is None


def test_http_mode_still_needs_the_signing_secret() -> None:
    assert problems({**BASE, "PUBLIC_URL": "https://bot.example.com"}) == [
        "SLACK_SIGNING_SECRET: required setting is not set"
    ]


def test_callback_url_wins_over_public_url_which_still_works_alone() -> None:
    both = load_settings({**SOCKET, "PUBLIC_URL": "https://bot.example.com"})
    assert both.callback_root() == "http://10.0.0.5:3000"
    old = load_settings({**BASE, "SLACK_SIGNING_SECRET": "s" * 32, "PUBLIC_URL": "https://bot.example.com/"})
    assert old.callback_root() == old.public_root() == "https://bot.example.com" and not old.socket_mode()


def test_no_callback_address_is_fine_only_when_callbacks_are_off() -> None:
    bare = {k: v for k, v in SOCKET.items() if k != "CALLBACK_URL"}
    assert problems(bare) == ["PUBLIC_URL: required setting is not set"]
    assert load_settings({**bare, "BK_CALLBACK": "off"}).callback_root() == ""


def test_a_bot_token_is_not_an_app_token() -> None:
    (line,) = problems({**SOCKET, "SLACK_APP_TOKEN": "xoxb-oops"})
    assert line.startswith("SLACK_APP_TOKEN: ") and "xapp-" in line and "oops" not in line


def test_form_metadata_key_without_a_signing_secret_is_stable_and_not_the_token() -> None:
    one, two = load_settings(SOCKET), load_settings(SOCKET)
    assert one.metadata_secret() == two.metadata_secret() != SOCKET["SLACK_APP_TOKEN"]
    assert SOCKET["SLACK_APP_TOKEN"] in one.secrets()
