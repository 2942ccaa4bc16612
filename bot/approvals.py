"""Approval policy and the pending → approved / rejected / expired state machine."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence

from bot.audit import Audit
from bot.blocks import approval_message, mention, notice, utc_time
from bot.directory import Directory
from bot.errors import BotError, SlackError
from bot.explain import explain
from bot.launches import Launches, LaunchFailed, LaunchRequest
from bot.notifier import Notifier
from bot.outbox import Outbox
from bot.policy import ChannelPolicy
from bot.store import ApprovalRecord, ApprovalState, Store, Vote

__all__ = ["Approvals", "Decision"]

log = logging.getLogger(__name__)


class Decision(BotError):
    """A click that changes nothing; `str(err)` tells the clicker why (ephemerally)."""


class Approvals:
    """Every state change is one conditional update in the store: only the caller that wins it acts."""

    def __init__(
        self,
        *,
        store: Store,
        launches: Launches,
        notifier: Notifier,
        directory: Directory | None,
        audit: Audit,
        outbox: Outbox,
        web_root: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._launches = launches
        self._notifier = notifier
        self._directory = directory
        self._outbox = outbox
        self._audit = audit
        self._web_root = web_root
        self._clock = clock

    async def request(self, request: LaunchRequest, policy: ChannelPolicy) -> ApprovalRecord:
        """Check everything a launch would check, then post the request instead of launching."""
        prepared = await self._launches.prepare(request)
        now = self._clock()
        approval = ApprovalRecord(
            id=uuid.uuid4().hex,
            created_at=now,
            updated_at=now,
            requester=request.requester,
            channel=request.channel,
            bk_biz_id=request.bk_biz_id,
            bk_job_id=request.bk_job_id,
            plan_name=prepared.plan.name,
            bk_username=prepared.bk_username,
            values=dict(request.values),
            variables=prepared.overrides.shown,
            approvers=list(policy.approvers),
            min_approvals=policy.min_approvals,
            expires_at=now + policy.approval_ttl.total_seconds(),
        )
        await self._store.create_approval(approval)
        try:
            ts = await self._notifier.post(approval.channel, approval_message(approval, [], web_root=self._web_root))
        except SlackError as exc:
            # Nobody could ever see or decide it: close it now rather than let it expire unseen.
            await self._store.decide(
                approval.id, ApprovalState.REJECTED, by="bkjob-bot", now=self._clock(), reason=f"Slack: {exc.error}"
            )
            raise
        await self._store.set_approval_message(approval.id, ts, now=self._clock())
        await self._audit.record(
            request.requester,
            "approval_requested",
            channel=request.channel,
            approval_id=approval.id,
            detail=f"plan {request.bk_job_id} in business {request.bk_biz_id} as {prepared.bk_username}",
        )
        return approval.model_copy(update={"message_ts": ts})

    async def check_approver(
        self, approval_id: str, user: str, *, origin: tuple[str, str] | None = None
    ) -> ApprovalRecord:
        """The request, if `user` may decide it now; otherwise a Decision saying why not.

        `origin` is the (channel, message ts) the button was clicked on: a button value is only a reference, so a
        value copied onto another message (or another request's ID) must not decide a request it was not shown on.
        """
        approval = await self._store.get_approval(approval_id)
        if approval is None:
            raise Decision("This approval request is unknown to me; nothing changed.")
        if origin is not None and not _same_message(approval, origin):
            log.warning("approval %s clicked from another message (%s)", approval.id, origin[0])
            raise Decision("This button does not belong to that approval request; nothing changed.")
        self._still_open(approval)
        if user == approval.requester:
            raise Decision("You cannot approve or reject your own launch: another approver has to.")
        if not await self._is_approver(approval.approvers, user):
            raise Decision(
                f"Only {', '.join(mention(a) for a in approval.approvers)} may decide this request; nothing changed."
            )
        return approval

    async def approve(self, approval_id: str, user: str, *, origin: tuple[str, str] | None = None) -> None:
        approval = await self.check_approver(approval_id, user, origin=origin)
        now = self._clock()
        if not await self._store.add_vote(approval.id, user, now=now):
            fresh = await self._store.get_approval(approval.id) or approval
            self._still_open(fresh)
            raise Decision("You have already approved this request.")
        votes = await self._store.votes(approval.id)
        await self._audit.record(
            user, "approval_vote", channel=approval.channel, approval_id=approval.id, detail=f"{len(votes)}"
        )
        if len(votes) < approval.min_approvals:
            await self._refresh(approval)
            return
        if not await self._store.decide(approval.id, ApprovalState.APPROVED, by=user, now=self._clock()):
            fresh = await self._store.get_approval(approval.id) or approval
            self._still_open(fresh)
            raise Decision("This request could not be approved; try again.")
        await self._audit.record(user, "approved", channel=approval.channel, approval_id=approval.id)
        approved = await self._store.get_approval(approval.id) or approval
        await self._refresh(approved)
        await self._launch(approved, votes)

    async def reject(self, approval_id: str, user: str, reason: str | None) -> None:
        approval = await self.check_approver(approval_id, user)
        if not await self._store.decide(approval.id, ApprovalState.REJECTED, by=user, now=self._clock(), reason=reason):
            fresh = await self._store.get_approval(approval.id) or approval
            self._still_open(fresh)
            raise Decision("This request could not be rejected; try again.")
        await self._audit.record(
            user, "rejected", channel=approval.channel, approval_id=approval.id, detail=reason or None
        )
        rejected = await self._store.get_approval(approval.id) or approval
        await self._refresh(rejected)
        because = f": {reason}" if reason else "."
        await self._reply(rejected, f"<@{rejected.requester}> your launch was rejected by <@{user}>{because}")

    async def expire_due(self) -> int:
        """Expire every request past its deadline; the sweeper calls this, at start-up too."""
        expired = await self._store.expire_due(now=self._clock())
        for approval in expired:
            await self._audit.record("bkjob-bot", "expired", channel=approval.channel, approval_id=approval.id)
            await self._refresh(approval)
            await self._reply(
                approval, f"<@{approval.requester}> your launch request expired without enough approvals."
            )
        return len(expired)

    async def _launch(self, approval: ApprovalRecord, votes: Sequence[Vote]) -> None:
        request = LaunchRequest(
            requester=approval.requester,
            channel=approval.channel,
            bk_biz_id=approval.bk_biz_id,
            bk_job_id=approval.bk_job_id,
            values=approval.values,
        )
        try:
            launch = await self._launches.launch(request, approval=approval, approved_by=[v.approver for v in votes])
        except LaunchFailed as exc:
            await self._store.set_approval_launch(approval.id, exc.launch.id, now=self._clock())
            await self._reply(approval, f"<@{approval.requester}> {explain(exc)}")
            return
        except BotError as exc:
            await self._reply(approval, f"<@{approval.requester}> the approved launch could not start. {explain(exc)}")
            return
        await self._store.set_approval_launch(approval.id, launch.id, now=self._clock())

    def _still_open(self, approval: ApprovalRecord) -> None:
        if approval.state is ApprovalState.PENDING and approval.expires_at <= self._clock():
            raise Decision(f"This request expired at {utc_time(approval.expires_at)}; nothing changed.")
        if approval.state is ApprovalState.EXPIRED:
            raise Decision(f"This request expired at {utc_time(approval.expires_at)}; nothing changed.")
        if approval.state is not ApprovalState.PENDING:
            when = utc_time(approval.decided_at) if approval.decided_at else "earlier"
            raise Decision(
                f"This request was already {approval.state.value} by {mention(approval.decided_by)} at {when}."
            )

    async def _is_approver(self, approvers: Sequence[str], user: str) -> bool:
        if user in approvers:
            return True
        for group in (a for a in approvers if a.startswith("S")):
            if self._directory is None:
                continue
            try:
                if user in await self._directory.group_members(group):
                    return True
            except SlackError as exc:
                log.warning("members of user group %s could not be read: %s", group, exc.error)
        return False

    async def _refresh(self, approval: ApprovalRecord) -> None:
        """Through the outbox: rendered from the store when sent, so concurrent votes coalesce into one edit."""
        await self._outbox.refresh_approval(approval)

    async def _reply(self, approval: ApprovalRecord, text: str) -> None:
        await self._outbox.post(approval.channel, notice(text), thread_ts=approval.message_ts)


def _same_message(approval: ApprovalRecord, origin: tuple[str, str]) -> bool:
    channel, ts = origin
    return channel == approval.channel and (approval.message_ts is None or ts == approval.message_ts)
