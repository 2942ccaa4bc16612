"""Who a Slack user runs as in BK-JOB (`bk_username`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from bot.core.errors import ChatError
from bot.core.ports import Directory
from bot.errors import UserInputError

__all__ = ["Identities", "NoIdentity"]

log = logging.getLogger(__name__)

# What BK usernames look like; an email local part outside this (e.g. "a+b", quoted forms) is not one.
_PLAUSIBLE_BK_USERNAME = re.compile(r"[A-Za-z0-9._-]+")
_NO_USERS: Mapping[str, str] = MappingProxyType({})


class NoIdentity(UserInputError):
    """The person has no BK-JOB user the bot may act as."""


class Identities:
    """Maps Slack users to BK-JOB usernames: [users], then the Slack profile e-mail, then the fallback.

    BK-JOB checks permissions as this user, so it fails closed: an explicit mapping always wins; an e-mail counts
    only in a domain the policy lists (anyone can be a guest with `admin@attacker.example`); guests are refused
    unless mapped; and when Slack cannot say who someone is, they are refused rather than run as the fallback.
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] = _NO_USERS,
        directory: Directory | None = None,
        fallback: str | None,
        email_domains: Iterable[str] = (),
    ) -> None:
        self._users = dict(users)
        self._directory = directory
        self._fallback = fallback
        self._domains = frozenset(domain.lower() for domain in email_domains)

    async def bk_username(self, slack_user: str) -> str:
        mapped = self._users.get(slack_user)
        if mapped:
            return mapped
        if self._directory is not None:
            from_email = await self._from_profile(self._directory, slack_user)
            if from_email:
                return from_email
        if self._fallback:
            return self._fallback
        raise NoIdentity(
            "You have no BK-JOB user to run as. Ask a bkjob-bot admin to add "
            f'`{slack_user} = "<your BK-JOB username>"` under [users] in the bot\'s policy file.'
        )

    async def _from_profile(self, directory: Directory, slack_user: str) -> str | None:
        try:
            profile = await directory.profile(slack_user)
        except ChatError as exc:
            log.warning("could not read the Slack profile of %s (%s); refused", slack_user, exc)
            raise NoIdentity(
                f"I could not read your Slack profile ({exc.error}), so I cannot tell which BK-JOB user you are; "
                "nothing was done. Try again in a minute."
            ) from exc
        if profile.restricted:
            raise NoIdentity(
                "Guest accounts may act only once a bkjob-bot admin maps them: ask for "
                f'`{slack_user} = "<your BK-JOB username>"` under [users] in the bot\'s policy file.'
            )
        email = profile.email
        if not email or "@" not in email:
            return None
        local, _, domain = email.rpartition("@")
        if domain.lower() not in self._domains:
            return None
        return local if _PLAUSIBLE_BK_USERNAME.fullmatch(local) else None
