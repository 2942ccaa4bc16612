"""The core's own errors: a chat platform that refused a call, and a request the core turned down."""

from __future__ import annotations

from bot.core.reasons import Reason
from bot.errors import BotError

__all__ = ["ChatError", "Refusal"]


class ChatError(BotError):
    """The chat platform (its messenger or directory) refused or could not take a call; `error` is its reason,
    `retry_after` (seconds) how long it asked to wait, when it said."""

    def __init__(self, error: str, *, retry_after: float | None = None, detail: str | None = None) -> None:
        self.error = error
        self.retry_after = retry_after
        super().__init__(detail or f"chat platform refused: {error}")


class Refusal(BotError):
    """A request the core turned down, or a click that changes nothing; `reason` says why, in words the chat wing
    renders (with its people, times and quoted text as that platform shows them)."""

    def __init__(self, reason: Reason) -> None:
        self.reason = reason
        super().__init__(str(reason))
