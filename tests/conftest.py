"""Fixtures: the real bot on a loopback port, pointed at fake Slack and fake BK-JOB servers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from bot.app import BACKGROUND, METRICS_PORT, OUTBOX, SOCKET, create_app
from bot.config import Settings, load_settings
from bot.fakes.slack_rules import view_problems
from bot.fakes.socket_mode import FakeSocketMode
from bot.store import SqliteStore, Store
from tests.fakes import FakeBkJob, FakeSlack
from tests.stores import PgSchema, postgres_url_or_skip

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test"
APP_TOKEN = "xapp-1-A0BKJOB-1-test"
APP_CODE = "bkjob-bot"
APP_SECRET = "s3cret"
CHANNEL = "C0OPS"
USER = "U0ALICE"
BIZ = 3
PLAN = 100

# get_job_detail's v2 shape: string, host list, password, namespace, index array.
PLAN_VARS: list[dict[str, Any]] = [
    {"id": 436, "name": "servers", "category": 3, "ip_list": [{"bk_host_id": 1, "bk_cloud_id": 0, "ip": "10.0.0.1"}]},
    {"id": 437, "name": "version", "category": 1, "value": "1.0", "description": "release to deploy"},
    {"id": 438, "name": "db_password", "category": 4, "value": "hunter2-plan-secret"},
    {"id": 439, "name": "env", "category": 2, "value": "prod"},
    {"id": 440, "name": "ports", "category": 6, "value": "80 443"},
]


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come only from what a test passes; nothing leaks in from the shell."""
    for name in list(os.environ):
        if name.startswith(("SLACK_", "BK_", "BKJOB_")) or name in ("DATABASE_URL", "PUBLIC_URL", "HOST", "PORT"):
            monkeypatch.delenv(name, raising=False)
        elif name.lower() in ("https_proxy", "http_proxy", "no_proxy", "all_proxy", "callback_url", "metrics_token"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(token=BOT_TOKEN) as fake:
        yield fake


# Modules whose tests run against both BK-JOB wire formats (ESB v2 and the v3 API gateway): the ones that
# exercise the client end to end. Everything else runs against v2 only, to keep the suite fast.
BOTH_API_VERSIONS = (
    "test_bk",
    "test_flow_launch",
    "test_flow_callback",
    "test_flow_results",
    "test_plan_list",
    "test_flow_logs",
    "test_flow_masking",
    "test_flow_operations",
    "test_flow_confirm",
    "test_flow_runstates",
)
# Tests that assert v2's exact wire body; their v3 counterparts are in tests/test_bk_v3.py.
V2_WIRE_ONLY = {
    "test_modal_path_launches_and_posts_result_in_thread": "test_bk_v3.py::test_modal_path_sends_the_v3_body",
    "test_secrets_reach_neither_slack_nor_the_database": "test_bk_v3.py::test_secrets_stay_out_through_v3",
}
# Tests in those modules that never reach BK-JOB: a second run would test nothing new.
NO_BK_CALLS = {
    "test_rate_limited_bursts_deliver_every_message_once_and_in_order",
    "test_permanent_slack_refusal_is_set_aside_not_retried_forever",
}


# The main flows run over both of Slack's transports: HTTP requests to /slack/events, and Socket Mode envelopes
# from bot.fakes.socket_mode (`[http]`, `[socket]` in the test ID). Socket Mode runs against v2 only.
BOTH_SLACK_MODES = ("test_flow_launch", "test_flow_modal", "test_flow_approvals", "test_flow_callback")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the client-exercising modules once per API version (`[v2]`, `[v3]` in the test ID), and the main flows
    once per Slack transport."""
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    versions: list[Any] = ["v2"]
    if "bk_api_version" in metafunc.fixturenames and module in BOTH_API_VERSIONS:
        if metafunc.function.__name__ not in NO_BK_CALLS:
            counterpart = V2_WIRE_ONLY.get(metafunc.function.__name__)
            reason = f"v2 wire body; v3: {counterpart}"
            versions.append(pytest.param("v3", marks=pytest.mark.skip(reason=reason)) if counterpart else "v3")
    modes = ["http"]
    if "slack_mode" in metafunc.fixturenames and module in BOTH_SLACK_MODES:
        modes.append("socket")
    if len(modes) == 1:
        if len(versions) > 1:
            metafunc.parametrize("bk_api_version", versions)
        return
    if len(versions) == 1:
        metafunc.parametrize("slack_mode", modes)
        return
    pairs = [
        pytest.param(*v.values, "http", marks=v.marks, id=f"{v.values[0]}-http")
        if isinstance(v, type(pytest.param(0)))
        else pytest.param(v, "http", id=f"{v}-http")
        for v in versions
    ]
    metafunc.parametrize("bk_api_version,slack_mode", [*pairs, pytest.param("v2", "socket", id="v2-socket")])


@pytest.fixture
def slack_mode() -> str:
    """How Slack reaches the bot: `http` (signed requests) or `socket` (Socket Mode); see BOTH_SLACK_MODES."""
    return "http"


@pytest.fixture
def bk_api_version() -> str:
    """The wire format the fake BK-JOB speaks and the bot is configured for; see BOTH_API_VERSIONS."""
    return "v2"


@pytest.fixture
async def bk(bk_api_version: str) -> AsyncIterator[FakeBkJob]:
    version: Literal["v2", "v3"] = "v3" if bk_api_version == "v3" else "v2"
    # A v2 site that runs this bot has put it on the ESB's skip-user-auth list (the only way ESB v2 believes a
    # bare bk_username); v3 uses the gateway's app-state API, which needs no such list.
    async with FakeBkJob(
        app_code=APP_CODE, app_secret=APP_SECRET, api_version=version, skip_user_auth=version == "v2"
    ) as fake:
        fake.add_plan(BIZ, PLAN, "Deploy web", PLAN_VARS)
        yield fake


class Acked:
    """What a Socket Mode delivery came to, shaped like the HTTP answer the tests read (`status`)."""

    def __init__(self, status: int, payload: dict[str, Any] | None) -> None:
        self.status = status
        self.payload = payload


class Bot:
    """The real app served on 127.0.0.1, restartable on the same port so callback URLs stay valid.

    With `mode="socket"` Slack's side is Socket Mode: the bot dials a `FakeSocketMode` beside the fake Slack, and
    `command`, `submit` and `click` arrive as envelopes instead of signed HTTP requests.
    """

    def __init__(
        self,
        *,
        slack: FakeSlack,
        bk: FakeBkJob,
        db_path: Path,
        mode: str = "http",
        socket: FakeSocketMode | None = None,
        **overrides: str,
    ) -> None:
        """`socket`: a Socket Mode fake shared with other replicas (started and closed by its owner)."""
        self.slack = slack
        self.bk = bk
        self.db_path = db_path
        self.mode = "socket" if socket is not None else mode
        self.socket = socket
        self._owns_socket = socket is None
        self.overrides = overrides
        self.port = _free_port()
        self.runner: web.AppRunner | None = None
        self.http: aiohttp.ClientSession | None = None
        self.signer = SignatureVerifier(SIGNING_SECRET)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """/metrics on the internal listener (METRICS_PORT), where it is served with or without a token."""
        assert self.runner is not None
        return f"http://127.0.0.1:{self.runner.app[METRICS_PORT]}/metrics"

    def settings(self) -> Settings:
        env = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": self.slack.base_url,
            "BK_API_URL": self.bk.base_url,
            "BK_API_VERSION": self.bk.api_version,
            "BK_APP_CODE": APP_CODE,
            "BK_APP_SECRET": APP_SECRET,
            "BK_USERNAME": "ops-bot",
            "BK_BIZ_ID": str(BIZ),
            "BK_JOB_WEB_URL": "https://job.example.com",
            "BK_TIMEOUT": "2",
            "SLACK_CHANNEL_INTERVAL": "0",
            "POLL_TICK": "0.05",
            "PUBLIC_URL": self.url,
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            # Tests without a policy file run ungoverned; governance tests name a BKJOB_CONFIG.
            "BKJOB_OPEN_MODE": "on",
            # /metrics' internal listener on a free port (METRICS_PORT's default would be shared by every bot).
            "METRICS_PORT": "0",
        }
        if self.mode == "socket":
            # What an on-premises site sets: the app token, and the address BK-JOB reaches; no signing secret.
            del env["SLACK_SIGNING_SECRET"], env["PUBLIC_URL"]
            env |= {"SLACK_APP_TOKEN": APP_TOKEN, "CALLBACK_URL": self.url}
        env.update(self.overrides)
        return load_settings(env)

    async def start(self) -> None:
        if self.mode == "socket" and self.socket is None:
            self.socket = FakeSocketMode(slack=self.slack, app_token=APP_TOKEN)
            await self.socket.start()
        sock = self._bind()
        self.runner = web.AppRunner(create_app(self.settings()), shutdown_timeout=2.0)
        await self.runner.setup()
        await web.SockSite(self.runner, sock).start()
        self._bound_once = True
        if self.http is None:
            self.http = aiohttp.ClientSession()
        if SOCKET in self.runner.app:
            async with asyncio.timeout(60):
                await self.runner.app[SOCKET].wait_for("connected")

    def _bind(self) -> socket.socket:
        """The port was free when picked, but another process on the machine may take it first: pick another, as
        long as no callback URL has been handed out on this one (a restart must keep its port)."""
        for attempt in range(5):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", self.port))
                return sock
            except OSError:
                sock.close()
                if getattr(self, "_bound_once", False) or attempt == 4:
                    raise
                self.port = _free_port()
        raise AssertionError("unreachable")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def close(self) -> None:
        await self.stop()
        if self.http is not None:
            await self.http.close()
            self.http = None
        if self.socket is not None and self._owns_socket:
            await self.socket.close()
            self.socket = None

    async def idle(self) -> None:
        """Wait until the work started after the last ack is done and every due Slack message is out (no sleeps)."""
        assert self.runner is not None
        app = self.runner.app
        for _ in range(3):  # delivering a message can start more work, and that work can queue more messages
            await app[BACKGROUND].idle()
            # An overall bound, not a duration under test: a loaded machine may take a while to send a burst.
            await asyncio.wait_for(app[OUTBOX].flush(), timeout=60)
        await app[BACKGROUND].idle()

    # -- requests as Slack sends them ------------------------------------------------------------------

    async def post_signed(
        self, body: str, *, timestamp: int | None = None, headers: Mapping[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        all_headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": self.signer.generate_signature(timestamp=ts, body=body),
            **(headers or {}),
        }
        assert self.http is not None
        async with self.http.post(f"{self.url}/slack/events", data=body.encode(), headers=all_headers) as resp:
            await resp.read()
            return resp

    def command_body(
        self, text: str, *, user: str = USER, channel: str = CHANNEL, trigger_id: str | None = None
    ) -> str:
        return urlencode(self.command_payload(text, user=user, channel=channel, trigger_id=trigger_id))

    def command_payload(
        self, text: str, *, user: str = USER, channel: str = CHANNEL, trigger_id: str | None = None
    ) -> dict[str, str]:
        """A slash command's fields: form-encoded over HTTP, a JSON object in a Socket Mode envelope."""
        return {
            "token": "legacy-verification-token",
            "team_id": "T0TEAM",
            "team_domain": "example",
            "channel_id": channel,
            "channel_name": "ops",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/bkjob",
            "text": text,
            "api_app_id": "A0BKJOB",
            "response_url": self.slack.response_url(),
            "trigger_id": trigger_id or self.slack.new_trigger_id(),
        }

    async def command(self, text: str, **kwargs: Any) -> aiohttp.ClientResponse | Acked:
        if self.socket is not None:
            envelope = await self.socket.slash_command(self.command_payload(text, **kwargs))
            return Acked(200, envelope.response_payload)
        return await self.post_signed(self.command_body(text, **kwargs))

    async def answered(self, text: str, **kwargs: Any) -> str:
        """The ephemeral answer a person gets to a command: in the ack's body (HTTP) or response payload (Socket
        Mode) where the bot answers at once (the usage, a command that does not parse), else its one post to the
        command's response_url."""
        resp = await self.command(text, **kwargs)
        assert resp.status == 200
        if isinstance(resp, Acked):
            body = resp.payload
        else:
            body = await resp.json() if resp.content_type == "application/json" else None
        if not body:
            (post,) = await self.slack.wait_for_response()
            body = post.body
        assert isinstance(body, dict) and body.get("response_type") == "ephemeral", body
        assert isinstance(body.get("text"), str)
        return str(body["text"])

    async def interact(self, payload: Mapping[str, Any]) -> aiohttp.ClientResponse | Acked:
        """An interactivity payload (a click, a form submission) over the bot's transport."""
        if self.socket is not None:
            envelope = await self.socket.interactive(payload)
            return Acked(200, envelope.response_payload)
        return await self.post_signed(urlencode({"payload": json.dumps(payload)}))

    async def submit(self, view: Mapping[str, Any], values: Mapping[str, str | None], *, user: str = USER) -> Any:
        """Submit the modal as Slack would, with `values` typed over the pre-filled inputs."""
        payload = {
            "type": "view_submission",
            "team": {"id": "T0TEAM", "domain": "example"},
            "user": {"id": user, "username": user.lower(), "team_id": "T0TEAM"},
            "api_app_id": "A0BKJOB",
            "token": "legacy-verification-token",
            "trigger_id": self.slack.new_trigger_id(),
            "view": {**view, "state": {"values": form_state(view, values)}},
        }
        if self.socket is not None:
            envelope = await self.socket.interactive(payload)
            return 200, _checked_ack(envelope.response_payload)
        body = urlencode({"payload": json.dumps(payload)})
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": self.signer.generate_signature(timestamp=ts, body=body),
        }
        assert self.http is not None
        async with self.http.post(f"{self.url}/slack/events", data=body.encode(), headers=headers) as resp:
            text = await resp.text()
            return resp.status, _checked_ack(json.loads(text) if text else None)

    async def click(
        self, action_id: str, value: str, *, user: str, channel: str = CHANNEL, message_ts: str = "1.0"
    ) -> aiohttp.ClientResponse:
        """A button click (block_actions) as Slack sends it, with a response_url for ephemeral answers."""
        payload = {
            "type": "block_actions",
            "team": {"id": "T0TEAM", "domain": "example"},
            "user": {"id": user, "username": user.lower(), "team_id": "T0TEAM"},
            "api_app_id": "A0BKJOB",
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
            "trigger_id": self.slack.new_trigger_id(),
            "channel": {"id": channel, "name": "ops"},
            "message": {"type": "message", "ts": message_ts, "text": ""},
            "response_url": self.slack.response_url(channel=channel, message_ts=message_ts),
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": f"approval:{value}",
                    "value": value,
                    "action_ts": str(time.time()),
                }
            ],
        }
        return await self.interact(payload)

    async def open_form(self, text: str = f"run {PLAN}") -> dict[str, Any]:
        """Run the slash command and return the modal as the bot last set it (after views.update)."""
        resp = await self.command(text)
        assert resp.status == 200
        calls = await self.slack.wait_for_call("views.update")
        view = self.slack.view(calls[-1].args["view_id"])
        assert view is not None
        return view


