"""Shared by the hostile-input tests (no tests here): the real bot on a background loop, and what to scan for.

Why a thread: hypothesis' `@given` drives a *synchronous* test function, example after example, and shrinks
failures by calling it again; it cannot run inside pytest-asyncio's already-running loop. So the bot, fake Slack
and fake BK-JOB live on their own event loop in a daemon thread for the whole module (starting a bot per example
is far too slow), and each example submits one coroutine to that loop (`LiveBot.run`) and waits for its result.
Every request still goes over real HTTP on loopback, signed as Slack signs it, through the `Bot` helper.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

from tests.conftest import APP_CODE, APP_SECRET, BIZ, BOT_TOKEN, PLAN, PLAN_VARS, Bot
from tests.fakes import FakeBkJob, FakeSlack, ResponseUrlPost, SlackCall

__all__ = ["MARKERS", "LiveBot", "Snapshot", "examples", "leaks", "stored_decisions"]

T = TypeVar("T")

# `HYPOTHESIS_PROFILE=nightly` runs every property with 10,000 examples; the default keeps the suite quick.
settings.register_profile(
    "hostile",
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("nightly", parent=settings.get_profile("hostile"), max_examples=10_000)
NIGHTLY = os.environ.get("HYPOTHESIS_PROFILE") == "nightly"

MARKERS = ("Traceback", "Error(", 'File "', "<bot.", "object at 0x", "Exception:", "pydantic_core", "validation error")
"""What a Python failure looks like when it leaks into a message: none of these may reach Slack."""

APPROVAL_CHANNEL = "C0APPR"
APPROVER = "U0BOB"
POLICY = f"""
[users]
U0ALICE = "alice"
{APPROVER} = "bob"

[channels.{APPROVAL_CHANNEL}]
bk_biz_id = {BIZ}
approval = true
approvers = ["{APPROVER}"]
approval_ttl = "1h"

[defaults]
bk_biz_id = {BIZ}
approval = false
"""


def leaks(texts: Iterator[str] | list[str]) -> list[str]:
    return [t[:300] for t in texts if any(m in t for m in MARKERS)]


@dataclass(frozen=True)
class Snapshot:
    """New Slack calls, response_url posts and log records since a mark."""

    calls: list[SlackCall]
    responses: list[ResponseUrlPost]
    records: list[logging.LogRecord]

    def texts(self) -> list[str]:
        return [repr(c.args) for c in self.calls] + [repr(r.body) for r in self.responses]

    def bot_errors(self) -> list[str]:
        """Errors the bot or Bolt logged: every one of them is a request the bot did not handle on purpose."""
        return [
            f"{r.name}: {r.getMessage()[:200]}"
            for r in self.records
            if r.levelno >= logging.ERROR
            and r.name.startswith(("bot", "slack_bolt"))
            and not r.name.startswith("bot.fakes")
        ]


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class LiveBot:
    """The real app (with a policy that asks for approval in one channel) and its fakes, on a background loop."""

    def __init__(self, db_path: Path, policy_path: Path, **overrides: str) -> None:
        self.db_path = db_path
        self._policy_path = policy_path
        self._overrides = overrides
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="hostile-bot", daemon=True)
        self._logs = _Collector()
        self.bot: Bot

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:  # noqa: ASYNC109 - not a scope
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self._thread.start()
        logging.getLogger().addHandler(self._logs)
        self.run(self._start())

    async def _start(self) -> None:
        # One fake serves hundreds of examples a minute: Slack's per-minute tiers would only measure the suite.
        slack = FakeSlack(token=BOT_TOKEN, rate_tiers=False)
        await slack.start()
        bk = FakeBkJob(app_code=APP_CODE, app_secret=APP_SECRET, skip_user_auth=True)
        await bk.start()
        bk.add_plan(BIZ, PLAN, "Deploy web", PLAN_VARS)
        self._policy_path.write_text(POLICY)
        self.bot = Bot(
            slack=slack,
            bk=bk,
            db_path=self.db_path,
            BKJOB_CONFIG=str(self._policy_path),
            BK_PLAN_CACHE_TTL="0",  # so that every injected BK-JOB failure is met, not a cached plan
            **self._overrides,
        )
        await self.bot.start()

    def stop(self) -> None:
        logging.getLogger().removeHandler(self._logs)

        async def down() -> None:
            await self.bot.close()
            await self.bot.slack.close()
            await self.bot.bk.close()

        self.run(down())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def mark(self) -> tuple[int, int, int]:
        return len(self.bot.slack.calls()), len(self.bot.slack.responses()), len(self._logs.records)

    def since(self, mark: tuple[int, int, int]) -> Snapshot:
        calls, responses, records = mark
        return Snapshot(
            calls=self.bot.slack.calls()[calls:],
            responses=self.bot.slack.responses()[responses:],
            records=list(self._logs.records[records:]),
        )


_DECISIONS = {
    "launches": "SELECT id, state, job_instance_id, requester, channel, bk_job_id FROM launches",
    "results": "SELECT * FROM results",
    "approvals": "SELECT id, state, decided_by, launch_id FROM approvals",
    "approval_votes": "SELECT * FROM approval_votes",
}


def stored_decisions(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What a request could wrongly change: launches, their states and instances, results, approvals and votes.

    Poll schedules and timestamps are left out: the bot's own poller moves them between two examples.
    """
    with sqlite3.connect(db_path) as conn:
        return {t: sorted(conn.execute(q).fetchall(), key=repr) for t, q in _DECISIONS.items()}


def examples(normal: int) -> settings:
    """`normal` examples in the everyday suite; 10,000 under the nightly profile (env or --hypothesis-profile)."""
    nightly = NIGHTLY or settings.default.max_examples >= 10_000
    return settings(
        settings.get_profile("nightly" if nightly else "hostile"), max_examples=10_000 if nightly else normal
    )
