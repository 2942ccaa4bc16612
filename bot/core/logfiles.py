"""Full logs on request: who may fetch them, and the masked file of the failed hosts' logs attached in the thread.

A *Logs* click or `/bkjob logs <instance> [host]` is governed like launching: the channel's policy must say
`logs = "full"`, the person must be one of its `log_viewers` (absent: anyone who may launch there), and BK-JOB is
read as that person's own BK-JOB user, so BK-JOB's permissions apply too. Only launches made from the channel
are served, and one finish's logs are read at most once per ten minutes however often people click.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.bkjob import status
from bot.bkjob.esb import BkClient
from bot.core.audit import Audit
from bot.core.errors import ChatError
from bot.core.identity import Identities
from bot.core.joblogs import JobLogs, log_file
from bot.core.policy import ChannelPolicy, Policy
from bot.core.ports import Directory
from bot.errors import BotError
from bot.slack.blocks import untrusted
from bot.slack.notifier import Notifier
from bot.slack.words import explain
from bot.store import LaunchRecord, Store

__all__ = ["LogFiles"]

log = logging.getLogger(__name__)

_WINDOW = 600.0
"""Seconds during which one finish's (or one host's) logs are attached only once, whoever asks."""


class LogFiles:
    """Serves the *Logs* button and `/bkjob logs`; every answer is a sentence for the person who asked."""

    def __init__(
        self,
        *,
        store: Store,
        bk: BkClient,
        logs: JobLogs,
        notifier: Notifier,
        identities: Identities,
        directory: Directory | None,
        policy: Policy,
        audit: Audit,
        budget: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._bk = bk
        self._logs = logs
        self._notifier = notifier
        self._identities = identities
        self._directory = directory
        self._policy = policy
        self._audit = audit
        self._budget = budget
        self._clock = clock

    async def for_launch(self, *, user: str, channel: str, launch_id: str, host: str | None = None) -> str:
        """A *Logs* click: the button carries the launch's ID and must sit in that launch's own channel."""
        launch = await self._store.get_launch(launch_id)
        if launch is None or launch.channel != channel:
            return ":warning: That button is not for a launch made in this channel."
        return await self._attach(user, launch, host)

    async def for_instance(self, *, user: str, channel: str, job_instance_id: int, host: str | None) -> str:
        """`/bkjob logs <instance>`: any launch made from this channel, however old (found by the instance's index)."""
        launch = await self._store.find_launch_by_instance(job_instance_id)
        if launch is None or launch.channel != channel:
            return (
                f":warning: Instance {job_instance_id} was not launched from this channel; "
                "I attach logs only of launches made here."
            )
        return await self._attach(user, launch, host)

    async def _attach(self, user: str, launch: LaunchRecord, host: str | None) -> str:
        policy = self._policy.for_channel(launch.channel)
        refusal = await self._refusal(user, launch, policy)
        if refusal is not None:
            await self._audit.record(user, "logs_refused", channel=launch.channel, launch_id=launch.id, detail=refusal)
            return f":no_entry: {refusal}"
        assert launch.job_instance_id is not None and launch.message_ts is not None
        try:
            bk_username = await self._identities.bk_username(user)
            detail = await self._bk.get_job_instance_status(
                bk_biz_id=launch.bk_biz_id, job_instance_id=launch.job_instance_id, bk_username=bk_username
            )
        except BotError as exc:
            return explain(exc)
        if not detail.is_finished:
            return (
                f":hourglass: Instance {launch.job_instance_id} is still {status.describe(detail.job_instance.status)}."
            )
        window = int(self._clock() // _WINDOW)
        claim = f"logs-file:{launch.id}:{detail.result_key()}:{host or '*'}:{window}"
        if not await self._store.claim(claim, now=self._clock()):
            return ":page_facing_up: These logs were attached in the thread a few minutes ago (or are on their way)."
        secret = set(policy.secret_vars)
        masker = await self._logs.masker(
            bk_biz_id=launch.bk_biz_id,
            bk_job_id=launch.bk_job_id,
            bk_username=bk_username,
            secret_names=sorted(secret),
            values=[v.shown for v in launch.variables if v.name in secret],
        )
        if masker is None:
            return ":warning: The plan's secrets could not be read from BK-JOB to mask them, so no log is shown."
        report = await self._logs.report(
            bk_biz_id=launch.bk_biz_id,
            job_instance_id=launch.job_instance_id,
            bk_username=bk_username,
            detail=detail,
            masker=masker,
            budget=self._budget,
            full=True,
            host=host,
        )
        hosts = sum(len(step.hosts) for step in report.steps)
        if not hosts:
            which = f"host {host}" if host else "no host"
            return (
                f":white_check_mark: Instance {launch.job_instance_id}: {which} failed, so there is no log to attach."
            )
        title = (
            f"BK-JOB instance {launch.job_instance_id} · plan {launch.plan_name} ({launch.bk_job_id}) · "
            f"{status.describe(detail.job_instance.status)} · logs of {hosts} failed host{'s' if hosts != 1 else ''}"
        )
        comment = f"Logs of {hosts:,} failed host{'s' if hosts != 1 else ''}, asked for by <@{user}>."
        if report.problem:
            comment += f"\n:warning: _{untrusted(report.problem)}_"
        try:
            await self._notifier.upload(
                launch.channel,
                thread_ts=launch.message_ts,
                filename=f"bkjob-{launch.job_instance_id}-failed-hosts.log",
                title=f"Failed hosts of instance {launch.job_instance_id}",
                content=log_file(report, title=title),
                comment=comment,
            )
        except ChatError as exc:
            log.warning("logs of instance %s could not be attached: %s", launch.job_instance_id, exc)
            return explain(exc)
        await self._audit.record(
            user,
            "logs",
            channel=launch.channel,
            launch_id=launch.id,
            job_instance_id=launch.job_instance_id,
            detail=f"{hosts} failed hosts" + (f", host {host}" if host else ""),
        )
        return f":page_facing_up: Attached the logs of {hosts:,} failed host{'s' if hosts != 1 else ''} in the thread."

    async def _refusal(self, user: str, launch: LaunchRecord, policy: ChannelPolicy) -> str | None:
        """Why `user` may not have this launch's full logs here; None when they may."""
        channel = launch.channel
        if policy.logs != "full":
            return (
                f'Full logs are not offered in this channel (<#{channel}>): its policy sets `logs = "{policy.logs}"`.'
            )
        refusal = policy.refusal(channel=channel, bk_biz_id=launch.bk_biz_id, bk_job_id=launch.bk_job_id)
        if refusal is not None:
            return refusal
        if launch.job_instance_id is None or launch.message_ts is None:
            return "That launch has no BK-JOB instance, so it has no logs."
        if policy.log_viewers is not None and not await self._is_viewer(user, policy.log_viewers):
            return f"Only the people this channel's policy lists as `log_viewers` may fetch full logs in <#{channel}>."
        return None

    async def _is_viewer(self, user: str, viewers: tuple[str, ...]) -> bool:
        if user in viewers:
            return True
        for group in (v for v in viewers if v.startswith("S")):
            if self._directory is None:
                continue
            try:
                if user in await self._directory.group_members(group):
                    return True
            except BotError as exc:
                log.warning("members of %s could not be read: %s", group, exc)
        return False