def _checked_ack(answer: Any) -> Any:
    """Slack checks a view given in a view_submission's ack as it checks views.update's (and shows the person an
    error instead): so does the harness."""
    if isinstance(answer, dict) and answer.get("response_action") in ("update", "push"):
        problems = view_problems(answer.get("view"))
        assert not problems, f"Slack would refuse the view in this ack: {problems}"
    return answer


def form_state(view: Mapping[str, Any], values: Mapping[str, str | None]) -> dict[str, Any]:
    """Slack's `view.state.values`: every input block with its initial value unless `values` overrides it."""
    state: dict[str, Any] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element = block["element"]
        action_id = element["action_id"]
        value = values.get(action_id, element.get("initial_value"))
        state[block["block_id"]] = {action_id: {"type": element["type"], "value": value}}
    return state


async def start_refused(bot: Bot, attempts: Awaitable[object]) -> None:
    """Start a Socket Mode `bot` that cannot connect: once `attempts` (the refused tries) happened, `start()` must
    still be waiting for the connection; it is then given up. Waits on those events, not on a window of time."""
    starting = asyncio.create_task(bot.start())
    try:
        await asyncio.wait_for(attempts, timeout=60)
        if starting.done():
            starting.result()
            raise AssertionError("the socket connected")
    finally:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / f"bot-{uuid.uuid4().hex[:8]}.sqlite3"


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Every backend: SQLite always, PostgreSQL (a schema of its own) when TEST_DATABASE_URL reaches one."""
    if request.param == "sqlite":
        sqlite_store = SqliteStore(path=str(tmp_path / "store.sqlite3"))
        await sqlite_store.open()
        try:
            yield sqlite_store
        finally:
            await sqlite_store.close()
        return
    async with PgSchema(await postgres_url_or_skip()) as schema:
        yield await schema.open_store()


@pytest.fixture
async def pg() -> AsyncIterator[PgSchema]:
    """PostgreSQL only: for the tests about several replicas on one database."""
    async with PgSchema(await postgres_url_or_skip()) as schema:
        yield schema


@pytest.fixture
async def bot(slack: FakeSlack, bk: FakeBkJob, db_path: Path, slack_mode: str) -> AsyncIterator[Bot]:
    instance = Bot(slack=slack, bk=bk, db_path=db_path, mode=slack_mode)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture
def anyio_backend() -> Iterator[str]:
    yield "asyncio"
