"""The simulator: the real bot, fake Slack and BK-JOB, and the page that plays a Slack channel, in one process."""

from __future__ import annotations

import secrets
import socket
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.app import create_app
from bot.config import load_settings
from bot.demo.catalogue import BIZ, CHANNELS, PLANS, USERS, add_plans, demo_policy, slack_usergroups, slack_users
from bot.demo.runner import JobRunner
from bot.demo.sender import APP_ID, TEAM, SlackSender, slack_user
from bot.demo.workspace import Workspace
from bot.fakes import FakeBkJob, FakeSlack

__all__ = ["DemoOptions", "Simulator"]

JsonDict = dict[str, Any]

BOT_TOKEN = "xoxb-demo"
APP_CODE = "bkjob-demo"
COMMAND = "/bkjob"
_MAX_WAIT = 30.0
_Form = TypeVar("_Form", bound=BaseModel)


@dataclass(frozen=True)
class DemoOptions:
    """`step_seconds` is how long each simulated job step runs; tests make it short."""

    host: str = "127.0.0.1"
    port: int = 3000
    step_seconds: float = 2.0
    database: Path | None = None  # None: a fresh file in a temporary directory, removed at exit
    log_level: str = "INFO"


class _CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str
    channel: str
    text: str = Field(max_length=4000)


class _ActionIn(BaseModel):
    """A button click on a message; `ephemeral` for one only its reader sees (no stored message, no `ts`)."""

    model_config = ConfigDict(extra="forbid")
    user: str
    channel: str
    ts: str = ""
    action_id: str
    block_id: str = ""
    value: str = ""
    ephemeral: bool = False


class _MenuIn(BaseModel):
    """Typing in (`/api/options`) or choosing from (`/api/pick`) an external_select in the open modal."""

    model_config = ConfigDict(extra="forbid")
    user: str
    view_id: str
    action_id: str
    block_id: str = ""
    value: str = Field(default="", max_length=150)
    text: str = Field(default="", max_length=75)


class _SubmitIn(BaseModel):
    """`values` by block_id then action_id, as the page read them from its inputs."""

    model_config = ConfigDict(extra="forbid")
    user: str
    view_id: str
    values: dict[str, dict[str, str | None]] = {}


class _CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str
    view_id: str


