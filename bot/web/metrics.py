"""GET /metrics: Prometheus' scrape of the counters in `bot.metrics` and gauges read now, behind an optional token."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from aiohttp import web

from bot import metrics
from bot.store import Store

__all__ = ["Scrape"]


class Scrape:
    """Counters kept as things happen, gauges read now from the store and the socket."""

    def __init__(
        self,
        *,
        store: Store,
        token: str | None,
        socket: Callable[[], Mapping[str, object]] | None = None,
        states: tuple[str, ...] = (),
    ) -> None:
        """`token` is METRICS_TOKEN (None: anyone may scrape); `socket` reports Slack's connection in Socket Mode,
        whose every possible state is in `states` (each gets a gauge, 1 for the current one)."""
        self._store = store
        self._token = token
        self._socket = socket
        self._states = states

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not metrics.authorized(request.headers, self._token):
            return web.Response(status=401, text="metrics need the bearer token (METRICS_TOKEN)\n")
        now = time.time()
        pending = await self._store.outbox_messages(state="pending")
        launches = await self._store.unfinished_launches()
        body = metrics.render(
            outbox_created=[m.created_at for m in pending],
            due_polls=[lr.next_poll_at for lr in launches if lr.next_poll_at is not None and lr.next_poll_at <= now],
            socket=self._socket() if self._socket is not None else None,
            states=self._states,
            now=now,
        )
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})
