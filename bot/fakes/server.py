"""What every fake has in common: a real aiohttp server on 127.0.0.1, on a port the system picks (port 0)."""

from __future__ import annotations

import ssl
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from aiohttp import web

__all__ = ["FakeServer"]


class FakeServer(ABC):
    """Start, close, `async with`, and the `origin` to point a client at; a fake adds its routes and its rules.

    A subclass builds its `web.Application` in `_application`; one with more to open or close (a client session,
    open WebSockets) extends `start` after `super().start()` and `close` before `super().close()`. The origin is
    `origin` rather than `url`, since `FakeBkJob.url(api)` names one API's URL.
    """

    tls: ssl.SSLContext | None = None
    """A server context to serve TLS with; plain by default."""
    schemes: tuple[str, str] = ("http", "https")
    """The origin's scheme without TLS and with it."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @abstractmethod
    def _application(self) -> web.Application:
        """The fake's routes (and middlewares), built afresh on each start."""

    async def start(self) -> None:
        self._runner = web.AppRunner(self._application(), shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host="127.0.0.1", port=0, ssl_context=self.tls)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def origin(self) -> str:
        """`scheme://127.0.0.1:port`, without a trailing slash."""
        return f"{self.schemes[1] if self.tls else self.schemes[0]}://127.0.0.1:{self.port}"
