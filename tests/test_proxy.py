"""Corporate proxies: Slack's Web API and the Socket Mode WebSocket through HTTPS_PROXY / HTTP_PROXY (with a user
and password), BK-JOB wherever NO_PROXY says, checked with a counting proxy on loopback."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trustme

from bot.app import SOCKET
from bot.config import load_settings
from bot.errors import ConfigError
from bot.fakes.socket_mode import FakeSocketMode
from bot.proxy import Proxies, shown
from tests.conftest import APP_TOKEN, PLAN, Bot, start_refused
from tests.fakes import FakeBkJob, FakeSlack
from tests.proxy import LoopbackProxy

PASSWORD = "pr0xy-pa55word"


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


async def launch_and_finish(bot: Bot) -> None:
    assert (await bot.command(f"run {PLAN} --yes version=2.0")).status == 200
    await bot.bk.wait_for_request("execute_job")
    await bot.idle()
    (instance_id,) = bot.bk.instances
    await bot.bk.finish(instance_id, status=3)
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") is not None)
    await bot.idle()


async def test_socket_mode_and_slack_calls_go_through_the_proxy_and_bkjob_does_not(
    slack: FakeSlack, bk: FakeBkJob, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with LoopbackProxy(user="corp", password=PASSWORD) as proxy:
        bk_host = f"127.0.0.1:{port_of(bk.base_url)}"
        bot = Bot(
            slack=slack,
            bk=bk,
            db_path=db_path,
            mode="socket",
            HTTPS_PROXY=proxy.url,
            HTTP_PROXY=proxy.url,
            NO_PROXY=f"localhost, {bk_host}",
        )
        await bot.start()
        try:
            await launch_and_finish(bot)
            assert bot.socket is not None
            assert proxy.carried(port_of(slack.base_url)) >= 1  # apps.connections.open, chat.*, views.*
            assert proxy.carried(port_of(bot.socket.origin)) == 1  # the WebSocket
            assert proxy.carried(port_of(bk.base_url)) == 0
            assert proxy.refused == 0
            assert len(bk.requests("execute_job")) == 1
        finally:
            await bot.close()
    assert PASSWORD not in caplog.text
    assert "outgoing: Slack proxy http://user:***@127.0.0.1" in caplog.text and "BK-JOB direct" in caplog.text


async def test_wss_goes_through_a_connect_tunnel_trusting_the_sites_ca(
    slack: FakeSlack, bk: FakeBkJob, tmp_path: Path
) -> None:
    """Slack's WebSocket is wss://: through the proxy that is a CONNECT tunnel, authenticated, and TLS inside it is
    checked against the system's CAs plus TLS_CA_FILE (how a site trusts its TLS-inspecting proxy)."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca_file = tmp_path / "corp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with (
        LoopbackProxy(user="corp", password=PASSWORD) as proxy,
        FakeSocketMode(slack=slack, app_token=APP_TOKEN, tls=server) as socket,
    ):
        bot = Bot(
            slack=slack,
            bk=bk,
            db_path=tmp_path / "bot.sqlite3",
            socket=socket,
            HTTPS_PROXY=proxy.url,
            HTTP_PROXY=proxy.url,
            NO_PROXY=f"127.0.0.1:{port_of(bk.base_url)}",
            TLS_CA_FILE=str(ca_file),
        )
        await bot.start()
        try:
            assert socket.origin.startswith("wss://")
            assert proxy.methods["CONNECT"] == 1 and proxy.carried(port_of(socket.origin)) == 1
            await launch_and_finish(bot)
        finally:
            await bot.close()


async def test_an_untrusted_certificate_is_refused(slack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server)
    async with FakeSocketMode(slack=slack, app_token=APP_TOKEN, tls=server) as socket:
        bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "bot.sqlite3", socket=socket)
        try:
            # Refused, then tried again: the first handshake failed.
            await start_refused(bot, slack.wait_for_call("apps.connections.open", count=2))
            assert socket.connections() == [] and socket.opened >= 2
        finally:
            await bot.close()


