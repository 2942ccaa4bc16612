"""Who a Slack user runs as in BK-JOB (`bk_username`)."""

from __future__ import annotations

from bot.errors import UserInputError

__all__ = ["Identities", "NoIdentity"]


class NoIdentity(UserInputError):
    """The person has no BK-JOB user the bot may act as."""


class Identities:
    """Maps Slack users to BK-JOB usernames; BK_USERNAME is the fallback for everyone."""

    def __init__(self, *, fallback: str | None) -> None:
        self._fallback = fallback

    async def bk_username(self, slack_user: str) -> str:
        if self._fallback:
            return self._fallback
        raise NoIdentity(
            "You have no BK-JOB user to run as. Ask an admin to set BK_USERNAME for the bot (see the README)."
        )