class Simulator:
    """Starts the fakes first (the bot's settings need their URLs), then the bot, then the page."""

    def __init__(self, options: DemoOptions | None = None) -> None:
        self.options = options or DemoOptions()
        self.slack = FakeSlack(token=BOT_TOKEN, users=slack_users(), usergroups=slack_usergroups())
        self.bk = FakeBkJob(app_code=APP_CODE, app_secret=secrets.token_hex(16), skip_user_auth=True)
        self._signing_secret = secrets.token_hex(16)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._runners: list[web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None
        self._workspace: Workspace | None = None
        self._jobs: JobRunner | None = None
        self._sender: SlackSender | None = None
        self._port: int | None = None
        self.bot_url = ""

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "") else self.options.host
        return f"http://{host}:{self._port}"

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            raise RuntimeError("the simulator is not started")
        return self._workspace

    async def start(self) -> None:
        await self.slack.start()
        await self.bk.start()
        add_plans(self.bk)
        workspace = self._workspace = Workspace(slack=self.slack, bk=self.bk)
        self._jobs = JobRunner(
            bk=self.bk,
            step_seconds=self.options.step_seconds,
            fails_at={p.bk_job_id: p.fails_at for p in PLANS},
            outcomes={p.bk_job_id: p.outcomes for p in PLANS},
            report=lambda title, detail: workspace.note("BK-JOB → bot", title, detail),
        )
        await self._start_bot()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._sender = SlackSender(
            session=self._session, events_url=f"{self.bot_url}/slack/events", signing_secret=self._signing_secret
        )
        page = web.Application()
        page[_SIMULATOR] = self
        page.router.add_get("/", _page)
        page.router.add_get("/api/state", _state)
        page.router.add_post("/api/command", _command)
        page.router.add_post("/api/action", _action)
        page.router.add_post("/api/options", _options)
        page.router.add_post("/api/pick", _pick)
        page.router.add_post("/api/submit", _submit)
        page.router.add_post("/api/close", _close)
        runner = web.AppRunner(page, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, host=self.options.host, port=self.options.port).start()
        self._port = int(runner.addresses[0][1])

    async def _start_bot(self) -> None:
        """The bot's PUBLIC_URL must be known before create_app, so its socket is bound first (port 0)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.bot_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        database = self.options.database
        if database is None:
            # A fresh store each start: the simulated BK-JOB forgets its instances at exit, so an old store's
            # unfinished launches would only be reconciled into errors.
            self._tmp = tempfile.TemporaryDirectory(prefix="bkjob-demo-")
            database = Path(self._tmp.name) / "demo.sqlite3"
        settings = load_settings(
            {
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": self._signing_secret,
                "SLACK_API_URL": self.slack.base_url,
                "BK_API_URL": self.bk.base_url,
                "BK_APP_CODE": APP_CODE,
                "BK_APP_SECRET": self.bk.app_secret,
                "BK_USERNAME": "demo",
                "BK_BIZ_ID": str(BIZ),
                "BK_TIMEOUT": "5",
                "SLACK_CHANNEL_INTERVAL": "0",
                "POLL_TICK": str(min(1.0, self.options.step_seconds)),
                "PROGRESS_INTERVAL": str(max(0.1, self.options.step_seconds)),
                "APPROVAL_SWEEP_INTERVAL": "5",
                "PUBLIC_URL": self.bot_url,
                "DATABASE_URL": f"sqlite:///{database}",
                "LOG_LEVEL": self.options.log_level,
                "METRICS_PORT": "0",  # beside another demo or a bot on this machine
            }
        )
        runner = web.AppRunner(create_app(settings, policy=demo_policy()), shutdown_timeout=2.0)
        await runner.setup()
        self._runners.append(runner)
        await web.SockSite(runner, sock).start()

    async def close(self) -> None:
        """The page goes first, then the jobs, then the bot (it flushes to Slack), then the fakes."""
        for runner in reversed(self._runners):
            if runner is self._runners[0]:
                continue
            await runner.cleanup()
        if self._jobs is not None:
            await self._jobs.close()
        if self._runners:
            await self._runners[0].cleanup()
        self._runners.clear()
        if self._session is not None:
            await self._session.close()
        await self.bk.close()
        await self.slack.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- what a person does -------------------------------------------------------------------------------

    async def command(self, user: str, channel: str, text: str) -> JsonDict:
        """Only `/bkjob` reaches the bot; anything else Slack itself answers, as it would."""
        name, _, rest = text.strip().partition(" ")
        if name != COMMAND:
            self.workspace.tell(channel, user, f"Only `{COMMAND}` reaches the bot here. Try `{COMMAND} run 100`.")
            return {"ok": False, "error": "not_a_bot_command"}
        delivery = await self._require_sender().command(
            command=COMMAND,
            text=rest.strip(),
            user=user,
            user_name=_person(user),
            channel=channel,
            channel_name=_channel_name(channel),
            response_url=self.workspace.response_url(channel, user),
            trigger_id=self.workspace.trigger_id(user),
        )
        self.workspace.note(
            "Slack → bot",
            f"slash command: {COMMAND} {rest.strip()}",
            {"user": user, "channel": channel, "http_status": delivery.status, "answer": delivery.body},
            ok=delivery.status == 200,
        )
        if delivery.status != 200:
            self.workspace.tell(channel, user, f'`{COMMAND}` failed with the error "dispatch_failed"')
        elif delivery.body and delivery.body.get("text"):
            self.workspace.tell(channel, user, str(delivery.body["text"]))
        return {"ok": delivery.status == 200, "status": delivery.status}

    async def action(self, form: _ActionIn) -> JsonDict:
        message = None if form.ephemeral else self.slack.message(form.channel, form.ts)
        if message is None and not form.ephemeral:
            return {"ok": False, "error": "message_not_found"}
        payload = {
            "type": "block_actions",
            "team": TEAM,
            "user": slack_user(form.user, _person(form.user)),
            "api_app_id": APP_ID,
            "token": "demo-verification-token",
            "container": {
                "type": "message",
                "message_ts": form.ts,
                "channel_id": form.channel,
                "is_ephemeral": form.ephemeral,
            },
            "trigger_id": self.workspace.trigger_id(form.user),
            "channel": {"id": form.channel, "name": _channel_name(form.channel)},
            **({"message": message} if message is not None else {}),
            "response_url": self.workspace.response_url(form.channel, form.user),
            "actions": [
                {
                    "type": "button",
                    "action_id": form.action_id,
                    "block_id": form.block_id,
                    "value": form.value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        delivery = await self._require_sender().interaction(payload)
        self.workspace.note(
            "Slack → bot",
            f"block_actions: {form.action_id}",
            {"payload": payload, "http_status": delivery.status, "answer": delivery.body},
            ok=delivery.status == 200,
        )
        return {"ok": delivery.status == 200, "status": delivery.status}

    async def submit(self, form: _SubmitIn) -> JsonDict:
        modal = self.workspace.modal(form.user)
        if modal is None or modal.id != form.view_id:
            return {"ok": False, "error": "view_not_open"}
        view = {**modal.view, "state": {"values": _state_values(modal.view, form.values)}}
        payload = {
            "type": "view_submission",
            "team": TEAM,
            "user": slack_user(form.user, _person(form.user)),
            "api_app_id": APP_ID,
            "token": "demo-verification-token",
            "trigger_id": self.workspace.trigger_id(form.user),
            "view": view,
        }
        delivery = await self._require_sender().interaction(payload)
        self.workspace.note(
            "Slack → bot",
            f"view_submission: {view.get('callback_id')}",
            {"payload": payload, "http_status": delivery.status, "answer": delivery.body},
            ok=delivery.status == 200,
        )
        self.workspace.submitted(form.user, form.view_id, delivery.status, delivery.body)
        return {"ok": delivery.status == 200, "status": delivery.status, "answer": delivery.body}

    async def menu_options(self, form: _MenuIn) -> JsonDict:
        """Slack asks the Options Load URL as the person types in an external_select: `block_suggestion`."""
        modal = self.workspace.modal(form.user)
        if modal is None or modal.id != form.view_id:
            return {"ok": False, "error": "view_not_open"}
        payload = {
            "type": "block_suggestion",
            "team": TEAM,
            "user": slack_user(form.user, _person(form.user)),
            "api_app_id": APP_ID,
            "token": "demo-verification-token",
            "container": {"type": "view", "view_id": modal.id},
            "action_id": form.action_id,
            "block_id": form.block_id,
            "value": form.value,
            "view": modal.view,
        }
        delivery = await self._require_sender().interaction(payload)
        self.workspace.note(
            "Slack → bot",
            f"block_suggestion: {form.action_id} {form.value!r}",
            {"payload": payload, "http_status": delivery.status, "answer": delivery.body},
            ok=delivery.status == 200,
        )
        return {"ok": delivery.status == 200, "status": delivery.status, "answer": delivery.body or {}}

    async def menu_pick(self, form: _MenuIn) -> JsonDict:
        """Choosing an option in a modal's select menu: `block_actions` from the view (no response_url)."""
        modal = self.workspace.modal(form.user)
        if modal is None or modal.id != form.view_id:
            return {"ok": False, "error": "view_not_open"}
        payload = {
            "type": "block_actions",
            "team": TEAM,
            "user": slack_user(form.user, _person(form.user)),
            "api_app_id": APP_ID,
            "token": "demo-verification-token",
            "container": {"type": "view", "view_id": modal.id},
            "trigger_id": self.workspace.trigger_id(form.user),
            "view": modal.view,
            "actions": [
                {
                    "type": "external_select",
                    "action_id": form.action_id,
                    "block_id": form.block_id,
                    "selected_option": {"text": {"type": "plain_text", "text": form.text}, "value": form.value},
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        delivery = await self._require_sender().interaction(payload)
        self.workspace.note(
            "Slack → bot",
            f"block_actions: {form.action_id} → {form.value}",
            {"payload": payload, "http_status": delivery.status, "answer": delivery.body},
            ok=delivery.status == 200,
        )
        return {"ok": delivery.status == 200, "status": delivery.status}

    def _require_sender(self) -> SlackSender:
        if self._sender is None:
            raise RuntimeError("the simulator is not started")
        return self._sender


_SIMULATOR: web.AppKey[Simulator] = web.AppKey("simulator")


def _state_values(view: JsonDict, values: dict[str, dict[str, str | None]]) -> JsonDict:
    """Slack's `view.state.values`: every input block, with what the person left in it."""
    state: JsonDict = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element = block.get("element", {})
        action_id = element.get("action_id", "")
        value = values.get(block.get("block_id", ""), {}).get(action_id, element.get("initial_value"))
        state[block["block_id"]] = {action_id: {"type": element.get("type", "plain_text_input"), "value": value}}
    return state


def _person(user: str) -> str:
    return next((p.name for p in USERS if p.id == user), user.lower())


def _channel_name(channel: str) -> str:
    return next((c.name for c in CHANNELS if c.id == channel), channel.lower())


def _known(user: str, channel: str | None = None) -> str | None:
    """The page only acts as the demo's people in the demo's channels."""
    if not any(p.id == user for p in USERS):
        return f"unknown user {user!r}"
    if channel is not None and not any(c.id == channel for c in CHANNELS):
        return f"unknown channel {channel!r}"
    return None


# -- HTTP handlers (JSON in, JSON out) ----------------------------------------------------------------------


async def _page(request: web.Request) -> web.StreamResponse:
    html = resources.files("bot.demo").joinpath("page.html").read_text(encoding="utf-8")
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})


async def _state(request: web.Request) -> web.StreamResponse:
    """Long-poll: answers at once when something changed after `since`, else when it does (or after `wait`)."""
    sim = request.app[_SIMULATOR]
    user = request.query.get("user", USERS[0].id)
    channel = request.query.get("channel", CHANNELS[0].id)
    if (problem := _known(user, channel)) is not None:
        return web.json_response({"ok": False, "error": problem}, status=400)
    try:
        since = int(request.query.get("since", "-1"))
        wait = min(_MAX_WAIT, max(0.0, float(request.query.get("wait", "25"))))
    except ValueError:
        return web.json_response({"ok": False, "error": "since and wait must be numbers"}, status=400)
    await sim.workspace.changed_since(since, wait)
    return web.json_response(sim.workspace.snapshot(user, channel))


async def _read(request: web.Request, model: type[_Form]) -> _Form | web.Response:
    try:
        form = model.model_validate_json(await request.read())
    except ValidationError as exc:
        return web.json_response({"ok": False, "error": exc.errors(include_url=False)}, status=400)
    problem = _known(getattr(form, "user", ""), getattr(form, "channel", None))
    if problem is not None:
        return web.json_response({"ok": False, "error": problem}, status=400)
    return form


async def _command(request: web.Request) -> web.StreamResponse:
    form = await _read(request, _CommandIn)
    if isinstance(form, web.Response):
        return form
    return web.json_response(await request.app[_SIMULATOR].command(form.user, form.channel, form.text))


async def _action(request: web.Request) -> web.StreamResponse:
    form = await _read(request, _ActionIn)
    if isinstance(form, web.Response):
        return form
    return web.json_response(await request.app[_SIMULATOR].action(form))


async def _options(request: web.Request) -> web.StreamResponse:
    form = await _read(request, _MenuIn)
    if isinstance(form, web.Response):
        return form
    return web.json_response(await request.app[_SIMULATOR].menu_options(form))


async def _pick(request: web.Request) -> web.StreamResponse:
    form = await _read(request, _MenuIn)
    if isinstance(form, web.Response):
        return form
    return web.json_response(await request.app[_SIMULATOR].menu_pick(form))


async def _submit(request: web.Request) -> web.StreamResponse:
    form = await _read(request, _SubmitIn)
    if isinstance(form, web.Response):
        return form
    return web.json_response(await request.app[_SIMULATOR].submit(form))


async def _close(request: web.Request) -> web.StreamResponse:
    form = await _read(request, _CloseIn)
    if isinstance(form, web.Response):
        return form
    request.app[_SIMULATOR].workspace.close(form.user, form.view_id)
    return web.json_response({"ok": True})
