"""A fake Slack Web API on a loopback port: records calls, keeps messages and modals, fails on demand."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.fakes.server import FakeServer
from bot.fakes.slack_rules import METHOD_SCOPES as _METHOD_SCOPES
from bot.fakes.slack_rules import RateTiers, manifest_scopes, message_problems, view_problems

__all__ = ["FakeSlack", "ResponseUrlPost", "SlackCall", "UploadedFile"]

JsonDict = dict[str, Any]

# slack_sdk form-encodes some methods; these fields then arrive as JSON strings.
_JSON_FIELDS = ("blocks", "view", "attachments")
TRIGGER_TTL = 3.0
"""Slack: a trigger_id is good for one views.open (or push) within 3 seconds of the interaction."""
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL = 30 * 60.0
"""Slack: a response_url takes at most 5 posts, within 30 minutes of the interaction."""


@dataclass(frozen=True)
class SlackCall:
    """One Web API call as the fake received it (failed and retried attempts included)."""

    method: str
    args: JsonDict
    token: str | None
    at: float = field(default_factory=time.monotonic, compare=False)  # when it arrived (time.monotonic)


# A typed key: aiohttp 3.14 warns on plain string keys (an error under the suite's filterwarnings).
_CALL_KEY = web.RequestKey("fake_slack_call", SlackCall)


@dataclass(frozen=True)
class ResponseUrlPost:
    """One POST to a `response_url` handed out by `FakeSlack.response_url()`."""

    url: str
    body: JsonDict
    refused: str | None = None  # why Slack refused it (`used_url`, `invalid_blocks`, …); None when shown


@dataclass
class _Injection:
    """A canned failure for the next `times` calls of one method."""

    times: int
    kind: str  # "fail" | "ratelimit" | "server_error" | "reset"
    error: str = ""
    retry_after: int = 1
    status: int = 500


# -- file uploads (files_upload_v2: files.getUploadURLExternal, the upload URL, files.completeUploadExternal) -----


@dataclass
class UploadedFile:
    """A file as the fake Slack holds it: declared by getUploadURLExternal, filled by the upload, shared by
    completeUploadExternal (`channel`, `thread_ts`, `title`, `initial_comment`)."""

    id: str
    filename: str
    length: int
    data: bytes | None = None
    channel: str | None = None
    thread_ts: str | None = None
    title: str | None = None
    initial_comment: str | None = None


class _FileUploads:
    """Slack's external upload flow, mixed into FakeSlack; the upload URL is this server's `/upload/<file id>`."""

    _ids: Iterator[int]
    _not_in_channel: set[str]
    _messages: dict[str, list[JsonDict]]
    _next_ts: Callable[[], str]
    _record: Callable[[Callable[[], None]], Awaitable[None]]

    @property
    def _files(self) -> dict[str, UploadedFile]:
        files: dict[str, UploadedFile] | None = self.__dict__.get("_uploaded_files")
        if files is None:
            files = self.__dict__["_uploaded_files"] = {}
        return files

    def files(self) -> list[UploadedFile]:
        """Every file shared so far (completeUploadExternal succeeded), oldest first."""
        return [f for f in self._files.values() if f.channel is not None]

    def _files_get_upload_url(self, request: web.Request, args: JsonDict) -> JsonDict:
        """`filename` and `length` (bytes) are required (Slack answers invalid_arguments without them)."""
        filename = str(args.get("filename") or "")
        try:
            length = int(args.get("length") or 0)
        except (TypeError, ValueError):
            length = 0
        if not filename or length < 1:
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._ids):08d}"
        self._files[file_id] = UploadedFile(id=file_id, filename=filename, length=length)
        root = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        return {"ok": True, "upload_url": f"{root}/upload/{file_id}", "file_id": file_id}

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        """The upload URL: the raw bytes, answered `OK - <size>` as text; an unknown file ID is 404."""
        upload = self._files.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404, text="file not found")
        data = await request.read()
        await self._record(lambda: setattr(upload, "data", data))
        return web.Response(text=f"OK - {len(data)}")

    def _files_complete_upload(self, request: web.Request, args: JsonDict) -> JsonDict:
        """Shares uploaded files into `channel_id` (a thread with `thread_ts`), as a message carrying them."""
        try:
            wanted = json.loads(str(args.get("files") or ""))
        except json.JSONDecodeError:
            return {"ok": False, "error": "invalid_arguments"}
        if not isinstance(wanted, list) or not wanted or not all(isinstance(f, dict) for f in wanted):
            return {"ok": False, "error": "invalid_arguments"}
        uploads = [self._files.get(str(f.get("id"))) for f in wanted]
        if any(u is None or u.data is None for u in uploads):
            return {"ok": False, "error": "file_not_found"}
        if any(u is not None and u.data is not None and len(u.data) != u.length for u in uploads):
            return {"ok": False, "error": "file_upload_size_mismatch"}
        channel = args.get("channel_id")
        if channel and channel in self._not_in_channel:
            return {"ok": False, "error": "not_in_channel"}
        shared = []
        for item, upload in zip(wanted, uploads, strict=True):
            assert upload is not None
            upload.title = str(item.get("title") or upload.filename)
            upload.channel, upload.thread_ts = channel or "", args.get("thread_ts")
            upload.initial_comment = args.get("initial_comment")
            shared.append({"id": upload.id, "name": upload.filename, "title": upload.title, "size": upload.length})
        if channel:
            message: JsonDict = {"type": "message", "user": "U0BOT", "ts": self._next_ts(), "files": shared}
            message["text"] = args.get("initial_comment") or ""
            if args.get("thread_ts"):
                message["thread_ts"] = args["thread_ts"]
            self._messages[channel].append(message)
        return {"ok": True, "files": shared}


class FakeSlack(FakeServer, _FileUploads):
    """The subset of Slack's Web API bkjob-bot uses, served over real HTTP on 127.0.0.1:0.

    Stateful where tests need to look back (messages per channel, modals by view ID), and every call is
    recorded so tests can wait for it instead of sleeping.
    """

    def __init__(
        self,
        *,
        token: str = "xoxb-test",
        users: Mapping[str, Mapping[str, Any]] | None = None,
        usergroups: Mapping[str, Sequence[str]] | None = None,
        channel_rate: float | None = None,
        scopes: Iterable[str] | None = None,
        rate_tiers: bool = True,
    ) -> None:
        """`channel_rate` (posts per second per channel) turns on Slack's chat.postMessage limit: a token bucket
        of one per channel, and 429 with an integer `Retry-After` when it is empty. Off by default.

        `scopes` are the bot token's scopes, by default exactly those `manifest.yml` asks for, so the manifest and
        the methods the bot calls cannot drift apart. `rate_tiers` answers 429 once a method's per-minute tier
        (Tier 2: 20, Tier 3: 50, Tier 4: 100) is used up, as Slack does."""
        super().__init__()
        self.token = token
        self.scopes = frozenset(scopes) if scopes is not None else manifest_scopes()
        self._tiers = RateTiers() if rate_tiers else None
        self.channel_rate = channel_rate
        self.throttled = 0  # chat.postMessage calls answered 429 by the channel limit
        self._next_post: dict[str, float] = {}
        self.users: dict[str, JsonDict] = {uid: dict(info) for uid, info in (users or {}).items()}
        self.usergroups: dict[str, list[str]] = {gid: list(m) for gid, m in (usergroups or {}).items()}
        self._calls: list[SlackCall] = []
        self._statuses: dict[int, tuple[int, bool]] = {}
        self._responses: list[ResponseUrlPost] = []
        self._messages: dict[str, list[JsonDict]] = defaultdict(list)
        self._views: dict[str, JsonDict] = {}
        self._triggers: dict[str, float] = {}  # trigger_id -> when it was handed out (monotonic)
        self._used_triggers: set[str] = set()
        self._trigger_views: dict[str, str] = {}
        self._closed_views: set[str] = set()
        self._response_uses: dict[str, list[float]] = {}  # rid -> [issued_at, posts so far]
        self._not_in_channel: set[str] = set()
        self._response_ids: set[str] = set()
        self._response_origins: dict[str, tuple[str, str]] = {}  # rid -> (channel, ts) of the clicked message
        self._injections: dict[str, list[_Injection]] = defaultdict(list)
        self._ts = itertools.count(100)
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._call_observers: list[Callable[[SlackCall, JsonDict], None]] = []
        self._served: dict[str, Callable[[str | None, JsonDict], JsonDict]] = {}
        self._response_observers: list[Callable[[ResponseUrlPost], None]] = []
        self._down = False

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _application(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response/{rid}", self._handle_response_url)
        app.router.add_post("/upload/{file_id}", self._handle_upload)
        return app

    @property
    def base_url(self) -> str:
        """What `AsyncWebClient(base_url=...)` wants: note the trailing slash."""
        return f"{self.origin}/api/"

    # -- test setup and failure injection ----------------------------------------------------------------

    def not_in_channel(self, channel_id: str) -> None:
        """Posting into `channel_id` now fails as if the bot had not been invited."""
        self._not_in_channel.add(channel_id)

    def join_channel(self, channel_id: str) -> None:
        self._not_in_channel.discard(channel_id)

    def lift_rate_tiers(self) -> None:
        """No per-minute tiers from now on, for tests whose volume is about something else (bursts of hundreds)."""
        self._tiers = None

    def fail_next(self, method: str, error: str = "internal_error", times: int = 1) -> None:
        self._injections[method].append(_Injection(times=times, kind="fail", error=error))

    def rate_limit_next(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        self._injections[method].append(_Injection(times=times, kind="ratelimit", retry_after=retry_after))

    def reset_next(self, method: str, times: int = 1) -> None:
        """Drop the connection without an answer, as a load balancer or a flaky network would."""
        self._injections[method].append(_Injection(times=times, kind="reset"))

    def go_down(self) -> None:
        """Slack's Web API cannot be reached (an outage, a proxy or firewall in the way): every call's connection is
        dropped without an answer, recorded all the same, until `come_back`. Response URLs are another host
        (hooks.slack.com) and keep answering."""
        self._down = True

    def come_back(self) -> None:
        self._down = False

    def server_error_next(self, method: str, times: int = 1, status: int = 500) -> None:
        self._injections[method].append(_Injection(times=times, kind="server_error", status=status))

    def serve(self, method: str, handler: Callable[[str | None, JsonDict], JsonDict]) -> None:
        """Answer `method` with `handler(token, args)`, which checks the token itself: apps.connections.open takes
        an app-level token, not the bot token (served by bot.fakes.socket_mode)."""
        self._served[method] = handler

    def response_url(self, *, age: float = 0.0, channel: str | None = None, message_ts: str | None = None) -> str:
        """A fresh response URL, as Slack puts in slash-command and interaction payloads (`age`: handed out that
        many seconds ago, to test its 30-minute life without waiting). `channel` and `message_ts` name the message
        the interaction came from (a button's): a post with `replace_original` or `delete_original` replaces or
        deletes that message, as Slack does."""
        rid = f"R{next(self._ids):06d}"
        self._response_ids.add(rid)
        self._response_uses[rid] = [time.monotonic() - age, 0]
        if channel is not None and message_ts is not None:
            self._response_origins[rid] = (channel, message_ts)
        return f"{self.origin}/response/{rid}"

    def new_trigger_id(self, *, age: float = 0.0, view_id: str | None = None) -> str:
        """A trigger_id as an interaction payload carries it, good for one views.open within 3 seconds (`age`:
        handed out that many seconds ago); `view_id` when the interaction came from inside that modal (views.push
        stacks onto it). Slack refuses trigger IDs it never issued."""
        trigger = f"{next(self._ids)}.1234.abcdef"
        self._triggers[trigger] = time.monotonic() - age
        if view_id is not None:
            self._trigger_views[trigger] = view_id
        return trigger

    def close_view(self, view_id: str) -> None:
        """The person closed the modal (Cancel, the X, or Escape): Slack no longer knows the view."""
        self._closed_views.add(view_id)

    def observe(
        self,
        *,
        call: Callable[[SlackCall, JsonDict], None] | None = None,
        response: Callable[[ResponseUrlPost], None] | None = None,
    ) -> None:
        """Be told of every Web API call once it is answered (with the JSON answer; `{}` when the answer was
        not JSON), and of every response_url POST: the demo simulator renders the channel from these."""
        if call is not None:
            self._call_observers.append(call)
        if response is not None:
            self._response_observers.append(response)

    # -- queries -----------------------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[SlackCall]:
        return [c for c in self._calls if method is None or c.method == method]

    def status_of(self, call: SlackCall) -> int | None:
        """The HTTP status the call was answered with (429 when rate limited); None while unanswered."""
        answered = self._statuses.get(id(call))
        return answered[0] if answered else None

    def accepted(self, call: SlackCall) -> bool:
        """Whether Slack answered the call `ok: true` (a call that was refused or is still in flight: False)."""
        answered = self._statuses.get(id(call))
        return bool(answered and answered[1])

    def messages(self, channel: str) -> list[JsonDict]:
        """Every message posted to `channel`, top-level and replies, in posting order (live dicts)."""
        return list(self._messages.get(channel, []))

    def message(self, channel: str, ts: str) -> JsonDict | None:
        return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    def thread(self, channel: str, ts: str) -> list[JsonDict]:
        """Replies in the thread under `ts` (not the parent itself)."""
        return [m for m in self._messages.get(channel, []) if m.get("thread_ts") == ts and m["ts"] != ts]

    def view(self, view_id: str) -> JsonDict | None:
        return self._views.get(view_id)

    def views(self) -> list[JsonDict]:
        """Every modal opened so far, oldest first."""
        return list(self._views.values())

    def responses(self) -> list[ResponseUrlPost]:
        return list(self._responses)

    # -- waiting -----------------------------------------------------------------------------------------

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[SlackCall], bool] | None = None,
        timeout: float = 60.0,  # noqa: ASYNC109 - an assertion deadline, not a cancellation scope
        count: int = 1,
    ) -> list[SlackCall]:
        """Wait until `count` calls of `method` match `predicate`; returns all matching calls so far."""

        def matching() -> list[SlackCall]:
            return [c for c in self.calls(method) if predicate is None or predicate(c)]

        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: len(matching()) >= count)
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {count} matching {method!r} call(s); "
                    f"calls seen: {self._calls!r}"
                ) from None
            return matching()

    async def wait_for_response(
        self,
        predicate: Callable[[ResponseUrlPost], bool] | None = None,
        timeout: float = 60.0,  # noqa: ASYNC109 - an assertion deadline, not a cancellation scope
        count: int = 1,
    ) -> list[ResponseUrlPost]:
        """Wait until `count` response_url POSTs match `predicate`; returns all matching so far."""

        def matching() -> list[ResponseUrlPost]:
            return [r for r in self._responses if predicate is None or predicate(r)]

        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: len(matching()) >= count)
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {count} response_url POST(s); seen: {self._responses!r}"
                ) from None
            return matching()

    # -- HTTP --------------------------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        response = await self._answer_api(request)
        call = request.get(_CALL_KEY)
        if isinstance(call, SlackCall) and isinstance(response, web.Response):
            ok = response.status == 200 and b'"ok": true' in (response.body or b"")  # type: ignore[operator]
            answered = (response.status, ok)
            # Waiters may be waiting on the answer (`accepted`), not only on the call's arrival.
            await self._record(lambda: self._statuses.__setitem__(id(call), answered))
        if isinstance(call, SlackCall) and self._call_observers:
            answer: Any = None
            if isinstance(response, web.Response) and response.content_type == "application/json" and response.body:
                try:
                    answer = json.loads(response.text or "")
                except json.JSONDecodeError:
                    answer = None
            for observer in self._call_observers:
                observer(call, answer if isinstance(answer, dict) else {})
        return response

    async def _answer_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args: JsonDict = dict(request.query)
        if request.content_type == "application/json":
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                return web.json_response({"ok": False, "error": "invalid_json"})
            if isinstance(body, dict):
                args.update(body)
        elif request.method == "POST":
            args.update(await request.post())
        for key in _JSON_FIELDS:
            if isinstance(args.get(key), str):
                try:
                    args[key] = json.loads(args[key])
                except json.JSONDecodeError:
                    pass

        token = args.pop("token", None)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth.removeprefix("Bearer ").strip()

        call = SlackCall(method=method, args=args, token=token)
        request[_CALL_KEY] = call
        await self._record(lambda: self._calls.append(call))

        if self._down and request.transport is not None:
            request.transport.abort()
            raise asyncio.CancelledError  # nothing answers; aiohttp drops the request
        injected = self._take_injection(method)
        if injected is not None:
            if injected.kind == "ratelimit":
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(injected.retry_after)},
                )
            if injected.kind == "server_error":
                return web.Response(status=injected.status, text="<html>server error</html>", content_type="text/html")
            if injected.kind == "reset" and request.transport is not None:
                request.transport.abort()
                raise asyncio.CancelledError  # the answer can no longer be sent; aiohttp drops the request
        if method in self._served:
            answer = _error(injected.error) if injected is not None else None  # kind == "fail"
            return answer or web.json_response(self._served[method](token, args))
        if token != self.token:
            return _error("invalid_auth")
        if method in self._methods and (needed := _METHOD_SCOPES.get(method)) and needed not in self.scopes:
            return web.json_response(
                {"ok": False, "error": "missing_scope", "needed": needed, "provided": ",".join(sorted(self.scopes))}
            )
        if self._tiers is not None and (tier_wait := self._tiers.wait(method, time.monotonic())):
            self.throttled += 1
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(tier_wait)}
            )
        if method == "chat.postMessage" and (wait := self._channel_wait(str(args.get("channel") or ""))) > 0:
            self.throttled += 1
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(math.ceil(wait))}
            )
        if injected is not None:  # kind == "fail"
            return _error(injected.error)

        handler = self._methods.get(method)
        if handler is None:
            return _error("unknown_method")
        return web.json_response(handler(self, request, args))

    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        rid = request.match_info["rid"]
        if rid not in self._response_ids:
            return web.Response(status=404, text="no_active_hooks")
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        uses = self._response_uses.setdefault(rid, [time.monotonic(), 0])
        if time.monotonic() - uses[0] > RESPONSE_URL_TTL:
            refusal = "expired_url"
        elif uses[1] >= RESPONSE_URL_USES:
            refusal = "used_url"
        else:
            refusal = None
        if refusal is None and isinstance(body, dict):
            problem = message_problems(body.get("blocks"), body.get("text"))
            if problem is None and not (body.get("text") or body.get("blocks") or body.get("delete_original")):
                problem = ("no_text", [])
            if problem is not None:
                refusal = problem[0]
        if refusal is None:
            uses[1] += 1
        post = ResponseUrlPost(
            url=str(request.url), body=body if isinstance(body, dict) else {"_raw": body}, refused=refusal
        )
        await self._record(lambda: self._responses.append(post))
        if refusal is not None:
            return web.Response(status=400 if refusal not in ("expired_url", "used_url") else 404, text=refusal)
        self._change_original(rid, post.body)
        for observer in self._response_observers:
            observer(post)
        return web.Response(text="ok")

    def _change_original(self, rid: str, body: JsonDict) -> None:
        """`delete_original` deletes the message the interaction came from; `replace_original` replaces it whole
        (text, blocks and attachments: what the post leaves out is gone). Slack takes the flags as booleans or as
        the strings "true"/"false"; without them the post is a new (ephemeral) message and the original stays."""
        origin = self._response_origins.get(rid)
        original = self.message(*origin) if origin is not None else None
        if origin is None or original is None:
            return
        if _flag(body.get("delete_original")):
            self._messages[origin[0]].remove(original)
        elif _flag(body.get("replace_original")):
            for key in ("text", "blocks", "attachments"):
                if key in body:
                    original[key] = body[key]
                else:
                    original.pop(key, None)
            original.setdefault("text", "")
            original["edited"] = {"user": "U0BOT", "ts": self._next_ts()}

    async def _record(self, append: Callable[[], None]) -> None:
        async with self._changed:
            append()
            self._changed.notify_all()

    def _take_injection(self, method: str) -> _Injection | None:
        queue = self._injections.get(method)
        if not queue:
            return None
        injected = queue[0]
        injected.times -= 1
        if injected.times <= 0:
            queue.pop(0)
        return injected

    def _channel_wait(self, channel: str) -> float:
        """Seconds until `channel` may be posted in again (0: now, and the token is taken)."""
        if not self.channel_rate or not channel:
            return 0.0
        now = time.monotonic()
        due = self._next_post.get(channel, 0.0)
        if now < due:
            return due - now
        self._next_post[channel] = now + 1.0 / self.channel_rate
        return 0.0

    def _next_ts(self) -> str:
        n = next(self._ts)
        return f"{1700000000 + n // 1_000_000}.{n % 1_000_000:06d}"

    # -- methods: each takes the merged args and returns the JSON body ---------------------------------

    def _auth_test(self, request: web.Request, args: JsonDict) -> JsonDict:
        return {
            "ok": True,
            "url": "https://fake.slack.com/",
            "team": "T",
            "user": "bkjob",
            "team_id": "T0TEAM",
            "user_id": "U0BOT",
            "bot_id": "B0BOT",
        }

    def _chat_post_message(self, request: web.Request, args: JsonDict) -> JsonDict:
        channel = args.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self._not_in_channel:
            return {"ok": False, "error": "not_in_channel"}
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            return {"ok": False, "error": "no_text"}
        if (refusal := _message_refusal(args)) is not None:
            return refusal
        message: JsonDict = {
            "type": "message",
            "user": "U0BOT",
            "bot_id": "B0BOT",
            "ts": self._next_ts(),
            "text": args.get("text", ""),
        }
        for key in ("blocks", "attachments", "thread_ts", "metadata"):
            if args.get(key) is not None:
                message[key] = args[key]
        if args.get("thread_ts") and args.get("reply_broadcast") in (True, "true", "1"):
            # chat.postMessage: with thread_ts, the reply is also shown to everyone in the channel
            message["subtype"] = "thread_broadcast"
        self._messages[channel].append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": dict(message)}

    def _chat_update(self, request: web.Request, args: JsonDict) -> JsonDict:
        channel, ts = args.get("channel", ""), args.get("ts", "")
        message = self.message(channel, ts)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if (refusal := _message_refusal(args)) is not None:
            return refusal
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in args:
                message[key] = args[key]
        message["edited"] = {"user": "U0BOT", "ts": self._next_ts()}
        return {"ok": True, "channel": channel, "ts": ts, "text": message.get("text", ""), "message": message}

    def _chat_post_ephemeral(self, request: web.Request, args: JsonDict) -> JsonDict:
        channel = args.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self._not_in_channel:
            return {"ok": False, "error": "not_in_channel"}
        if not args.get("user"):
            return {"ok": False, "error": "user_not_found"}
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            return {"ok": False, "error": "no_text"}
        if (refusal := _message_refusal(args)) is not None:
            return refusal
        return {"ok": True, "message_ts": self._next_ts()}

    def _chat_get_permalink(self, request: web.Request, args: JsonDict) -> JsonDict:
        channel, ts = str(args.get("channel") or ""), str(args.get("message_ts") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        message = self.message(channel, ts)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        link = f"https://fake-workspace.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        if message.get("thread_ts") and message["thread_ts"] != ts:
            link += f"?thread_ts={message['thread_ts']}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": link}

    def _open_or_push(self, args: JsonDict, previous_view_id: str | None) -> JsonDict:
        trigger_id = args.get("trigger_id")
        if not trigger_id:
            return {"ok": False, "error": "invalid_arguments"}
        issued = self._triggers.get(str(trigger_id))
        if issued is None:
            return {"ok": False, "error": "invalid_trigger_id"}
        if trigger_id in self._used_triggers:
            return {"ok": False, "error": "exchanged_trigger_id"}
        if time.monotonic() - issued > TRIGGER_TTL:
            return {"ok": False, "error": "expired_trigger_id"}
        if previous_view_id is not None and (
            previous_view_id not in self._views or previous_view_id in self._closed_views
        ):
            return {"ok": False, "error": "not_found"}
        if problems := view_problems(args.get("view")):
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": problems}}
        self._used_triggers.add(trigger_id)
        view_id = f"V{next(self._ids):08d}"
        stored = self._store_view(view_id, args["view"], root_view_id=view_id)
        stored["previous_view_id"] = previous_view_id
        return {"ok": True, "view": stored}

    def _views_open(self, request: web.Request, args: JsonDict) -> JsonDict:
        return self._open_or_push(args, previous_view_id=None)

    def _views_push(self, request: web.Request, args: JsonDict) -> JsonDict:
        # views.push stacks onto the modal the trigger's interaction came from.
        return self._open_or_push(args, previous_view_id=self._trigger_views.get(str(args.get("trigger_id")), ""))

    def _views_update(self, request: web.Request, args: JsonDict) -> JsonDict:
        view_id = args.get("view_id")
        if not view_id and args.get("external_id"):
            view_id = next((v["id"] for v in self._views.values() if v.get("external_id") == args["external_id"]), None)
        current = self._views.get(view_id or "")
        if current is None or current["id"] in self._closed_views:
            return {"ok": False, "error": "not_found"}
        if args.get("hash") and args["hash"] != current["hash"]:
            return {"ok": False, "error": "hash_conflict"}
        if problems := view_problems(args.get("view")):
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": problems}}
        stored = self._store_view(current["id"], args["view"], root_view_id=current["root_view_id"])
        stored["previous_view_id"] = current.get("previous_view_id")
        return {"ok": True, "view": stored}

    def _store_view(self, view_id: str, view: JsonDict, *, root_view_id: str) -> JsonDict:
        stored: JsonDict = {
            "id": view_id,
            "team_id": "T0TEAM",
            "app_id": "A0APP",
            "bot_id": "B0BOT",
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "state": {"values": {}},
            **view,
            "hash": f"{1700000000 + next(self._ids)}.{next(self._ids):08x}",
            "root_view_id": root_view_id,
        }
        self._views[view_id] = stored
        return stored

    def _users_info(self, request: web.Request, args: JsonDict) -> JsonDict:
        user_id = args.get("user", "")
        info = self.users.get(user_id)
        if info is None:
            return {"ok": False, "error": "user_not_found"}
        real_name = info.get("real_name", user_id)
        profile = {"real_name": real_name, "display_name": info.get("display_name", real_name)}
        if "users:read.email" in self.scopes:  # Slack leaves the e-mail out without this scope
            profile["email"] = info.get("email")
        user = {
            "id": user_id,
            "team_id": "T0TEAM",
            "name": info.get("name", user_id.lower()),
            "real_name": real_name,
            "deleted": info.get("deleted", False),
            "is_bot": info.get("is_bot", False),
            # Guests: multi-channel (restricted) and single-channel (ultra restricted), as users.info reports them.
            "is_restricted": info.get("is_restricted", False),
            "is_ultra_restricted": info.get("is_ultra_restricted", False),
            "tz": info.get("tz", "Asia/Shanghai"),
            "profile": profile,
        }
        return {"ok": True, "user": user}

    def _usergroups_users_list(self, request: web.Request, args: JsonDict) -> JsonDict:
        members = self.usergroups.get(args.get("usergroup", ""))
        if members is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(members)}

    def _conversations_info(self, request: web.Request, args: JsonDict) -> JsonDict:
        channel = args.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        return {
            "ok": True,
            "channel": {
                "id": channel,
                "name": channel.lower(),
                "is_channel": channel.startswith("C"),
                "is_private": channel.startswith("G"),
                "is_im": channel.startswith("D"),
                "is_member": channel not in self._not_in_channel,
                "is_archived": False,
            },
        }

    _methods: dict[str, Callable[[FakeSlack, web.Request, JsonDict], JsonDict]] = {
        "auth.test": _auth_test,
        "chat.postMessage": _chat_post_message,
        "chat.update": _chat_update,
        "chat.postEphemeral": _chat_post_ephemeral,
        "chat.getPermalink": _chat_get_permalink,
        "views.open": _views_open,
        "views.push": _views_push,
        "views.update": _views_update,
        "users.info": _users_info,
        "usergroups.users.list": _usergroups_users_list,
        "conversations.info": _conversations_info,
        "files.getUploadURLExternal": _FileUploads._files_get_upload_url,
        "files.completeUploadExternal": _FileUploads._files_complete_upload,
    }


def _error(error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error})


def _message_refusal(args: JsonDict) -> JsonDict | None:
    """Slack checks every message's blocks (slack_sdk's models plus documented limits) and its text's length."""
    problem = message_problems(args.get("blocks"), args.get("text"))
    if problem is None:
        return None
    error, details = problem
    return {"ok": False, "error": error, "errors": details, "response_metadata": {"messages": details}}


def _flag(value: Any) -> bool:
    """A response_url flag as Slack reads it: `true` or the string "true"."""
    return value is True or (isinstance(value, str) and value.lower() == "true")
