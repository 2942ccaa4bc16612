"""A small forward proxy on loopback, as a corporate one: CONNECT tunnels (TLS) and absolute-form requests (plain
HTTP and ws://), optional Basic proxy authentication, and a count of every connection it carried, by target."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

__all__ = ["LoopbackProxy"]


class LoopbackProxy:
    """`url` is what HTTPS_PROXY / HTTP_PROXY take (with `user:password@` when credentials are required)."""

    def __init__(self, *, user: str | None = None, password: str | None = None) -> None:
        self.user = user
        self.password = password
        self.tunnels: Counter[str] = Counter()  # "host:port" -> connections carried (CONNECT or forwarded)
        self.methods: Counter[str] = Counter()  # "CONNECT" or the forwarded request's method
        self.refused = 0  # 407s: no or wrong Proxy-Authorization
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user is not None else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def carried(self, port: int) -> int:
        return self.tunnels[f"127.0.0.1:{port}"]

    async def wait_refused(self, count: int) -> None:
        """Until `count` requests were refused (407) in all: an event to wait on, not a window of time."""
        while self.refused < count:
            self.changed.clear()
            await self.changed.wait()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._pipes.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if not self._authorized(headers.get("proxy-authorization", "")):
            self.refused += 1
            self.changed.set()
            writer.write(b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="corp"\r\n')
            writer.write(b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            first = b""
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # absolute-form: forward the request as it came, minus the proxy's own header
            parts = urlsplit(target)
            host, port = parts.hostname or "", str(parts.port or 80)
            kept = [line for line in lines[1:] if line and not line.lower().startswith("proxy-authorization:")]
            first = "\r\n".join([f"{method} {target} {version}", *kept, "", ""]).encode("latin-1")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        self.tunnels[f"{host}:{port}"] += 1
        self.methods[method] += 1
        self.changed.set()
        upstream_writer.write(first)
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    def _authorized(self, header: str) -> bool:
        if self.user is None:
            return True
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
