"""The core's directory port on Slack: profile e-mails and user-group members, cached per process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from cachetools import TTLCache
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.ports import Profile
from bot.slack.errors import SlackError

__all__ = ["Directory"]

T = TypeVar("T")


class Directory:
    """Reads people and groups from Slack, remembering answers for `ttl` seconds.

    Each launch and each approval click asks who someone is; without the cache every click would cost a
    Web API call against Slack's rate limits. Only successful answers are cached, so a Slack hiccup is
    retried on the next look-up instead of being remembered for `ttl`.
    """

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        ttl: float = 300.0,
        maxsize: int = 2048,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._profiles: TTLCache[str, Profile] = TTLCache(maxsize=maxsize, ttl=ttl, timer=timer)
        self._groups: TTLCache[str, frozenset[str]] = TTLCache(maxsize=maxsize, ttl=ttl, timer=timer)
        # One in-flight read per key: 50 people clicking at once make one call, not 50.
        self._pending: dict[tuple[str, str], asyncio.Future[Any]] = {}

    async def email(self, user_id: str) -> str | None:
        """The email on the person's Slack profile; None when the profile has none (bots, hidden emails)."""
        return (await self.profile(user_id)).email

    async def profile(self, user_id: str) -> Profile:
        """The person's e-mail and guest status, as Slack knows them now (give or take `ttl`)."""
        return await self._cached(self._profiles, "users.info", user_id, lambda: self._fetch_profile(user_id))

    async def group_members(self, group_id: str) -> frozenset[str]:
        """The user IDs currently in a Slack user group (S…)."""
        return await self._cached(self._groups, "usergroups.users.list", group_id, lambda: self._fetch_group(group_id))

    async def _cached(self, cache: TTLCache[str, T], method: str, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        try:
            return cache[key]
        except KeyError:
            pass
        pending = self._pending.get((method, key))
        if pending is None:
            pending = asyncio.ensure_future(fetch())
            self._pending[(method, key)] = pending
            pending.add_done_callback(lambda done: self._settle(cache, method, key, done))
        # shield: one waiter giving up must not cancel the read the others are waiting for.
        result: T = await asyncio.shield(pending)
        return result

    def _settle(self, cache: TTLCache[str, Any], method: str, key: str, done: asyncio.Future[Any]) -> None:
        self._pending.pop((method, key), None)
        if not done.cancelled() and done.exception() is None:
            cache[key] = done.result()

    async def _fetch_profile(self, user_id: str) -> Profile:
        response = await self._call("users.info", user=user_id)
        user = response.get("user") or {}
        email = (user.get("profile") or {}).get("email")
        # Slack omits the flags for some accounts (bots); a flag present and not plainly false counts as a guest.
        restricted = any(user.get(flag, False) is not False for flag in ("is_restricted", "is_ultra_restricted"))
        return Profile(email=str(email) if email else None, restricted=restricted)

    async def _fetch_group(self, group_id: str) -> frozenset[str]:
        response = await self._call("usergroups.users.list", usergroup=group_id)
        return frozenset(str(member) for member in response.get("users") or ())

    async def _call(self, method: str, **params: str) -> Any:
        """Turns slack_sdk failures into SlackError; the token never appears in the message."""
        try:
            return await self._client.api_call(method, http_verb="GET", params=params)
        except SlackApiError as exc:
            raise SlackError(method, str(exc.response.get("error", "unknown_error"))) from exc
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SlackError(method, type(exc).__name__) from exc
