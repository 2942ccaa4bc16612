"""What a person may look at: `/bkjob pending`, `/bkjob history` and `/bkjob status`, governed like launching."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from bot.core.identity import Identities
from bot.core.launches import Launches
from bot.core.policy import Policy
from bot.errors import BotError
from bot.slack.blocks.approvals import pending_list
from bot.slack.blocks.lists import history_list
from bot.slack.blocks.results import instance_status
from bot.slack.commands import HistoryCommand, StatusCommand
from bot.slack.listeners.shared import Respond, ephemeral
from bot.slack.notifier import Notifier
from bot.slack.words import explain, words
from bot.store import Store

__all__ = ["ListListeners"]

_MAX_PENDING = 50


class ListListeners:
    """The channel's pending approvals and recent launches, and one instance's status read from BK-JOB."""

    def __init__(
        self,
        *,
        store: Store,
        launches: Launches,
        notifier: Notifier,
        identities: Identities,
        policy: Policy,
        default_biz: int | None,
        web_root: str | None,
    ) -> None:
        self._store = store
        self._launches = launches
        self._notifier = notifier
        self._identities = identities
        self._policy = policy
        self._default_biz = default_biz
        self._web_root = web_root

    async def _may_read(self, user: str, channel: str, respond: Respond, biz: int | None = None) -> str | None:
        """Looking is governed like launching: the channel's policy, then who the person is in BK-JOB.

        Returns their BK-JOB user, or None once they have been told why not.
        """
        refusal = self._policy.for_channel(channel).read_refusal(channel=channel, bk_biz_id=biz)
        if refusal is not None:
            await ephemeral(respond, f":no_entry: {words(refusal)}")
            return None
        try:
            return await self._identities.bk_username(user)
        except BotError as exc:
            await ephemeral(respond, explain(exc))
            return None

    async def pending(self, user: str, channel: str, respond: Respond) -> None:
        """Each request linked by Slack's own permalink (asked for those shown, at most 50, side by side)."""
        if not await self._may_read(user, channel, respond):
            return
        approvals = list(await self._store.pending_approvals(channel))[:_MAX_PENDING]
        posted = [(a.id, a.channel, a.message_ts) for a in approvals if a.message_ts]
        links = await asyncio.gather(*(self._notifier.permalink(channel, ts) for _, channel, ts in posted))
        permalinks = {aid: link for (aid, _, _), link in zip(posted, links, strict=True) if link}
        await ephemeral(respond, pending_list(approvals, permalinks=permalinks))

    async def history(self, cmd: HistoryCommand, user: str, channel: str, respond: Respond) -> None:
        if not await self._may_read(user, channel, respond):
            return
        launches = await self._store.recent_launches(channel, cmd.limit)
        await ephemeral(respond, history_list(launches, web_root=self._web_root))

    async def status(self, cmd: StatusCommand, command: Mapping[str, Any], respond: Respond) -> None:
        user, channel = str(command["user_id"]), str(command["channel_id"])
        biz = cmd.biz_id or self._policy.for_channel(channel).bk_biz_id or self._default_biz
        if biz is None:
            await ephemeral(
                respond, ":warning: Which business? Add `--biz &lt;bk_biz_id&gt;` (no default is set here)."
            )
            return
        bk_username = await self._may_read(user, channel, respond, biz)
        if bk_username is None:
            return
        try:
            detail = await self._launches.instance_status(
                bk_biz_id=biz, job_instance_id=cmd.job_instance_id, bk_username=bk_username
            )
        except BotError as exc:
            await ephemeral(respond, explain(exc))
            return
        allowed = self._policy.for_channel(channel).allowed_jobs
        if allowed is not None and detail.job_instance.bk_job_id not in allowed:
            await ephemeral(respond, f":no_entry: This channel (<#{channel}>) may not look into that instance's plan.")
            return
        await ephemeral(respond, instance_status(detail, web_root=self._web_root))
