"""The rig: fake Slack and fake BK-JOB in this process, the bot as `python -m bot` in its own, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp

from bench.process import Served, free_port
from bench.signed import Signed, SlackRequests
from bot.fakes import FakeBkJob, FakeSlack

__all__ = ["PLAN", "SECRET", "Rig", "rig", "wait_until"]

SECRET = "bench-signing-secret-0123456789ab"
TOKEN = "xoxb-bench"
APP_CODE = "bkjob-bot"
APP_SECRET = "bench-app-secret"
BIZ = 3
PLAN = 100
# The sender has a Slack profile, so its BK-JOB user comes from its email (then the directory cache).
USERS = {"U0BENCH": {"real_name": "Bench Sender", "email": "ops-bot@example.com"}}
PLAN_VARS: list[dict[str, Any]] = [
    {"id": 436, "name": "servers", "category": 3, "ip_list": [{"bk_host_id": 1, "bk_cloud_id": 0, "ip": "10.0.0.1"}]},
    {"id": 437, "name": "version", "category": 1, "value": "1.0"},
    {"id": 439, "name": "env", "category": 2, "value": "prod"},
]


async def wait_until(predicate: Callable[[], bool], *, within: float, what: str, poll: float = 0.02) -> float:
    """Poll a cheap predicate (the fakes' own waiters rescan every call, too slow under bulk load); bounded."""
    t0 = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t0 > within:
            raise TimeoutError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(poll)
    return time.perf_counter() - t0


@dataclass
class Rig:
    slack: FakeSlack
    bk: FakeBkJob
    workdir: Path
    signed: SlackRequests

    def bot(self, *, db: str = "bot.sqlite3", **overrides: str) -> Served:
        """A bot process (not started) on a fresh port, its database and log in the work directory."""
        port = free_port()
        settings = {
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": self.slack.base_url,
            "BK_API_URL": self.bk.base_url,
            "BK_API_VERSION": self.bk.api_version,
            "BK_APP_CODE": APP_CODE,
            "BK_APP_SECRET": APP_SECRET,
            "BK_USERNAME": "ops-bot",
            "BK_BIZ_ID": str(BIZ),
            "BK_JOB_WEB_URL": "https://job.example.com",
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "DATABASE_URL": f"sqlite:///{self.workdir / db}",
            # Launches left running by a benchmark must not be polled halfway through the next one.
            "CALLBACK_GRACE": "3600",
            "LOG_LEVEL": "INFO",
            "BKJOB_OPEN_MODE": "on",  # no policy file: measured ungoverned, as before
        }
        settings.update(overrides)
        return Served.bot(settings, port=port, cwd=self.workdir, log=self.workdir / "bot.log")

    def baseline(self) -> Served:
        return Served.baseline(SECRET, port=free_port(), cwd=self.workdir, log=self.workdir / "baseline.log")

    async def post(self, bot: Served, request: Signed) -> int:
        body, headers = request
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{bot.url}/slack/events", data=body, headers=headers) as resp:
                await resp.read()
                return resp.status

    async def run_form(self, bot: Served, *, channel: str) -> Mapping[str, Any]:
        """`/bkjob run 100` once, and the modal as the bot filled it."""
        before = len(self.slack.calls("views.update"))
        status = await self.post(bot, self.signed.command(f"run {PLAN}", channel=channel))
        if status != 200:
            raise RuntimeError(f"run command answered {status}")
        calls = await self.slack.wait_for_call("views.update", count=before + 1, timeout=60)
        view = self.slack.view(calls[-1].args["view_id"])
        if view is None:
            raise RuntimeError("the run modal was not opened")
        return view


@asynccontextmanager
async def rig(*, channel_rate: float | None = None, api_version: Literal["v2", "v3"] = "v2") -> AsyncIterator[Rig]:
    """`api_version` is the wire format the fake BK-JOB serves (and the bot is told to speak)."""
    with tempfile.TemporaryDirectory(prefix="bkjob-bench-") as tmp:
        async with (
            FakeSlack(token=TOKEN, channel_rate=channel_rate, users=USERS) as slack,
            FakeBkJob(app_code=APP_CODE, app_secret=APP_SECRET, skip_user_auth=True, api_version=api_version) as bk,
        ):
            bk.add_plan(BIZ, PLAN, "Deploy web", PLAN_VARS)
            # Slack's per-method tiers (e.g. 100 views.open a minute) would make thousands of requests a test of
            # waiting; the figures are the bot's. The per-channel post limit is modelled apart (channel_rate).
            slack.lift_rate_tiers()
            yield Rig(slack=slack, bk=bk, workdir=Path(tmp), signed=SlackRequests(secret=SECRET, slack=slack))
