"""Slack's failures, and a slash command that does not parse."""

from __future__ import annotations

from bot.core.errors import ChatError
from bot.errors import UserInputError

__all__ = ["CommandError", "SlackError"]


class CommandError(UserInputError):
    """The slash-command text does not parse."""


class SlackError(ChatError):
    """Slack refused a call the bot needed; `retry_after` is Slack's `Retry-After` (seconds) on a 429."""

    def __init__(self, method: str, error: str, *, retry_after: float | None = None) -> None:
        self.method = method
        super().__init__(error, retry_after=retry_after, detail=f"Slack {method} failed: {error}")
