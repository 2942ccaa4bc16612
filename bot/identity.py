"""Who a Slack user runs as in BK-JOB (`bk_username`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from types import MappingProxyType

from bot.directory import Directory
from bot.errors import SlackError, UserInputError

__all__ = ["Identities", "NoIdentity"]

log = logging.getLogger(__name__)

# What BK usernames look like; an email local part outside this (e.g. "a+b", quoted forms) is not one.
_PLAUSIBLE_BK_USERNAME = re.compile(r"[A-Za-z0-9._-]+")
_NO_USERS: Mapping[str, str] = MappingProxyType({})


class NoIdentity(UserInputError):
    """The person has no BK-JOB user the bot may act as."""


class Identities:
    """Maps Slack users to BK-JOB usernames: [users], then the Slack profile email, then BK_USERNAME.

    BK-JOB checks permissions as this user, so an explicit mapping always wins over a guess from the email.
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] = _NO_USERS,
        directory: Directory | None = None,
        fallback: str | None,
    ) -> None:
        self._users = dict(users)
        self._directory = directory
        self._fallback = fallback

    async def bk_username(self, slack_user: str) -> str:
        mapped = self._users.get(slack_user)
        if mapped:
            return mapped
        from_email = await self._from_email(slack_user)
        if from_email:
            return from_email
        if self._fallback:
            return self._fallback
        raise NoIdentity(
            "You have no BK-JOB user to run as. Ask a bkjob-bot admin to add "
            f'`{slack_user} = "<your BK-JOB username>"` under [users] in the bot\'s policy file.'
        )

    async def _from_email(self, slack_user: str) -> str | None:
        if self._directory is None:
            return None
        try:
            email = await self._directory.email(slack_user)
        except SlackError as exc:
            # Slack being down should not stop a launch the fallback user may still make.
            log.warning("could not read the Slack profile of %s (%s); trying the next identity source", slack_user, exc)
            return None
        if not email or "@" not in email:
            return None
        local = email.rpartition("@")[0]
        return local if _PLAUSIBLE_BK_USERNAME.fullmatch(local) else None
