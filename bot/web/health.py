"""GET /healthz: what a load balancer needs to take a replica out of rotation, and what it may want to show."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web

from bot.store import Store

__all__ = ["Health"]


class Health:
    """Load balancers take a replica out of rotation on 503: the database is what a replica cannot do without, and
    a worker that has stopped completing rounds (outbox, poller, approval sweeper) means results are not going out.
    """

    def __init__(
        self,
        *,
        store: Store,
        stalled: Callable[[], Mapping[str, float]],
        policy: str,
        socket: Callable[[], Mapping[str, object]] | None = None,
    ) -> None:
        """`stalled` names the overdue workers with the seconds since their last round; `policy` is "file" or
        "open"; `socket` reports Slack's connection in Socket Mode (None over HTTP)."""
        self._store = store
        self._stalled = stalled
        self._policy = policy
        self._socket = socket

    async def handle(self, request: web.Request) -> web.StreamResponse:
        up = await self._store.ping()
        stalled = self._stalled()
        ok = up and not stalled
        body: dict[str, object] = {
            "ok": ok,
            "store": "up" if up else "down",
            "database": self._store.kind,
            "policy": self._policy,
        }
        if stalled:
            body["stalled_workers"] = {name: f"no round completed for {age:g} s" for name, age in stalled.items()}
        if self._socket is not None:
            # Reported, not judged: a replica whose socket is down still serves BK-JOB's callbacks and its outbox.
            body["socket"] = self._socket()
        return web.json_response(body, status=200 if ok else 503)
