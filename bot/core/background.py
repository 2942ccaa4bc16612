"""Work that runs after Slack or BK-JOB has been answered, kept track of so shutdown can wait for it; and the
long-running workers' heartbeats and failure back-off."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["Background", "Heartbeats", "failure_delay", "keep_running"]

MAX_FAILURE_DELAY_S = 60.0

log = logging.getLogger(__name__)


class Background:
    """Holds strong references to fire-and-forget tasks (asyncio keeps only weak ones) and logs their failures."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    async def idle(self) -> None:
        """Returns once no task is running (tests and shutdown wait on this, never on a sleep)."""
        await self._idle.wait()

    async def close(self, *, grace: float = 15.0) -> None:
        """Let in-flight work finish within the platform's shutdown grace, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


class Heartbeats:
    """When each background worker last completed a round, against how long a round may take.

    A worker that raises on every round (a locked database, a lost connection) keeps running but stops beating;
    `/healthz` reports it, so a load balancer or an operator notices instead of results silently piling up.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._within: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def expect(self, name: str, *, within: float) -> Callable[[], None]:
        """Register a worker (its start counts as a beat); returns the function it calls after each round."""
        self._within[name] = within
        self._last[name] = self._clock()
        return lambda: self.beat(name)

    def beat(self, name: str) -> None:
        self._last[name] = self._clock()

    def stale(self) -> dict[str, float]:
        """Workers overdue, with the seconds since their last completed round."""
        now = self._clock()
        ages = {name: now - last for name, last in self._last.items()}
        return {name: round(age, 1) for name, age in ages.items() if age > self._within[name]}


def failure_delay(failures: int, *, base: float = 1.0) -> float:
    """Back-off after `failures` rounds in a row failed: doubling, at most a minute."""
    return float(min(MAX_FAILURE_DELAY_S, base * 2 ** min(failures, 16)))


async def keep_running(
    name: str, round_: Callable[[], Awaitable[object]], *, interval: float, beat: Callable[[], None]
) -> None:
    """Run `round_` every `interval` seconds forever: any exception is logged at ERROR and backed off, never fatal.

    Only cancellation (shutdown) ends the loop; asyncio's CancelledError is not an Exception.
    """
    failures = 0
    while True:
        try:
            await round_()
        except Exception:
            failures += 1
            delay = failure_delay(failures, base=interval)
            log.error("%s round failed (%d in a row); next try in %.1f s", name, failures, delay, exc_info=True)
        else:
            failures = 0
            delay = interval
            beat()
        await asyncio.sleep(delay)
