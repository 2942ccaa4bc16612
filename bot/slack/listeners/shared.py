"""What every feature's listeners share: Bolt's callables, the ephemeral answer, and who clicked what where."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bot.slack.blocks.text import Message

__all__ = ["Ack", "Respond", "clicker", "cut", "ephemeral", "message", "origin"]

Ack = Callable[..., Awaitable[None]]
Respond = Callable[..., Awaitable[Any]]


def message(message: Message) -> dict[str, Any]:
    return {"text": message.text, "blocks": message.blocks, "response_type": "ephemeral"}


async def ephemeral(respond: Respond, text: str, **kwargs: Any) -> None:
    await respond(text=text, response_type="ephemeral", **kwargs)


def clicker(body: Mapping[str, Any]) -> tuple[str, str]:
    """Who clicked and the button's value (an approval ID); `well_formed` has checked both are strings."""
    return str(body["user"]["id"]), str(body["actions"][0].get("value", ""))


def origin(body: Mapping[str, Any]) -> tuple[str, str]:
    """The channel and message the button was on: an approval is decided only from its own message."""
    container = body.get("container") or {}
    return str(container.get("channel_id", "")), str(container.get("message_ts", ""))


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
