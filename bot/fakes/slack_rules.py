"""Slack's rules the fake Slack enforces: Block Kit validity and limits, scopes, and per-method rate tiers."""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

__all__ = [
    "MANIFEST",
    "METHOD_SCOPES",
    "METHOD_TIERS",
    "RateTiers",
    "manifest_scopes",
    "message_problems",
    "view_problems",
]

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"
"""The app manifest the real app is created from: the fake grants exactly the scopes it asks for."""

# Each method's required bot scope, from its page in Slack's method reference (none: needs no scope).
METHOD_SCOPES: dict[str, str | None] = {
    "auth.test": None,
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.getPermalink": None,
    "views.open": None,
    "views.push": None,
    "views.update": None,
    "users.info": "users:read",
    "usergroups.users.list": "usergroups:read",
    "conversations.info": "channels:read",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
}

# Requests per minute per method per workspace, from each method's tier in Slack's reference: Tier 2 is 20+,
# Tier 3 50+, Tier 4 100+. chat.postMessage is "special" (about 1 per second per channel, enforced separately,
# plus a workspace-wide limit of several hundred a minute); chat.getPermalink and auth.test allow "hundreds".
METHOD_TIERS: dict[str, int] = {
    "auth.test": 600,
    "chat.postMessage": 600,
    "chat.update": 50,
    "chat.postEphemeral": 100,
    "chat.getPermalink": 300,
    "views.open": 100,
    "views.push": 100,
    "views.update": 100,
    "files.getUploadURLExternal": 100,
    "files.completeUploadExternal": 100,
    "users.info": 100,
    "usergroups.users.list": 20,
    "conversations.info": 50,
}

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_MESSAGE_TEXT = 40_000  # chat.postMessage: `msg_too_long` beyond this
MAX_TEXT_OBJECT = 3000  # any text object (mrkdwn or plain_text) in a section, context or field
MAX_HEADER = 150
MAX_PRIVATE_METADATA = 3000


def manifest_scopes(path: Path = MANIFEST) -> frozenset[str]:
    """The bot scopes listed under `oauth_config.scopes.bot` (a small reader: the manifest's layout is fixed)."""
    scopes: set[str] = set()
    section: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        key = line.strip()
        if key.startswith("- "):
            if section[-3:] == ["oauth_config", "scopes", "bot"]:
                scopes.add(key[2:].strip().strip("'\""))
            continue
        depth = indent // 2
        section = section[:depth] + [key.rstrip(":").split(":", 1)[0]]
    return frozenset(scopes)


def message_problems(blocks: object, text: object) -> tuple[str, list[str]] | None:
    """Why Slack would refuse a message with these `blocks` and `text`: (error code, details), or None."""
    if isinstance(text, str) and len(text) > MAX_MESSAGE_TEXT:
        return "msg_too_long", [f"text is {len(text)} characters, more than {MAX_MESSAGE_TEXT}"]
    if blocks is None:
        return None
    if not isinstance(blocks, list):
        return "invalid_blocks_format", ["blocks must be a JSON array"]
    if len(blocks) > MAX_MESSAGE_BLOCKS:
        return "invalid_blocks", [f"no more than {MAX_MESSAGE_BLOCKS} items allowed [json-pointer:/blocks]"]
    problems = _blocks_problems(blocks)
    return ("invalid_blocks", problems) if problems else None


def view_problems(view: object) -> list[str]:
    """Why Slack would refuse this view (answered `invalid_arguments`); empty when it is valid."""
    if not isinstance(view, Mapping):
        return ["view must be a JSON object"]
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        return ["view.blocks must be an array"]
    if len(blocks) > MAX_VIEW_BLOCKS:
        return [f"no more than {MAX_VIEW_BLOCKS} items allowed [json-pointer:/view/blocks]"]
    metadata = view.get("private_metadata")
    if metadata is not None and not isinstance(metadata, str):
        return ["must be a string [json-pointer:/view/private_metadata]"]
    if isinstance(metadata, str) and len(metadata) > MAX_PRIVATE_METADATA:
        return [f"must be less than {MAX_PRIVATE_METADATA} characters [json-pointer:/view/private_metadata]"]
    # private_metadata is only ever checked for its type and length (above): the same form opened by different
    # people is judged once (the verdict depends on nothing else, so the fake is as strict; the rig spends less).
    rest = {k: v for k, v in view.items() if k != "private_metadata"}
    problem = _view_problem(json.dumps(rest, sort_keys=True, default=repr))
    if problem is not None:
        return [f"{problem} [json-pointer:/view]"]
    return _blocks_problems(blocks, pointer="/view/blocks")


