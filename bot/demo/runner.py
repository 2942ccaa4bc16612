"""Plays BK-JOB running the instances the bot starts: steps move on every few seconds, then it calls back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from bot.fakes import FakeBkJob, Instance

__all__ = ["JobRunner"]

log = logging.getLogger(__name__)

_SUCCESS = 3
_FAILED = 4  # "step failed": a script exited non-zero on some host


class JobRunner:
    """The fake moves instances only when told to (tests drive them by hand); here time drives them."""

    def __init__(
        self,
        *,
        bk: FakeBkJob,
        step_seconds: float,
        fails_at: Mapping[int, int | None],
        report: Callable[[str, Any], None] | None = None,
    ) -> None:
        self._bk = bk
        self._report = report
        self._step_seconds = step_seconds
        self._fails_at = dict(fails_at)
        self._tasks: set[asyncio.Task[None]] = set()
        bk.observe(instance=self._started)

    def _started(self, instance: Instance) -> None:
        task = asyncio.create_task(self._run(instance), name=f"demo-job-{instance.job_instance_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, instance: Instance) -> None:
        fails_at = self._fails_at.get(instance.bk_job_id)
        try:
            status = _SUCCESS
            for done in range(len(instance.steps)):
                await asyncio.sleep(self._step_seconds)  # the simulated work itself, not a wait for a condition
                if done == fails_at:
                    status = _FAILED
                    break
                self._bk.advance(instance.job_instance_id, done + 1)
            answers = await self._bk.finish(instance.job_instance_id, status)
            if self._report is not None:
                # JOB posts the JSON once, then the same bytes as a form once if the first answer was not 200.
                self._report(
                    f"callback: instance {instance.job_instance_id}",
                    {"url": "<bk_callback_url>", "body": instance.callback_body(), "http_status": answers},
                )
        except asyncio.CancelledError:
            raise
        except Exception:  # a demo job must not take the simulator down; the bot's poller still sees the state
            log.exception("simulated job %s failed to run", instance.job_instance_id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
