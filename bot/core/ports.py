"""The ports the core needs from a chat platform: a messenger that delivers cards, and a directory of people.

Slack's wing implements both (`bot.slack.messenger`, `bot.slack.directory`); a second platform would implement
them again, and the core would not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.core.cards import Card
from bot.core.reasons import Reason
from bot.store import ApprovalRecord, LaunchRecord, OutboxMessage

__all__ = ["Directory", "Messenger", "Profile"]


@dataclass(frozen=True)
class Profile:
    """What identity mapping needs from the chat platform: the e-mail, and whether the account is a guest."""

    email: str | None
    restricted: bool  # a guest (Slack: a multi- or single-channel guest)


class Directory(Protocol):
    """Who a person is and who is in a group, as the chat platform knows them now (give or take a cache)."""

    async def profile(self, user_id: str) -> Profile: ...

    async def group_members(self, group_id: str) -> frozenset[str]: ...


class Messenger(Protocol):
    """Delivers what the core has to say. Every post and edit is persisted first and delivered in order per
    thread, paced per channel, once: the messenger's guarantees, not the caller's. Failures raise ChatError."""

    async def announce(self, channel: str, card: Card, *, requester: str) -> str:
        """Post a card whose message the caller needs at once (the thread what follows goes to) and return its
        id; `requester` is told when the channel is busy and the post waits its turn."""
        ...

    async def post(self, channel: str, card: Card, *, thread_ts: str | None = None) -> None:
        """Queue a card for the channel (in the thread `thread_ts`)."""
        ...

    def result(self, launch: LaunchRecord, card: Card, *, key: str) -> OutboxMessage:
        """The reply carrying a launch's result, built but not stored: `Store.record_result` stores it in the
        same transaction as the result, and the store learns it was posted when it is (`key` is the result's)."""
        ...

    def wake(self) -> None:
        """Something was stored for delivery behind the messenger's back (a result): deliver it now."""
        ...

    async def refresh_launch(self, launch: LaunchRecord) -> None:
        """Bring the launch's card up to date (rendered from the store when sent; pending refreshes coalesce)."""
        ...

    async def refresh_approval(self, approval: ApprovalRecord) -> None:
        """Bring the approval's card up to date, votes and all."""
        ...

    async def tell(self, channel: str, user: str, reason: Reason) -> None:
        """Say something in a channel that only `user` sees."""
        ...

    async def attach(
        self, channel: str, *, thread_ts: str | None, filename: str, title: str, content: str, comment: Reason
    ) -> None:
        """Attach a text file to a thread, with a comment."""
        ...
