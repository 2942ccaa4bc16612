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
from dataclasses import replace

from bot.bkjob import status
from bot.bkjob.client import BkClient
from bot.core.audit import Audit
from bot.core.errors import ChatError
from bot.core.identity import Identities
from bot.core.joblogs import JobLogs, log_file
from bot.core.membership import is_listed
from bot.core.policy import ChannelPolicy, Policy
from bot.core.ports import Directory, Messenger
from bot.core.reasons import Channel, Failure, Person, Quoted, Reason, Tone, say
from bot.errors import BotError
from bot.store import LaunchRecord, Store

__all__ = ["LogFiles"]

log = logging.getLogger(__name__)

_WINDOW = 600.0
"""Seconds during which one finish's (or one host's) logs are attached only once, whoever asks."""


class LogFiles:
    """Serves the *Logs* button and `/bkjob logs`; every answer is a reason for the person who asked."""

    def __init__(
        self,
        *,
        store: Store,
        bk: BkClient,
        logs: JobLogs,
        messenger: Messenger,
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
        self._messenger = messenger
        self._identities = identities
        self._directory = directory
        self._policy = policy
        self._audit = audit
        self._budget = budget
        self._clock = clock

    async def for_launch(self, *, user: str, channel: str, launch_id: str, host: str | None = None) -> Reason:
        """A *Logs* click: the button carries the launch's ID and must sit in that launch's own channel."""
        launch = await self._store.get_launch(launch_id)
        if launch is None or launch.channel != channel:
            return say("That button is not for a launch made in this channel.", Tone.WARNING)
        return await self._attach(user, launch, host)

    async def for_instance(self, *, user: str, channel: str, job_instance_id: int, host: str | None) -> Reason:
        """`/bkjob logs <instance>`: any launch made from this channel, however old (found by the instance's index)."""
        launch = await self._store.find_launch_by_instance(job_instance_id)
        if launch is None or launch.channel != channel:
            return say(
                "Instance {instance} was not launched from this channel; I attach logs only of launches made here.",
                Tone.WARNING,
                instance=job_instance_id,
            )
        return await self._attach(user, launch, host)

    async def _attach(self, user: str, launch: LaunchRecord, host: str | None) -> Reason:
        policy = self._policy.for_channel(launch.channel)
        refusal = await self._refusal(user, launch, policy)
        if refusal is not None:
            await self._audit.record(
                user, "logs_refused", channel=launch.channel, launch_id=launch.id, detail=str(refusal)
            )
            return replace(refusal, tone=Tone.REFUSED)
        assert launch.job_instance_id is not None and launch.message_ts is not None
        try:
            bk_username = await self._identities.bk_username(user)
            detail = await self._bk.get_job_instance_status(
                bk_biz_id=launch.bk_biz_id, job_instance_id=launch.job_instance_id, bk_username=bk_username
            )
        except BotError as exc:
            return say("{error}", error=Failure(exc))
        if not detail.is_finished:
            return say(
                "Instance {instance} is still {status}.",
                Tone.WAITING,
                instance=launch.job_instance_id,
                status=status.describe(detail.job_instance.status),
            )
        window = int(self._clock() // _WINDOW)
        claim = f"logs-file:{launch.id}:{detail.result_key()}:{host or '*'}:{window}"
        if not await self._store.claim(claim, now=self._clock()):
            return say("These logs were attached in the thread a few minutes ago (or are on their way).", Tone.FILE)
        secret = set(policy.secret_vars)
        masker = await self._logs.masker(
            bk_biz_id=launch.bk_biz_id,
            bk_job_id=launch.bk_job_id,
            bk_username=bk_username,
            secret_names=sorted(secret),
            values=[v.shown for v in launch.variables if v.name in secret],
        )
        if masker is None:
            return say(
                "The plan's secrets could not be read from BK-JOB to mask them, so no log is shown.", Tone.WARNING
            )
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
            which = say("host {host}", host=Quoted(host)) if host else "no host"
            return say(
                "Instance {instance}: {which} failed, so there is no log to attach.",
                Tone.DONE,
                instance=launch.job_instance_id,
                which=which,
            )
        title = (
            f"BK-JOB instance {launch.job_instance_id} · plan {launch.plan_name} ({launch.bk_job_id}) · "
            f"{status.describe(detail.job_instance.status)} · logs of {hosts} failed host{'s' if hosts != 1 else ''}"
        )
        comment = say(
            "Logs of {hosts:,} failed host{s}, asked for by {who}.",
            hosts=hosts,
            s="s" if hosts != 1 else "",
            who=Person(user),
        )
        if report.problem:
            problem = say("_{problem}_", Tone.WARNING, problem=Quoted(report.problem))
            comment = say("{comment}\n{problem}", comment=comment, problem=problem)
        try:
            await self._messenger.attach(
                launch.channel,
                thread_ts=launch.message_ts,
                filename=f"bkjob-{launch.job_instance_id}-failed-hosts.log",
                title=f"Failed hosts of instance {launch.job_instance_id}",
                content=log_file(report, title=title),
                comment=comment,
            )
        except ChatError as exc:
            log.warning("logs of instance %s could not be attached: %s", launch.job_instance_id, exc)
            return say("{error}", error=Failure(exc))
        await self._audit.record(
            user,
            "logs",
            channel=launch.channel,
            launch_id=launch.id,
            job_instance_id=launch.job_instance_id,
            detail=f"{hosts} failed hosts" + (f", host {host}" if host else ""),
        )
        return say(
            "Attached the logs of {hosts:,} failed host{s} in the thread.",
            Tone.FILE,
            hosts=hosts,
            s="s" if hosts != 1 else "",
        )

    async def _refusal(self, user: str, launch: LaunchRecord, policy: ChannelPolicy) -> Reason | None:
        """Why `user` may not have this launch's full logs here; None when they may."""
        channel = launch.channel
        if policy.logs != "full":
            return say(
                'Full logs are not offered in this channel ({channel}): its policy sets `logs = "{logs}"`.',
                channel=Channel(channel),
                logs=policy.logs,
            )
        refusal = policy.refusal(channel=channel, bk_biz_id=launch.bk_biz_id, bk_job_id=launch.bk_job_id)
        if refusal is not None:
            return refusal
        if launch.job_instance_id is None or launch.message_ts is None:
            return say("That launch has no BK-JOB instance, so it has no logs.")
        if policy.log_viewers is not None and not await is_listed(user, policy.log_viewers, self._directory):
            return say(
                "Only the people this channel's policy lists as `log_viewers` may fetch full logs in {channel}.",
                channel=Channel(channel),
            )
        return None