async def test_bkjob_through_the_proxy_where_no_proxy_names_slack(
    slack: FakeSlack, bk: FakeBkJob, db_path: Path
) -> None:
    async with LoopbackProxy() as proxy:
        bot = Bot(
            slack=slack,
            bk=bk,
            db_path=db_path,
            HTTP_PROXY=proxy.url,
            NO_PROXY=f"127.0.0.1:{port_of(slack.base_url)}",
        )
        await bot.start()
        try:
            await launch_and_finish(bot)
            assert proxy.carried(port_of(bk.base_url)) >= 1
            assert proxy.carried(port_of(slack.base_url)) == 0
        finally:
            await bot.close()


async def test_a_wrong_proxy_password_keeps_the_socket_trying_and_says_so(
    slack: FakeSlack, bk: FakeBkJob, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with LoopbackProxy(user="corp", password=PASSWORD) as proxy:
        wrong = proxy.url.replace(PASSWORD, "not-the-password")
        bot = Bot(slack=slack, bk=bk, db_path=db_path, mode="socket", HTTPS_PROXY=wrong, HTTP_PROXY=wrong)
        try:
            await start_refused(bot, proxy.wait_refused(2))  # refused, and tried again
            assert bot.runner is not None and bot.runner.app[SOCKET].state == "connecting"
            assert proxy.refused >= 2 and not proxy.tunnels
            assert slack.calls("apps.connections.open") == []
        finally:
            await bot.close()
    assert "not-the-password" not in caplog.text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://slack.com/api/chat.postMessage", "http://secure:3128"),
        ("wss://wss-primary.slack.com/link/?ticket=1", "http://secure:3128"),
        ("http://paas.corp.example/api/c/compapi/v2/job/execute_job/", None),  # NO_PROXY domain
        ("http://bk.corp.example:8080/", None),  # a subdomain of it
        ("http://notcorp.example/", "http://plain:3128"),
        ("http://10.0.0.5:3000/", None),  # host:port
        ("http://10.0.0.5:4000/", "http://plain:3128"),  # another port of that host
    ],
)
def test_routes_follow_the_scheme_and_no_proxy(url: str, expected: str | None) -> None:
    proxies = Proxies(https="http://secure:3128", http="http://plain:3128", no_proxy=" .corp.example,10.0.0.5:3000")
    assert proxies.for_url(url) == expected


def test_https_falls_back_to_http_proxy_and_star_bypasses_all() -> None:
    assert Proxies(http="http://plain:3128").for_url("https://slack.com/api/") == "http://plain:3128"
    assert Proxies(https="http://s:1", http="http://p:2", no_proxy="*").for_url("https://slack.com/api/") is None
    assert Proxies().for_url("https://slack.com/api/") is None
    assert shown("http://u:secret@proxy:3128") == "proxy http://user:***@proxy:3128" and shown(None) == "direct"


BASE = {
    "SLACK_BOT_TOKEN": "xoxb-real-looking-token",
    "SLACK_SIGNING_SECRET": "signing-secret-value",
    "BK_API_URL": "https://bk.example.com",
    "BK_APP_CODE": "bkjob-bot",
    "BK_APP_SECRET": "app-secret-value",
    "PUBLIC_URL": "https://bot.example.com/",
}


def test_a_ca_file_that_does_not_load_stops_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("hello")
    with pytest.raises(ConfigError) as err:
        load_settings({**BASE, "TLS_CA_FILE": str(bad)})
    assert str(err.value).startswith("TLS_CA_FILE: ") and "not-a-ca.pem" in str(err.value)


def test_proxy_settings_are_checked_and_their_password_is_a_secret() -> None:
    settings = load_settings({**BASE, "https_proxy": f"http://corp:{PASSWORD}@proxy:3128", "NO_PROXY": ".corp"})
    assert PASSWORD in settings.secrets()
    assert settings.proxies().for_url("https://slack.com/api/") == f"http://corp:{PASSWORD}@proxy:3128"
    with pytest.raises(ConfigError) as err:
        load_settings({**BASE, "HTTP_PROXY": f"socks5://corp:{PASSWORD}@proxy:1080"})
    assert str(err.value).startswith("HTTP_PROXY: ") and PASSWORD not in str(err.value)
