"""GET /metrics: Prometheus' scrape of the counters in `bot.metrics` and gauges read now, behind an optional token,
and the internal listener (METRICS_PORT) that serves it apart from the port Slack and BK-JOB reach."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from aiohttp import web

from bot import metrics
from bot.errors import ConfigError
from bot.store import Store

__all__ = ["Scrape", "serve_internal"]

log = logging.getLogger(__name__)


class Scrape:
    """Counters kept as things happen, gauges read now from the store (counted there, never loaded) and the socket.

    Scrapes arriving together share one reading of the store: twenty scrapers cost one query, not twenty.
    """

    def __init__(
        self,
        *,
        store: Store,
        token: str | None,
        socket: Callable[[], Mapping[str, object]] | None = None,
        states: tuple[str, ...] = (),
    ) -> None:
        """`token` is METRICS_TOKEN (None: anyone who reaches the port may scrape); `socket` reports Slack's
        connection in Socket Mode, whose every possible state is in `states` (each gets a gauge, 1 for the current
        one)."""
        self._store = store
        self._token = token
        self._socket = socket
        self._states = states
        self._reading: asyncio.Task[bytes] | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not metrics.authorized(request.headers, self._token):
            return web.Response(status=401, text="metrics need the bearer token (METRICS_TOKEN)\n")
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read(), name="metrics-scrape")
        # Shielded: a scraper that hangs up does not cancel the reading the others wait on.
        body = await asyncio.shield(self._reading)
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    async def _read(self) -> bytes:
        now = time.time()
        backlog = await self._store.backlog(now=now)
        return metrics.render(
            outbox_depth=backlog.pending_messages,
            outbox_oldest=backlog.oldest_pending_at,
            due_poll=backlog.oldest_due_poll_at,
            socket=self._socket() if self._socket is not None else None,
            states=self._states,
            now=now,
        )


async def serve_internal(scrape: Scrape, *, host: str, port: int) -> web.AppRunner:
    """/metrics alone on its own listener (METRICS_PORT; 0 picks a free port): the port a site keeps inside, apart
    from the one its load balancer opens to Slack and BK-JOB. Raises ConfigError when the port cannot be bound."""
    app = web.Application()
    app.router.add_get("/metrics", scrape.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"METRICS_PORT {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
    log.info("serving /metrics on %s:%s (METRICS_PORT)", host, runner.addresses[0][1])
    return runner
