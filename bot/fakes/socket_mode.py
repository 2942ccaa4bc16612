"""A fake of Slack's Socket Mode on a loopback WebSocket: URLs from apps.connections.open, envelopes, acks,
redeliveries and `disconnect` messages, as Slack's servers speak them."""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from bot.fakes.server import FakeServer
from bot.fakes.slack import FakeSlack

__all__ = ["Connection", "Envelope", "FakeSocketMode"]

JsonDict = dict[str, Any]
MAX_CONNECTIONS = 10
"""Slack allows an app up to 10 open connections and spreads envelopes over them."""


@dataclass
class Connection:
    """One WebSocket an app opened; `answers_pings` False makes it stale (Slack stopped answering)."""

    id: int
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    answers_pings: bool = True
    draining: bool = False  # told to disconnect: no new envelopes go to it
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Envelope:
    """One envelope and what became of it: every delivery (connection ID, retry_attempt) and the ack."""

    envelope_id: str
    type: str
    payload: JsonDict
    accepts_response_payload: bool
    deliveries: list[tuple[int, int]] = field(default_factory=list)
    ack: JsonDict | None = None
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    given_up: bool = False
    lose_acks: int = 0  # the next n acks of this envelope are lost (beside the app-wide `FakeSocketMode.lose_acks`)
    # Set when the current delivery's ack was lost: Slack had already stopped waiting, so it delivers again now
    # (an event, not a race between the app's ack and a short `ack_timeout` on a loaded machine).
    missed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def response_payload(self) -> JsonDict | None:
        """What the app answered with its ack (e.g. `{"response_action": "errors", ...}`), or None."""
        payload = (self.ack or {}).get("payload")
        return payload if isinstance(payload, dict) else None

    async def wait_acked(self, timeout: float = 60.0) -> Envelope:  # noqa: ASYNC109 - an assertion deadline
        try:
            async with asyncio.timeout(timeout):
                await self.acked.wait()
        except TimeoutError:
            deliveries = self.deliveries
            raise AssertionError(f"envelope {self.envelope_id} not acknowledged; deliveries {deliveries}") from None
        return self


