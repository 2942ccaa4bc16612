"""Socket Mode: Slack's side of the bot over a WebSocket the bot dials out, with slack_bolt's aiohttp adapter."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import ssl
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import send_async_response
from slack_bolt.adapter.socket_mode.internals import build_headers
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackClientError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.logs import REQUEST_ID
from bot.metrics import envelope_received
from bot.slack.payloads import payload_problem

__all__ = ["SocketState", "SocketTransport"]

log = logging.getLogger(__name__)

# What Bolt's parsing can raise on a payload shape we do not validate (see bot.slack.http).
_UNREADABLE = (ValueError, LookupError, RecursionError, TypeError, AttributeError, KeyError, IndexError)
# What opening a connection can fail with: apps.connections.open refused or unreachable, the WebSocket handshake.
_CONNECT_FAILURES = (SlackClientError, aiohttp.ClientError, OSError, TimeoutError)
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]")
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0


def backoff(failures: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait after `failures` failed attempts in a row: doubling, capped, with jitter so that
    replicas cut off together do not all knock on Slack's door in the same second."""
    ceiling = min(cap, base * 2.0 ** max(0, failures - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class SocketState:
    """The connection's state and since when, for /healthz and /metrics.

    `connecting` (never connected yet), `connected`, `reconnecting` (was connected, is dialling again),
    `disconnected` (the connection is gone and no new one is under way yet) or `closed` (shutting down).
    """

    STATES = ("connecting", "connected", "reconnecting", "disconnected", "closed")

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.state = "connecting"
        self.since = clock()
        self.connects = 0
        self.last_disconnect: str | None = None
        self.changed = asyncio.Event()
        self.probe: Callable[[], bool] = lambda: True
        """Whether the connection is still open: the SDK notices a dropped one only at its next ping round."""

    def set(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        self.since = self._clock()
        if state == "connected":
            self.connects += 1
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait_for(self, state: str, *, connects: int = 1) -> None:
        """Wait until the state is `state` (and, for `connected`, at least `connects` connections were made)."""
        while not (self.state == state and (state != "connected" or self.connects >= connects)):
            await self.changed.wait()

    def report(self) -> dict[str, Any]:
        if self.state == "connected" and not self.probe():
            self.set("disconnected")
        return {
            "state": self.state,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since)),
            "seconds": round(self._clock() - self.since, 1),
            "connects": self.connects,
            "last_disconnect": self.last_disconnect,
        }


class _Client(SocketModeClient):
    """slack_sdk's aiohttp Socket Mode client with three changes to how it (re)connects.

    The SDK retries a failed connection every `ping_interval` forever, against the same WebSocket URL, which
    Slack hands out for one use; here each attempt asks apps.connections.open for a fresh URL and waits longer after
    each failure. The proxy is chosen per URL (`proxy_for`), so NO_PROXY is honoured, which the SDK's reading of
    HTTPS_PROXY does not do. And every state change is recorded in `SocketState`.
    Pings, pongs, stale-connection detection, `disconnect` messages and envelope dispatch stay the SDK's.
    """

    def __init__(
        self,
        *,
        app_token: str,
        web_client: AsyncWebClient,
        ping_interval: float,
        state: SocketState,
        proxy_for: Callable[[str], str | None],
        tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(
            app_token=app_token,
            logger=logging.getLogger("slack_sdk.socket_mode"),
            web_client=web_client,
            ping_interval=ping_interval,
            on_message_listeners=[self._on_message],
        )
        self.proxy = None  # chosen per URL in _open
        self._state = state
        self._proxy_for = proxy_for
        self._tls = tls
        self._crowded = 0  # `too_many_websockets` in a row: Slack holds 10 connections per app, and this is the 11th

    async def connect(self) -> None:
        """Called at start, and by the SDK after a `disconnect` message, a CLOSE frame or a stale connection."""
        failures = 0
        if self._crowded:
            delay = backoff(self._crowded)
            log.warning("Socket Mode: Slack has too many connections for this app; waiting %.1f s", delay)
            self._state.set("disconnected")
            await asyncio.sleep(delay)
        while not self.closed:
            self._state.set("reconnecting" if self._state.connects else "connecting")
            try:
                await self._open()
            except _CONNECT_FAILURES as exc:
                if self.closed:
                    return
                failures += 1
                delay = backoff(failures)
                log.warning("Socket Mode: could not connect (%s); retrying in %.1f s", _describe(exc), delay)
                self.wss_uri = None
                await asyncio.sleep(delay)
                continue
            if not self.closed:
                self._state.set("connected")
            return

    async def connect_to_new_endpoint(self, force: bool = False) -> None:
        """As the SDK's, minus its asking for a URL before `connect()`: a failure there escaped the retries above
        (the SDK's monitor then tried again every `ping_interval`, with no back-off). `connect()` asks itself."""
        acquired = False
        try:
            try:
                acquired = await asyncio.wait_for(self.connect_operation_lock.acquire(), timeout=5)
            except TimeoutError:
                acquired = False
            if force or (acquired and not await self.is_connected()):
                await self.connect()
        finally:
            if acquired:
                self.connect_operation_lock.release()

    async def _open(self) -> None:
        """One attempt: close the old connection first (Slack counts them), then dial a fresh URL."""
        old = self.current_session
        self.auto_reconnect_enabled = False
        if old is not None and not old.closed:
            with suppress(*_CONNECT_FAILURES):
                await old.close()
        if self.aiohttp_client_session.closed:
            self.aiohttp_client_session = aiohttp.ClientSession()
        if self.wss_uri is None:
            self.wss_uri = await self.issue_new_wss_url()
        url, self.wss_uri = self.wss_uri, None  # one use each
        session = await self.aiohttp_client_session.ws_connect(
            url,
            autoping=False,
            heartbeat=self.ping_interval,
            proxy=self._proxy_for(url),
            ssl=self._tls or True,
            # Closing a connection that stopped answering must not hold up the new one (aiohttp waits 10 s).
            timeout=aiohttp.ClientWSTimeout(ws_close=min(2.0, self.ping_interval)),
        )
        if self.closed:
            await session.close()
            return
        self.current_session = session
        self.auto_reconnect_enabled = self.default_auto_reconnect_enabled
        self.stale = False
        self.last_ping_pong_time = None
        log.info("Socket Mode: connected")
        await session.ping(f"sdk-ping-pong:{time.time()}".encode())
        if self.current_session_monitor is not None:
            self.current_session_monitor.cancel()
        self.current_session_monitor = asyncio.ensure_future(self.monitor_current_session())
        if self.message_receiver is not None:
            self.message_receiver.cancel()
        self.message_receiver = asyncio.ensure_future(self.receive_messages())

    async def _on_message(self, message: aiohttp.WSMessage) -> None:
        """Slack's own messages (`hello`, `disconnect`) are logged; envelopes go to the request listener."""
        try:
            data = json.loads(message.data)
        except (TypeError, ValueError):
            return
        if not isinstance(data, dict):
            return
        if data.get("type") == "disconnect":
            reason = str(data.get("reason", "unknown"))[:40]
            self._state.last_disconnect = reason
            self._crowded = self._crowded + 1 if reason == "too_many_websockets" else 0
            log.info("Socket Mode: Slack asked to reconnect (%s)", reason)
        elif "envelope_id" in data:
            self._crowded = 0  # this connection is one Slack uses
        elif data.get("type") == "hello":
            log.info("Socket Mode: hello (%s connection(s) for this app)", data.get("num_connections", "?"))

    async def close(self) -> None:
        """The SDK cancels its tasks without waiting for them; wait, so nothing outlives the shutdown."""
        self._state.set("closed")
        await super().close()  # type: ignore[no-untyped-call]
        tasks = [t for t in (self.message_processor, self.current_session_monitor, self.message_receiver) if t]
        await asyncio.gather(*tasks, return_exceptions=True)


class SocketTransport(AsyncSocketModeHandler):
    """Bolt's aiohttp Socket Mode handler, answering envelopes the way `POST /slack/events` answers requests:
    hostile payloads refused before Bolt sees them, and every envelope acknowledged (Slack would otherwise
    deliver again something that fails the same way)."""

    def __init__(
        self,
        *,
        app: AsyncApp,
        app_token: str,
        ping_interval: float,
        state: SocketState,
        proxy_for: Callable[[str], str | None] = lambda url: None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        # Not super().__init__: it would build the SDK's client, with its own session and tasks, only to drop it.
        self.app = app
        self.app_token = app_token
        self.state = state
        self.client = _Client(
            app_token=app_token,
            web_client=app.client,
            ping_interval=ping_interval,
            state=state,
            proxy_for=proxy_for,
            tls=tls,
        )
        self.client.socket_mode_request_listeners.append(self.handle)
        state.probe = self._open
        self._connecting: asyncio.Task[None] | None = None

    def _open(self) -> bool:
        session = self.client.current_session
        return session is not None and not session.closed

    def start(self) -> None:
        """Dial in the background: /healthz and BK-JOB's callbacks are served while Slack is out of reach."""
        self._connecting = asyncio.create_task(
            self.connect_async(),  # type: ignore[no-untyped-call]
            name="socket-mode-connect",
        )

    async def close(self) -> None:
        """Stop taking envelopes first: what is not acknowledged yet, Slack delivers again to another connection."""
        await self.close_async()  # type: ignore[no-untyped-call]
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)

    async def handle(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        token = REQUEST_ID.set(_SAFE_ID.sub("", str(req.envelope_id))[:64] or "-")
        try:
            await self._handle(client, req)
        finally:
            REQUEST_ID.reset(token)

    async def _handle(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        start = time.time()
        envelope_received(req.type, redelivered=bool(req.retry_attempt))
        if req.retry_attempt:
            log.info("Socket Mode: envelope delivered again (attempt %s, %.40s)", req.retry_attempt, req.retry_reason)
        body = req.payload
        problem = payload_problem(body) if isinstance(body, dict) else "the payload is not an object"
        if problem is not None:
            log.warning("%s in a Socket Mode envelope (%.20s); acknowledged, not handled", problem, req.type)
            await _ack(client, req)
            return
        try:
            response = await self.app.async_dispatch(
                AsyncBoltRequest(mode="socket_mode", body=body, headers=build_headers(req))
            )
        except _UNREADABLE as exc:
            log.warning("Bolt could not handle a Socket Mode envelope (%s); acknowledged", type(exc).__name__)
            await _ack(client, req)
            return
        if response.status != 200:
            log.warning("Socket Mode envelope answered %s by Bolt; acknowledged without a payload", response.status)
            await _ack(client, req)
            return
        await send_async_response(client, req, response, start)


async def _ack(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
    with suppress(*_CONNECT_FAILURES, ConnectionError):
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


def _describe(exc: BaseException) -> str:
    """The failure without URLs: a WebSocket URL carries its ticket, a proxy URL may carry a password."""
    response = getattr(exc, "response", None)
    if response is not None and hasattr(response, "get"):
        return f"{type(exc).__name__}: {response.get('error', '?')}"
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"handshake refused: HTTP {exc.status}"
    return type(exc).__name__