@lru_cache(maxsize=4096)
def _view_problem(canonical: str) -> str | None:
    try:
        View(**json.loads(canonical)).validate_json()
    except (SlackObjectFormationError, TypeError, ValueError) as exc:
        return str(exc)
    return None


def _blocks_problems(blocks: list[Any], *, pointer: str = "/blocks") -> list[str]:
    problems: list[str] = []
    for i, raw in enumerate(blocks):
        where = f"[json-pointer:{pointer}/{i}]"
        if not isinstance(raw, dict):
            problems.append(f"must be an object {where}")
            continue
        problems.extend(f"{p} {where}" for p in _block_problems(json.dumps(raw, sort_keys=True, default=repr)))
    return problems


@lru_cache(maxsize=16_384)
def _block_problems(canonical: str) -> tuple[str, ...]:
    """One block's problems, by its content: a block sent again (a form, a button row) is judged once."""
    raw = json.loads(canonical)
    try:
        block = Block.parse(raw)
        if block is None:
            return (f"unsupported type {raw.get('type')!r}",)
        block.validate_json()
        parsed = block.to_dict()  # validates nested elements too
    except (SlackObjectFormationError, TypeError, ValueError, KeyError, AttributeError) as exc:
        return (str(exc),)
    problems: list[str] = []
    # slack_sdk's models drop fields they do not know; Slack refuses them.
    extra = _unknown_keys(raw, parsed)
    if extra:
        problems.append(f"unknown field(s) {', '.join(sorted(extra))}")
    problems.extend(_limit_problems(raw))
    return tuple(problems)


def _unknown_keys(raw: Mapping[str, Any], parsed: Mapping[str, Any], prefix: str = "") -> set[str]:
    missing: set[str] = set()
    for key, value in raw.items():
        if key not in parsed:
            missing.add(prefix + key)
        elif isinstance(value, Mapping) and isinstance(parsed[key], Mapping):
            missing |= _unknown_keys(value, parsed[key], f"{prefix}{key}.")
    return missing


def _limit_problems(block: Mapping[str, Any]) -> Iterable[str]:
    """Documented limits slack_sdk's models do not check."""
    for obj in _text_objects(block):
        text = obj.get("text")
        if isinstance(text, str) and len(text) > MAX_TEXT_OBJECT:
            yield f"must be less than {MAX_TEXT_OBJECT + 1} characters"
        if isinstance(text, str) and not text:
            yield "must be more than 0 characters"
    element = block.get("element")
    if isinstance(element, Mapping) and isinstance(element.get("initial_value"), str):
        cap = element.get("max_length")
        limit = min(cap, MAX_TEXT_OBJECT) if isinstance(cap, int) else MAX_TEXT_OBJECT
        if len(element["initial_value"]) > limit:
            yield "initial_value is longer than the input allows"
    if block.get("type") == "header":
        text = (block.get("text") or {}).get("text")
        if isinstance(text, str) and len(text) > MAX_HEADER:
            yield f"must be less than {MAX_HEADER + 1} characters"


def _text_objects(node: object) -> Iterable[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        if node.get("type") in ("mrkdwn", "plain_text") and "text" in node:
            yield node
        for value in node.values():
            yield from _text_objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from _text_objects(item)


class RateTiers:
    """A sliding one-minute window per method, as Slack's tiers count: 429 with the seconds until a slot frees."""

    def __init__(self, limits: Mapping[str, int] = METHOD_TIERS, *, scale: float = 1.0) -> None:
        self._limits = {method: max(1, int(limit * scale)) for method, limit in limits.items()}
        self._seen: dict[str, deque[float]] = {}

    def wait(self, method: str, now: float) -> int:
        """0 when the call may go ahead (and it is counted); otherwise Slack's integer `Retry-After`."""
        limit = self._limits.get(method)
        if limit is None:
            return 0
        seen = self._seen.setdefault(method, deque())
        while seen and seen[0] <= now - 60.0:
            seen.popleft()
        if len(seen) >= limit:
            return max(1, math.ceil(seen[0] + 60.0 - now))
        seen.append(now)
        return 0