class FakeSocketMode(FakeServer):
    """Slack's Socket Mode servers for one app, on 127.0.0.1:0, beside a `FakeSlack` that answers
    apps.connections.open for them.

    - apps.connections.open takes only the app-level token (`not_allowed_token_type` for a bot token,
      `invalid_auth` for another) and returns a `ws://` URL whose ticket is good for one connection.
    - Each connection gets `hello` first; envelopes are spread over open connections in turn.
    - An envelope not acknowledged (`{"envelope_id": ...}`) within `ack_timeout`, or whose ack is lost
      (`lose_acks`: it came after Slack stopped waiting), is delivered again, on another open connection when there
      is one, with `retry_attempt` and `retry_reason`, up to `max_retries` times; then
      Slack gives up.
    - Pings are answered with pongs unless the connection was made stale; `disconnect` messages are sent on demand.
    """

    schemes = ("ws", "wss")

    def __init__(
        self,
        *,
        slack: FakeSlack,
        app_token: str = "xapp-1-A0BKJOB-1-test",
        app_id: str = "A0BKJOB",
        ack_timeout: float = 3.0,
        max_retries: int = 3,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: serve `wss://` with this server context, as Slack does (plain `ws://` by default)."""
        super().__init__()
        self.slack = slack
        self.app_token = app_token
        self.app_id = app_id
        self.ack_timeout = ack_timeout
        self.max_retries = max_retries
        self.tls = tls
        self.max_connections = MAX_CONNECTIONS
        self.opened = 0  # apps.connections.open calls that returned a URL
        self.lose_acks = 0  # the next n acks are lost on the way (or arrive after Slack stopped waiting)
        self.envelopes: list[Envelope] = []
        self.received: list[JsonDict] = []  # every message apps sent (acks)
        self._connections: dict[int, Connection] = {}
        self._tickets: set[str] = set()
        self._ids = itertools.count(1)
        self._turn = itertools.count()
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/link/", self._link)
        return app

    async def start(self) -> None:
        await super().start()
        self.slack.serve("apps.connections.open", self._connections_open)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in list(self._connections.values()):
            await conn.ws.close()
        await super().close()

    # -- queries and waiting -----------------------------------------------------------------------------

    def connections(self) -> list[Connection]:
        return [c for c in self._connections.values() if not c.ws.closed]

    async def wait_connections(
        self,
        count: int,
        *,
        opened: int | None = None,
        timeout: float = 60.0,  # noqa: ASYNC109 - an assertion deadline, not a cancellation scope
    ) -> list[Connection]:
        """Wait until exactly `count` connections are open (and `opened` URLs were issued in all)."""

        def done() -> bool:
            return len(self.connections()) == count and (opened is None or self.opened >= opened)

        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(done)
            except TimeoutError:
                raise AssertionError(
                    f"timed out waiting for {count} connection(s) (opened {opened}); "
                    f"have {len(self.connections())}, opened {self.opened}"
                ) from None
        return self.connections()

    # -- what Slack sends --------------------------------------------------------------------------------

    def deliver(
        self, type_: str, payload: Mapping[str, Any], *, accepts_response_payload: bool, lose_acks: int = 0
    ) -> Envelope:
        """Start delivering an envelope (`slash_commands`, `interactive`, `events_api`); returns at once.
        `lose_acks`: this envelope's first n acks are lost, so it is delivered n more times."""
        envelope = Envelope(
            envelope_id=str(uuid.uuid4()),
            type=type_,
            payload=dict(payload),
            accepts_response_payload=accepts_response_payload,
            lose_acks=lose_acks,
        )
        self.envelopes.append(envelope)
        self._spawn(self._deliver(envelope))
        return envelope

    async def slash_command(self, payload: Mapping[str, Any]) -> Envelope:
        """Deliver a slash command and wait for its ack."""
        return await self.deliver("slash_commands", payload, accepts_response_payload=True).wait_acked()

    async def interactive(self, payload: Mapping[str, Any]) -> Envelope:
        """Deliver a block action or a view submission and wait for its ack (a view submission's ack may carry a
        `response_action`; a block action's may not)."""
        accepts = payload.get("type") in ("view_submission", "view_closed", "block_suggestion")
        return await self.deliver("interactive", payload, accepts_response_payload=accepts).wait_acked()

    async def disconnect(self, reason: str, *, connection: Connection | None = None, close_after: float = 5.0) -> None:
        """Send `{"type": "disconnect", "reason": ...}` (`warning`, `refresh_requested`, `link_disabled`,
        `too_many_websockets`); Slack then sends nothing more on it and closes it after `close_after` seconds if
        the app has not left by then."""
        for conn in [connection] if connection else self.connections():
            conn.draining = True
            message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-socket-mode"}}
            await conn.ws.send_str(json.dumps(message))
            self._spawn(self._close_later(conn, close_after))

    def drop(self, connection: Connection | None = None) -> None:
        """Cut connections without a close frame, as a proxy or a NAT timing out does."""
        for conn in [connection] if connection else self.connections():
            if isinstance(conn.transport, asyncio.Transport):
                conn.transport.abort()

    def go_stale(self, connection: Connection | None = None) -> None:
        """Stop answering pings: the connection looks open but nothing comes back."""
        for conn in [connection] if connection else self.connections():
            conn.answers_pings = False

    # -- HTTP and WebSocket ------------------------------------------------------------------------------

    def _connections_open(self, token: str | None, args: JsonDict) -> JsonDict:
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token.startswith(("xoxb-", "xoxp-")):
            return {"ok": False, "error": "not_allowed_token_type"}
        if token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        self.opened += 1
        return {"ok": True, "url": f"{self.origin}/link/?ticket={ticket}&app_id={self.app_id}"}

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid or used ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        conn = Connection(id=next(self._ids), ws=ws, transport=request.transport)
        async with self._changed:
            self._connections[conn.id] = conn
            self._changed.notify_all()
        try:
            if len(self.connections()) > self.max_connections:
                await ws.send_str(json.dumps({"type": "disconnect", "reason": "too_many_websockets"}))
                await ws.close()
                return ws
            await ws.send_str(json.dumps(self._hello()))
            await self._read(conn)
        finally:
            conn.closed.set()
            async with self._changed:
                self._connections.pop(conn.id, None)
                self._changed.notify_all()
        return ws

    async def _read(self, conn: Connection) -> None:
        async for msg in conn.ws:
            if msg.type == WSMsgType.PING:
                if conn.answers_pings:
                    await conn.ws.pong(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await self._on_text(msg.data)

    async def _on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            return
        if not isinstance(message, dict):
            return
        async with self._changed:
            self.received.append(message)
            self._changed.notify_all()
        envelope = next((e for e in self.envelopes if e.envelope_id == message.get("envelope_id")), None)
        if envelope is None or envelope.acked.is_set():
            return
        if envelope.lose_acks > 0 or self.lose_acks > 0:
            if envelope.lose_acks > 0:
                envelope.lose_acks -= 1
            else:
                self.lose_acks -= 1
            envelope.missed.set()
            return
        if message.get("payload") is not None and not envelope.accepts_response_payload:
            return  # Slack ignores a payload where none is accepted; the ack itself still counts
        envelope.ack = message
        envelope.acked.set()

    def _hello(self) -> JsonDict:
        return {
            "type": "hello",
            "num_connections": len(self.connections()),
            "debug_info": {"host": "fake-socket-mode", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }

    async def _deliver(self, envelope: Envelope) -> None:
        for attempt in range(self.max_retries + 1):
            conn = await self._next_connection(envelope)
            message: JsonDict = {
                "envelope_id": envelope.envelope_id,
                "type": envelope.type,
                "payload": envelope.payload,
                "accepts_response_payload": envelope.accepts_response_payload,
            }
            if attempt:
                message |= {"retry_attempt": attempt, "retry_reason": "timeout"}
            envelope.deliveries.append((conn.id, attempt))
            envelope.missed.clear()
            try:
                await conn.ws.send_str(json.dumps(message))
            except ConnectionError:
                continue
            if await self._acked_in_time(envelope):
                return
        envelope.given_up = True

    async def _acked_in_time(self, envelope: Envelope) -> bool:
        """Wait for the ack, up to `ack_timeout`; a lost ack (`lose_acks`) ends the wait at once, as one that came
        after Slack stopped waiting."""
        waits = [asyncio.ensure_future(envelope.acked.wait()), asyncio.ensure_future(envelope.missed.wait())]
        try:
            await asyncio.wait(waits, timeout=self.ack_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        return envelope.acked.is_set()

    async def _next_connection(self, envelope: Envelope) -> Connection:
        """The next open, non-draining connection in turn, another than the last one tried for this envelope when
        there is one; waits for one (Slack holds envelopes a while)."""
        async with self._changed:
            await self._changed.wait_for(lambda: any(not c.draining for c in self.connections()))
            ready = [c for c in self.connections() if not c.draining]
            tried = envelope.deliveries[-1][0] if envelope.deliveries else None
            ready = [c for c in ready if c.id != tried] or ready
            return ready[next(self._turn) % len(ready)]

    async def _close_later(self, conn: Connection, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await conn.closed.wait()
        except TimeoutError:
            await conn.ws.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
