"""Plays BK-JOB running the instances the bot starts: steps move on every few seconds, then it calls back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from bot.fakes import BkRequest, FakeBkJob, Instance
from bot.fakes.bkjob import HostOutcome

__all__ = ["JobRunner"]

log = logging.getLogger(__name__)

_SUCCESS = 3
_FAILED = 4  # "step failed": a script exited non-zero on some host
_IGNORED = 6
_WAITING = 7  # a manual confirmation waits for its confirmer


class JobRunner:
    """The fake moves instances only when told to (tests drive them by hand); here time drives them."""

    def __init__(
        self,
        *,
        bk: FakeBkJob,
        step_seconds: float,
        fails_at: Mapping[int, int | None],
        report: Callable[[str, Any], None] | None = None,
        outcomes: Mapping[int, Mapping[str, HostOutcome]] | None = None,
    ) -> None:
        self._outcomes = dict(outcomes or {})
        self._bk = bk
        self._report = report
        self._step_seconds = step_seconds
        self._fails_at = dict(fails_at)
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[int, asyncio.Task[None]] = {}
        bk.observe(instance=self._started, request=self._operated)

    def _started(self, instance: Instance) -> None:
        self._play(instance.job_instance_id)

    def _operated(self, request: BkRequest) -> None:
        """A retried step, an ignored error or a confirmation makes the job run on: play it again from there."""
        if request.api != "operate_step_instance":
            return
        try:
            instance_id = int(request.body.get("job_instance_id") or 0)
        except (TypeError, ValueError):
            return
        if instance_id in self._bk.instances:
            self._play(instance_id)

    def _play(self, instance_id: int) -> None:
        if instance_id in self._running:
            return
        task = asyncio.create_task(self._run(instance_id), name=f"demo-job-{instance_id}")
        self._running[instance_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._running.pop(instance_id, None))

    async def _run(self, instance_id: int) -> None:
        """Every `step_seconds` the running step ends: it fails the first time if the plan fails there, a
        confirmation step waits (in 7) for Slack, and the job ends (and calls back) after its last step."""
        instance = self._bk.instances[instance_id]
        fails_at = self._fails_at.get(instance.bk_job_id)
        try:
            while True:
                await asyncio.sleep(self._step_seconds)  # the simulated work itself, not a wait for a condition
                if instance.status == _WAITING:
                    continue
                current = next((i for i, s in enumerate(instance.steps) if s.status == 2), None)
                if instance.status != 2 or current is None:
                    return  # ended, or stopped (the fake completes a stop itself)
                step = instance.steps[current]
                if current == fails_at and step.execute_count == 0:
                    self._bk.set_host_outcomes(instance_id, current, self._outcomes.get(instance.bk_job_id, {}))
                    await self._end(instance, _FAILED)
                    return
                if current + 1 < len(instance.steps):
                    self._bk.advance(instance_id, current + 1)
                    continue
                await self._end(instance, _SUCCESS)
                return
        except asyncio.CancelledError:
            raise
        except Exception:  # a demo job must not take the simulator down; the bot's poller still sees the state
            log.exception("simulated job %s failed to run", instance_id)

    async def _end(self, instance: Instance, status: int) -> None:
        running = next(i for i, s in enumerate(instance.steps) if s.status == 2)
        statuses = [s.status if i < running else status if i == running else 1 for i, s in enumerate(instance.steps)]
        if status == _SUCCESS:
            statuses = [s if s in (_SUCCESS, _IGNORED) else _SUCCESS for s in statuses]
        answers = await self._bk.finish(instance.job_instance_id, status, statuses)
        if self._report is not None:
            # JOB posts the JSON once, then the same bytes as a form once if the first answer was not 200.
            self._report(
                f"callback: instance {instance.job_instance_id}",
                {"url": "<bk_callback_url>", "body": instance.callback_body(), "http_status": answers},
            )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
