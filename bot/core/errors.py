"""What the core's ports can fail with: the chat platform refused or could not take a call."""

from __future__ import annotations

from bot.errors import BotError

__all__ = ["ChatError"]


class ChatError(BotError):
    """The chat platform (its messenger or directory) refused or could not take a call; `error` is its reason,
    `retry_after` (seconds) how long it asked to wait, when it said."""

    def __init__(self, error: str, *, retry_after: float | None = None, detail: str | None = None) -> None:
        self.error = error
        self.retry_after = retry_after
        super().__init__(detail or f"chat platform refused: {error}")
