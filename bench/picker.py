"""Benchmark 6: the plan picker's options as a person types (Slack waits 3 s; target p99 < 100 ms from cache).

A business with 10,000 plans; the picker is opened once (which reads the whole list into the bot's cache), then
every keystroke of a few searches is a signed `block_suggestion`, timed to the options in the answer. The baseline
server gets the same requests beside it.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from bench.load import send_all
from bench.rig import BIZ, rig, wait_until
from bot.slack.blocks.finder import PLAN_PICKER_ACTION, PLAN_PICKER_BLOCK

__all__ = ["picker_latency"]

_WORDS = ("deploy", "web", "api", "restart", "cache", "db", "migrate", "nightly", "report", "clean")
_SEARCHES = ("deploy web", "restart api 12", "migrate db", "nightly report 3", "clean cache", "1234")


def _plan_name(i: int) -> str:
    return f"{_WORDS[i % 10]} {_WORDS[(i // 10) % 10]} {i}"


def _keystrokes() -> list[str]:
    """What Slack sends as someone types each search: every prefix (Slack asks once the field has a character)."""
    return [search[:n] for search in _SEARCHES for n in range(1, len(search) + 1)]


async def picker_latency(*, plans: int, rounds: int, concurrency: tuple[int, ...]) -> dict[str, Any]:
    async with rig() as r:
        for i in range(plans):
            r.bk.add_plan(BIZ, 10_000 + i, _plan_name(i), steps=[{"name": "one"}])
        async with r.bot() as bot, r.baseline() as baseline:
            before = len(r.slack.calls("views.update"))
            t0 = time.perf_counter()
            status = await r.post(bot, r.signed.command("run", channel="CPICK"))
            if status != 200:
                raise RuntimeError(f"/bkjob run answered {status}")
            await wait_until(lambda: len(r.slack.calls("views.update")) > before, within=30, what="the picker")
            opened_ms = (time.perf_counter() - t0) * 1000
            view = r.slack.view(r.slack.calls("views.update")[-1].args["view_id"])
            if view is None:
                raise RuntimeError("the picker was not opened")
            typed = _keystrokes() * rounds
            # The first keystroke may wait for the list (read when the picker opened): timed on its own.
            cold = await send_all(f"{bot.url}/slack/events", [_suggest(r, view, "d")], concurrency=1)
            levels = []
            for level in concurrency:
                requests = [_suggest(r, view, text) for text in typed]
                ours = await send_all(f"{bot.url}/slack/events", requests, concurrency=level)
                theirs = await send_all(f"{baseline.url}/slack/events", requests, concurrency=level)
                levels.append(
                    {
                        "concurrency": level,
                        "bot": asdict(ours),
                        "baseline": asdict(theirs),
                        "p99_ratio": ours.p99_ms / theirs.p99_ms,
                    }
                )
    return {"plans": plans, "picker_opened_ms": opened_ms, "first_keystroke_ms": cold.max_ms, "levels": levels}


def _suggest(r: Any, view: dict[str, Any], typed: str) -> tuple[bytes, dict[str, str]]:
    signed: tuple[bytes, dict[str, str]] = r.signed.suggestion(
        view, typed, action_id=PLAN_PICKER_ACTION, block_id=PLAN_PICKER_BLOCK
    )
    return signed
