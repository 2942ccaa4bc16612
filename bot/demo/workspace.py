"""The simulated Slack workspace as the page shows it: channels, threads, ephemerals, modals and a call log."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.demo.catalogue import CHANNELS, GROUPS, USERS
from bot.fakes import BkRequest, FakeBkJob, FakeSlack, ResponseUrlPost, SlackCall

__all__ = ["Modal", "Workspace"]

JsonDict = dict[str, Any]

_MAX_LOG = 500
_SECRET_KEYS = ("secret", "token", "password")
# What Slack itself shows when an app does not answer a view submission properly.
_TROUBLE = "We had some trouble connecting. Try again?"


@dataclass
class Modal:
    """One open view; `errors` are the inline ones from the last `response_action: errors` (by block_id)."""

    view: JsonDict
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.view.get("id", ""))


class Workspace:
    """Everything here is derived from what the bot sent to the fakes, so the page shows exactly that.

    FakeSlack keeps the channel messages (chat.update edits them in place); this adds what Slack keeps per
    person (ephemerals, open modals) and a log of every call, and a version to long-poll on.
    """

    def __init__(self, *, slack: FakeSlack, bk: FakeBkJob) -> None:
        self._slack = slack
        self._seq = itertools.count(1)
        self._order: dict[tuple[str, str], int] = {}
        self._ephemerals: list[JsonDict] = []
        self._modals: dict[str, list[Modal]] = defaultdict(list)
        self._triggers: dict[str, str] = {}
        self._response_urls: dict[str, tuple[str, str]] = {}
        self._log: list[JsonDict] = []
        self._log_ids = itertools.count(1)
        self._version = 0
        self._changed = asyncio.Event()
        slack.observe(call=self._on_call, response=self._on_response)
        bk.observe(request=self._on_bk_request)

    # -- what the simulator hands out when it plays Slack -------------------------------------------------

    def trigger_id(self, user: str) -> str:
        """Slack ties a trigger to the person who acted: views.open with it opens the modal for them."""
        trigger = self._slack.new_trigger_id()
        self._triggers[trigger] = user
        return trigger

    def response_url(self, channel: str, user: str) -> str:
        """Ephemeral answers to this URL are shown to `user` in `channel` only."""
        url = self._slack.response_url()
        self._response_urls[url] = (channel, user)
        return url

    def tell(self, channel: str, user: str, text: str) -> None:
        """What Slack itself says to one person (Slackbot), e.g. for a command the bot does not own."""
        self._add_ephemeral(channel=channel, user=user, text=text, blocks=None, source="Slackbot")

    def note(self, direction: str, title: str, detail: Any, *, ok: bool = True) -> None:
        """One line in the page's call log."""
        self._log.append(
            {
                "id": next(self._log_ids),
                "at": time.time(),
                "direction": direction,
                "title": title,
                "detail": _redact(detail),
                "ok": ok,
            }
        )
        del self._log[:-_MAX_LOG]
        self._bump()

    # -- modals -------------------------------------------------------------------------------------------

    def modal(self, user: str) -> Modal | None:
        stack = self._modals.get(user)
        return stack[-1] if stack else None

    def submitted(self, user: str, view_id: str, status: int, answer: Mapping[str, Any] | None) -> None:
        """Apply the bot's answer to a view_submission as Slack does (close, errors, update, push, clear)."""
        stack = self._modals.get(user, [])
        current = next((m for m in stack if m.id == view_id), None)
        if current is None:
            return
        action = (answer or {}).get("response_action")
        if status != 200:
            current.errors = {"": _TROUBLE}
        elif action == "errors":
            current.errors = {str(k): str(v) for k, v in dict((answer or {}).get("errors") or {}).items()}
        elif action == "update" and isinstance((answer or {}).get("view"), dict):
            current.view = {**dict((answer or {})["view"]), "id": current.id, "hash": f"local.{next(self._seq)}"}
            current.errors = {}
        elif action == "push" and isinstance((answer or {}).get("view"), dict):
            stack.append(Modal(view={**dict((answer or {})["view"]), "id": f"VLOCAL{next(self._seq)}"}))
        elif action == "clear":
            for modal in stack:
                self._slack.close_view(modal.id)
            stack.clear()
        else:
            self._slack.close_view(current.id)
            stack.remove(current)
        self._bump()

    def close(self, user: str, view_id: str) -> None:
        """The person closed the modal: Slack forgets the view, so a late views.update answers `not_found`."""
        stack = self._modals.get(user, [])
        self._slack.close_view(view_id)
        self._modals[user] = [m for m in stack if m.id != view_id]
        self._bump()

    # -- what the page reads ------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._version

    async def changed_since(self, version: int, timeout: float) -> None:  # noqa: ASYNC109 - a long-poll bound
        """Return once the version passes `version`, or after `timeout` (the page asks again)."""
        if self._version > version:
            return
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    def snapshot(self, user: str, channel: str) -> JsonDict:
        """What `user` sees in `channel`: the timeline (threads nested), their modal, and the whole call log."""
        messages = self._slack.messages(channel)
        replies: dict[str, list[JsonDict]] = defaultdict(list)
        timeline: list[JsonDict] = []
        for message in messages:
            parent = message.get("thread_ts")
            item = self._message_item(channel, message)
            if parent and parent != message["ts"]:
                replies[str(parent)].append(item)
            else:
                timeline.append(item)
        for item in timeline:
            item["replies"] = replies.get(item["ts"], [])
        for dm in self._slack.messages(user):
            timeline.append({**self._message_item(user, dm), "kind": "dm", "replies": []})
        timeline.extend(
            e for e in self._ephemerals if e["channel"] == channel and (e["user"] is None or e["user"] == user)
        )
        timeline.sort(key=lambda item: int(item["seq"]))
        modal = self.modal(user)
        return {
            "version": self._version,
            "me": user,
            "channel": channel,
            "users": [{"id": p.id, "name": p.name, "bk_username": p.bk_username} for p in USERS],
            "groups": [{"id": gid, "name": name} for gid, (name, _) in GROUPS.items()],
            "channels": [{"id": c.id, "name": c.name, "topic": c.topic, "approval": c.approval} for c in CHANNELS],
            "timeline": timeline,
            "modal": None if modal is None else {"view": modal.view, "errors": modal.errors},
            "log": self._log,
        }

    def _message_item(self, channel: str, message: Mapping[str, Any]) -> JsonDict:
        ts = str(message["ts"])
        return {
            "kind": "message",
            "seq": self._order.get((channel, ts), 0),
            "ts": ts,
            "user": message.get("user"),
            "text": message.get("text", ""),
            "blocks": message.get("blocks") or [],
            "edited": "edited" in message,
            "files": [self._file_item(f) for f in message.get("files") or []],
        }

    def _file_item(self, shared: Mapping[str, Any]) -> JsonDict:
        """A file shared in the channel (the failed hosts' logs): its name and the start of its text."""
        data = next((f.data for f in self._slack.files() if f.id == shared.get("id")), None) or b""
        return {
            "name": shared.get("name"),
            "title": shared.get("title"),
            "size": len(data),
            "preview": data[:20_000].decode("utf-8", "replace"),
        }

    # -- observations -------------------------------------------------------------------------------------

    def _on_call(self, call: SlackCall, answer: JsonDict) -> None:
        ok = bool(answer.get("ok"))
        args = call.args
        if ok and call.method == "chat.postMessage":
            self._order[(str(answer.get("channel")), str(answer.get("ts")))] = next(self._seq)
        elif ok and call.method == "files.completeUploadExternal":
            channel = str(args.get("channel_id") or "")
            ids = {f.get("id") for f in answer.get("files") or []}
            for message in self._slack.messages(channel):
                if ids & {f.get("id") for f in message.get("files") or []}:
                    self._order[(channel, str(message["ts"]))] = next(self._seq)
        elif ok and call.method == "chat.postEphemeral":
            self._add_ephemeral(
                channel=str(args.get("channel")),
                user=str(args.get("user")),
                text=str(args.get("text") or ""),
                blocks=args.get("blocks"),
                source="chat.postEphemeral",
            )
        elif ok and call.method in ("views.open", "views.push"):
            user = self._triggers.get(str(args.get("trigger_id")))
            if user is not None:
                if call.method == "views.open":
                    self._modals[user] = []
                self._modals[user].append(Modal(view=dict(answer["view"])))
        elif ok and call.method == "views.update":
            view = answer["view"]
            for stack in self._modals.values():
                for modal in stack:
                    if modal.id == view.get("id"):
                        modal.view, modal.errors = dict(view), {}
        self.note("bot → Slack", call.method, {"args": args, "answer": _brief(answer)}, ok=ok)

    def _on_response(self, post: ResponseUrlPost) -> None:
        channel, user = self._response_urls.get(post.url, ("", ""))
        body = post.body
        if channel and not body.get("delete_original"):
            everyone = body.get("response_type") == "in_channel"
            self._add_ephemeral(
                channel=channel,
                user=None if everyone else user,
                text=str(body.get("text") or ""),
                blocks=body.get("blocks"),
                source="response_url",
            )
        self.note("bot → Slack", "response_url", {"url": post.url, "body": body})

    def _on_bk_request(self, request: BkRequest) -> None:
        self.note("bot → BK-JOB", request.api, {"method": request.method, "body": request.body})

    def _add_ephemeral(self, *, channel: str, user: str | None, text: str, blocks: Any, source: str) -> None:
        self._ephemerals.append(
            {
                "kind": "ephemeral",
                "seq": next(self._seq),
                "channel": channel,
                "user": user,
                "text": text,
                "blocks": blocks if isinstance(blocks, list) else [],
                "source": source,
            }
        )
        self._bump()

    def _bump(self) -> None:
        """Wake every long-poll; a fresh event for the next round keeps this callable from sync observers."""
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()


def _brief(answer: Mapping[str, Any]) -> JsonDict:
    """Answers repeat the whole view or message the bot just sent; the log keeps the parts worth reading."""
    out = {k: v for k, v in answer.items() if k not in ("view", "message")}
    view = answer.get("view")
    if isinstance(view, Mapping):
        out["view"] = {"id": view.get("id"), "hash": view.get("hash")}
    return out


def _redact(value: Any) -> Any:
    """The log is shown on a page: BK-JOB's app secret and passwords never appear in it."""
    if isinstance(value, Mapping):
        return {
            k: "***" if any(s in str(k).lower() for s in _SECRET_KEYS) and isinstance(v, str) else _redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value
