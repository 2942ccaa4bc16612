"""Whether a person is among those a policy lists: named by ID, or in a user group the directory knows."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.core.errors import ChatError
from bot.core.ports import Directory

__all__ = ["is_listed"]

log = logging.getLogger(__name__)


async def is_listed(user: str, listed: Iterable[str], directory: Directory | None) -> bool:
    """A group whose members cannot be read counts as not containing the person (fails closed), with a warning;
    groups are read only when the person is not named directly."""
    listed = tuple(listed)
    if user in listed:
        return True
    if directory is None:
        return False
    for group in (entry for entry in listed if entry.startswith("S")):
        try:
            if user in await directory.group_members(group):
                return True
        except ChatError as exc:
            log.warning("members of user group %s could not be read: %s", group, exc.error)
    return False
