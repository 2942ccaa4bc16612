"""Slow and hostile clients at the connection level: a bound on open connections, and quiet parser errors.

aiohttp cuts a connection that has not sent a whole request head within its keep-alive timeout (set from
`HEADER_TIMEOUT` in `create_app`), and bodies are read under deadlines by the routes. What it does not do is bound
how many connections are open at once: 1,000 clients trickling their headers would hold 1,000 file descriptors
until their deadlines, and a real Slack request arriving meanwhile could find none left. `GuardedSite` keeps at
most `limit` connections; at the limit, a new connection takes the place of the oldest one that has not yet sent a
whole request head (a trickler), or failing that of the oldest connection (a real request is answered in moments).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.errors import ConfigError

__all__ = ["ConnectionGuard", "GuardedSite", "QuietParserErrors", "serve"]

log = logging.getLogger(__name__)

_HEAD_END = b"\r\n\r\n"


class _Guarded(asyncio.Protocol):
    """Passes everything to aiohttp's own protocol, noting whether a whole request head has arrived."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._tail = b""
        self.head_seen = False
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._guard.opened(self)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.head_seen:
            window = self._tail + data
            self.head_seen = _HEAD_END in window
            self._tail = window[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.closed(self)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class ConnectionGuard:
    """A protocol factory around aiohttp's `Server` that keeps at most `limit` connections open."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], *, limit: int) -> None:
        self._factory = factory
        self._limit = limit
        self._open: dict[_Guarded, None] = {}  # insertion-ordered: oldest first
        self.evicted = 0
        self._last_warning = 0.0

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self._factory(), self)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def opened(self, conn: _Guarded) -> None:
        if len(self._open) >= self._limit:
            # A trickler first; failing that the oldest connection, as a real request is answered in moments.
            victim = next((c for c in self._open if not c.head_seen), next(iter(self._open)))
            self._drop(victim)
        self._open[conn] = None

    def closed(self, conn: _Guarded) -> None:
        self._open.pop(conn, None)

    def _drop(self, conn: _Guarded) -> None:
        """Abort without a word: a trickler gets nothing to read, and nothing is logged per connection."""
        self._open.pop(conn, None)
        self.evicted += 1
        if conn.transport is not None:
            conn.transport.abort()  # type: ignore[attr-defined]
        now = time.monotonic()
        if now - self._last_warning >= 60:
            self._last_warning = now
            log.warning("%d connections open (the limit): closing the slowest (%d so far)", self._limit, self.evicted)


class GuardedSite(web.BaseSite):
    """aiohttp's TCPSite, with every connection passing through a `ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, limit: int, **kwargs: Any) -> None:
        super().__init__(runner, **kwargs)
        self._host = host
        self._port = port
        self._limit = limit
        self.guard: ConnectionGuard | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self.guard = ConnectionGuard(server, limit=self._limit)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
        sockets = self._server.sockets
        if sockets and self._port == 0:
            self._port = sockets[0].getsockname()[1]


class QuietParserErrors(logging.Filter):
    """aiohttp answers a request it cannot parse (an over-long request line or header, a bad method) with a 400 and
    logs it at ERROR with a traceback: a flood of such requests must not flood the log. One summary a minute."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0
        self._last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        self._count += 1
        now = time.monotonic()
        if now - self._last >= 60:
            self._last = now
            log.warning("%d malformed HTTP requests answered %s (%s)", self._count, exc.code, type(exc).__name__)
            self._count = 0
        return False


def serve(app: web.Application, *, host: str, port: int, limit: int, **runner_kwargs: Any) -> None:
    """`web.run_app` with a `GuardedSite`: serves until SIGTERM or SIGINT, then shuts down gracefully.

    Raises ConfigError when the bot cannot start (the database unreachable, the port taken): one line for the
    operator, not a traceback.
    """

    async def main() -> None:
        runner = web.AppRunner(app, handle_signals=False, **runner_kwargs)
        try:
            await runner.setup()
            await GuardedSite(runner, host, port, limit=limit).start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await runner.cleanup()
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise ConfigError(f"cannot start: {type(exc).__name__}: {first}".rstrip(": ")) from exc
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
