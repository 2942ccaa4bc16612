"""Bolt's authorization for the one workspace the bot token belongs to, which Slack's reachability cannot block.

Bolt checks a bot token with `auth.test` before any listener runs. Its own check retries a connection error with
backoff (past Slack's 3 seconds) and, when Slack's Web API cannot be reached, raises out of its middleware: every
request became a traceback and a 400, even those the bot can answer without the Web API (an ack, `help`, a
`--yes` launch that only needs BK-JOB). Here `auth.test` is tried once, within a short time, by one request at a
time; until it succeeds the request goes on with what it carries itself (its team and user), and the failure is
logged once per attempt, at most one attempt per `RETRY_AFTER` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

__all__ = ["RETRY_AFTER", "WorkspaceAuthorize"]

log = logging.getLogger(__name__)

RETRY_AFTER = 30.0
"""Seconds after a failed `auth.test` before a request tries it again (the others go on without it meanwhile)."""
TIMEOUT = 2.0
"""Longest one `auth.test` may take: a request waiting on it still has to be acked within Slack's 3 seconds."""


class WorkspaceAuthorize(AsyncAuthorize):
    """`auth.test`'s answer once it has come (kept for good, as Bolt keeps it); the request's own IDs until then."""

    def __init__(self, *, client: AsyncWebClient, clock: Callable[[], float] = time.monotonic) -> None:
        """`client` holds the bot token; its session, base URL and proxy are used for `auth.test`, without its
        retries (one quick try: the request is waiting)."""
        self._token = client.token or ""
        self._client = AsyncWebClient(
            token=client.token,
            base_url=client.base_url,
            session=client.session,
            timeout=int(TIMEOUT) or 1,
            retry_handlers=[],
            logger=client.logger,
        )
        self._client.proxy = client.proxy
        self._clock = clock
        self._known: AuthorizeResult | None = None
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()

    async def __call__(
        self,
        *,
        context: AsyncBoltContext,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        actor_enterprise_id: str | None = None,
        actor_team_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AuthorizeResult:
        known = self._known or await self._check()
        if known is None:
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=self._token, user_id=user_id)
        return AuthorizeResult(
            enterprise_id=known.enterprise_id,
            team_id=known.team_id,
            bot_user_id=known.bot_user_id,
            bot_id=known.bot_id,
            bot_token=self._token,
            bot_scopes=known.bot_scopes,
            user_id=user_id,
        )

    async def _check(self) -> AuthorizeResult | None:
        """One `auth.test` at a time, none within RETRY_AFTER of a failed one; one log line per failure."""
        async with self._lock:
            if self._known is not None:
                return self._known
            if self._failed_at is not None and self._clock() - self._failed_at < RETRY_AFTER:
                return None
            try:
                async with asyncio.timeout(TIMEOUT):
                    answer = await self._client.auth_test()
            except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                self._failed_at = self._clock()
                if isinstance(exc, SlackApiError):
                    why = exc.response.get("error") or f"HTTP {exc.response.status_code}"
                else:
                    why = type(exc).__name__
                log.warning(
                    "Slack's Web API did not confirm the bot token (auth.test: %s); answering Slack's requests "
                    "without it, and trying again in %g s",
                    why,
                    RETRY_AFTER,
                )
                return None
            scopes = answer.headers.get("x-oauth-scopes")
            self._known = AuthorizeResult(
                enterprise_id=answer.get("enterprise_id"),
                team_id=answer.get("team_id"),
                bot_user_id=answer.get("user_id"),
                bot_id=answer.get("bot_id"),
                bot_token=self._token,
                bot_scopes=scopes if isinstance(scopes, str) else None,
            )
            if self._failed_at is not None:
                log.info("Slack's Web API confirmed the bot token again (auth.test)")
                self._failed_at = None
            return self._known
