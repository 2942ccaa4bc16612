"""Approval policy and the pending → approved / rejected / expired state machine."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from bot.bkjob.client import BkClient
from bot.bkjob.errors import BkError
from bot.bkjob.models import JobDetail
from bot.core.audit import Audit
from bot.core.cards import ApprovalCard, Note
from bot.core.errors import ChatError, Refusal
from bot.core.identity import Identities
from bot.core.launches import Launches, LaunchFailed, LaunchRequest
from bot.core.membership import is_listed
from bot.core.policy import ChannelPolicy, Policy
from bot.core.ports import Directory, Messenger
from bot.core.reasons import Failure, Moment, Person, Plain, Quoted, Reason, people, say
from bot.errors import BotError
from bot.store import ApprovalRecord, ApprovalState, Store, Vote

__all__ = ["Approvals", "Decision", "plan_changes", "plan_version"]

log = logging.getLogger(__name__)


class Decision(Refusal):
    """A click or a request that changes nothing; its reason tells the person why (ephemerally)."""


class Approvals:
    """Every state change is one conditional update in the store: only the caller that wins it acts."""

    def __init__(
        self,
        *,
        store: Store,
        launches: Launches,
        messenger: Messenger,
        directory: Directory | None,
        audit: Audit,
        identities: Identities | None = None,
        policy: Policy | None = None,
        bk: BkClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bk = bk
        self._identities = identities
        self._policy = policy
        # Counting open requests and adding one is one step per process, so a burst cannot slip past the caps.
        self._creating = asyncio.Lock()
        self._store = store
        self._launches = launches
        self._messenger = messenger
        self._directory = directory
        self._audit = audit
        self._clock = clock

    async def request(self, request: LaunchRequest, policy: ChannelPolicy) -> ApprovalRecord:
        """Check everything a launch would check, then post the request instead of launching."""
        await self._within_caps(request, policy)  # before BK-JOB is asked anything
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
            plan_version=plan_version(prepared.plan),
        )
        async with self._creating:
            await self._within_caps(request, policy)
            await self._store.create_approval(approval)
        try:
            # Paced with the channel's other posts; a busy channel delays the request rather than refusing it.
            ts = await self._messenger.announce(approval.channel, ApprovalCard(approval), requester=approval.requester)
        except ChatError as exc:
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

    async def _same_plan(self, approval: ApprovalRecord, user: str) -> None:
        """An approval is for the plan as it was requested: read it as it is now (past the cache) and, when its
        steps, targets or variables changed, close the request; the requester asks again for the plan as it is."""
        if self._bk is None or approval.plan_version is None:
            return
        try:
            plan = await self._bk.get_job_detail(
                bk_biz_id=approval.bk_biz_id, bk_job_id=approval.bk_job_id, bk_username=approval.bk_username, fresh=True
            )
        except BkError as exc:
            raise Decision(
                say(
                    "I could not read plan {plan} to check it is unchanged ({error}); nothing was approved. Try again.",
                    plan=approval.bk_job_id,
                    error=Quoted(str(exc)),
                )
            ) from exc
        changes = plan_changes(approval.plan_version, plan_version(plan))
        if not changes:
            return
        what = "; ".join(changes)
        reason = f"plan {approval.bk_job_id} changed in BK-JOB since the request ({what})"
        if await self._store.decide(
            approval.id, ApprovalState.REJECTED, by="bkjob-bot", now=self._clock(), reason=reason
        ):
            await self._audit.record(
                user, "plan_changed", channel=approval.channel, approval_id=approval.id, detail=what
            )
            closed = await self._store.get_approval(approval.id) or approval
            await self._refresh(closed)
            await self._reply(
                closed,
                say(
                    "{requester} the plan changed in BK-JOB before this request was approved ({what}), so nothing "
                    "was launched. Run the command again to ask for the plan as it is now.",
                    requester=Person(approval.requester),
                    what=what,
                ),
            )
        raise Decision(
            say(
                "The plan changed in BK-JOB since this request was made: {what}. Nothing was approved or launched; "
                "the requester has to ask again for the plan as it is now.",
                what=what,
            )
        )

    async def _within_caps(self, request: LaunchRequest, policy: ChannelPolicy) -> None:
        """A flood of requests (each mentioning the approvers) is refused once the channel's caps are reached."""
        pending = await self._store.pending_approvals(request.channel)
        mine = sum(1 for approval in pending if approval.requester == request.requester)
        if mine >= policy.max_pending_per_person:
            raise Decision(
                say(
                    "You already have {mine} approval requests waiting here (at most {cap}): wait for them to be "
                    "decided or to expire (`/bkjob pending` lists them). Nothing was requested.",
                    mine=mine,
                    cap=policy.max_pending_per_person,
                )
            )
        if len(pending) >= policy.max_pending:
            raise Decision(
                say(
                    "This channel already has {pending} approval requests waiting (at most {cap}): try again once "
                    "some are decided. Nothing was requested.",
                    pending=len(pending),
                    cap=policy.max_pending,
                )
            )

    async def check_approver(
        self, approval_id: str, user: str, *, origin: tuple[str, str] | None = None
    ) -> ApprovalRecord:
        """The request, if `user` may decide it now; otherwise a Decision saying why not.

        `origin` is the (channel, message ts) the button was clicked on: a button value is only a reference, so a
        value copied onto another message (or another request's ID) must not decide a request it was not shown on.
        """
        approval = await self._store.get_approval(approval_id)
        if approval is None:
            raise Decision(say("This approval request is unknown to me; nothing changed."))
        if origin is not None and not _same_message(approval, origin):
            log.warning("approval %s clicked from another message (%s)", approval.id, origin[0])
            raise Decision(say("This button does not belong to that approval request; nothing changed."))
        self._still_open(approval)
        if user == approval.requester:
            raise Decision(say("You cannot approve or reject your own launch: another approver has to."))
        approvers = self._current_approvers(approval)
        if not await is_listed(user, approvers, self._directory):
            # Nobody listed any more reads "Only  may decide", as it always has.
            who = people(approvers) if approvers else ""
            raise Decision(say("Only {who} may decide this request; nothing changed.", who=who))
        if await self._bk_user(user) == approval.bk_username:
            # A second Slack account of the requester's BK-JOB user is still the requester.
            raise Decision(
                say(
                    "You act as the same BK-JOB user as the requester (`{bk_username}`), so you cannot decide this "
                    "request: another approver has to.",
                    bk_username=approval.bk_username,
                )
            )
        return approval

    def _current_approvers(self, approval: ApprovalRecord) -> list[str]:
        """Listed when requested and still listed now: an approver removed from the policy no longer decides."""
        if self._policy is None:
            return list(approval.approvers)
        now_listed = set(self._policy.for_channel(approval.channel).approvers)
        return [a for a in approval.approvers if a in now_listed]

    async def _bk_user(self, user: str) -> str:
        """Deciding is acting: a person with no BK-JOB user (or whose profile cannot be read) is refused."""
        if self._identities is None:
            return user
        try:
            return await self._identities.bk_username(user)
        except BotError as exc:
            raise Decision(say("{error} Nothing changed.", error=Plain(str(exc)))) from exc

    async def _distinct_voters(self, votes: Sequence[Vote]) -> int:
        """Approvals count once per BK-JOB user: two Slack accounts of one person are one approval."""
        users: set[str] = set()
        for vote in votes:
            try:
                users.add(await self._bk_user(vote.approver))
            except Decision:
                log.warning("approver %s no longer maps to a BK-JOB user; the vote is not counted", vote.approver)
        return len(users)

    def _policy_refusal(self, approval: ApprovalRecord) -> Reason | None:
        """The channel's policy as it is now: a plan forbidden since the request was made does not launch."""
        if self._policy is None:
            return None
        return self._policy.for_channel(approval.channel).refusal(
            channel=approval.channel, bk_biz_id=approval.bk_biz_id, bk_job_id=approval.bk_job_id
        )

    async def approve(self, approval_id: str, user: str, *, origin: tuple[str, str] | None = None) -> None:
        approval = await self.check_approver(approval_id, user, origin=origin)
        refusal = self._policy_refusal(approval)
        if refusal is not None:
            await self._audit.record(user, "approval_refused", channel=approval.channel, approval_id=approval.id)
            raise Decision(say("{refusal} Nothing was approved or launched.", refusal=refusal))
        await self._same_plan(approval, user)
        me = await self._bk_user(user)
        for vote in await self._store.votes(approval.id):
            if vote.approver != user and await self._bk_user_or_none(vote.approver) == me:
                raise Decision(
                    say(
                        "{approver} has already approved as the same BK-JOB user (`{me}`); it counts once, so "
                        "another approver is needed.",
                        approver=Person(vote.approver),
                        me=me,
                    )
                )
        now = self._clock()
        if not await self._store.add_vote(approval.id, user, now=now):
            fresh = await self._store.get_approval(approval.id) or approval
            self._still_open(fresh)
            raise Decision(say("You have already approved this request."))
        votes = await self._store.votes(approval.id)
        await self._audit.record(
            user, "approval_vote", channel=approval.channel, approval_id=approval.id, detail=f"{len(votes)}"
        )
        if await self._distinct_voters(votes) < approval.min_approvals:
            await self._refresh(approval)
            return
        if not await self._store.decide(approval.id, ApprovalState.APPROVED, by=user, now=self._clock()):
            fresh = await self._store.get_approval(approval.id) or approval
            self._still_open(fresh)
            raise Decision(say("This request could not be approved; try again."))
        await self._audit.record(user, "approved", channel=approval.channel, approval_id=approval.id)
        approved = await self._store.get_approval(approval.id) or approval
        await self._refresh(approved)
        await self._launch(approved, votes)

    async def reject(self, approval_id: str, user: str, reason: str | None) -> None:
        approval = await self.check_approver(approval_id, user)
        if not await self._store.decide(approval.id, ApprovalState.REJECTED, by=user, now=self._clock(), reason=reason):
            fresh = await self._store.get_approval(approval.id) or approval
            self._still_open(fresh)
            raise Decision(say("This request could not be rejected; try again."))
        await self._audit.record(
            user, "rejected", channel=approval.channel, approval_id=approval.id, detail=reason or None
        )
        rejected = await self._store.get_approval(approval.id) or approval
        await self._refresh(rejected)
        said = say(
            "{requester} your launch was rejected by {user}" + (": {reason}" if reason else "."),
            requester=Person(rejected.requester),
            user=Person(user),
            reason=Quoted(reason or ""),
        )
        await self._reply(rejected, said)

    async def expire_due(self) -> int:
        """Expire every request past its deadline; the sweeper calls this, at start-up too."""
        expired = await self._store.expire_due(now=self._clock())
        for approval in expired:
            await self._audit.record("bkjob-bot", "expired", channel=approval.channel, approval_id=approval.id)
            await self._refresh(approval)
            await self._reply(
                approval,
                say(
                    "{requester} your launch request expired without enough approvals.",
                    requester=Person(approval.requester),
                ),
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
            await self._reply(
                approval, say("{requester} {error}", requester=Person(approval.requester), error=Failure(exc))
            )
            return
        except BotError as exc:
            await self._reply(
                approval,
                say(
                    "{requester} the approved launch could not start. {error}",
                    requester=Person(approval.requester),
                    error=Failure(exc),
                ),
            )
            return
        await self._store.set_approval_launch(approval.id, launch.id, now=self._clock())

    async def _bk_user_or_none(self, user: str) -> str | None:
        try:
            return await self._bk_user(user)
        except Decision:
            return None

    def _still_open(self, approval: ApprovalRecord) -> None:
        expired = approval.state is ApprovalState.PENDING and approval.expires_at <= self._clock()
        if expired or approval.state is ApprovalState.EXPIRED:
            raise Decision(say("This request expired {at}; nothing changed.", at=Moment(approval.expires_at)))
        if approval.state is not ApprovalState.PENDING:
            raise Decision(
                say(
                    "This request was already {state} by {who} ({at}).",
                    state=approval.state.value,
                    who=Person(approval.decided_by),
                    at=Moment(approval.decided_at) if approval.decided_at else "earlier",
                )
            )

    async def _refresh(self, approval: ApprovalRecord) -> None:
        """Rendered from the store when sent, so concurrent votes coalesce into one edit."""
        await self._messenger.refresh_approval(approval)

    async def _reply(self, approval: ApprovalRecord, reason: Reason) -> None:
        await self._messenger.post(approval.channel, Note(reason), thread_ts=approval.message_ts)


def _same_message(approval: ApprovalRecord, origin: tuple[str, str]) -> bool:
    channel, ts = origin
    return channel == approval.channel and (approval.message_ts is None or ts == approval.message_ts)


def plan_version(plan: JobDetail) -> dict[str, Any]:
    """The plan's last change time and digests of its steps (with their targets) and of each variable (with its
    host targets): enough to tell an approver what changed without storing the plan itself."""
    variables = {v.name: _digest(v.model_dump(mode="json")) for v in plan.variables}
    return {"modified": str(plan.last_modify_time or ""), "steps": _digest(plan.steps or []), "variables": variables}


def plan_changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two versions, in words; empty when the plan is the same."""
    changes: list[str] = []
    if before.get("steps") != now.get("steps"):
        changes.append("its steps or their targets changed")
    old_vars: dict[str, str] = before.get("variables") or {}
    new_vars: dict[str, str] = now.get("variables") or {}
    for name in sorted(old_vars.keys() | new_vars.keys()):
        if name not in new_vars:
            changes.append(f"variable `{name}` was removed")
        elif name not in old_vars:
            changes.append(f"variable `{name}` was added")
        elif old_vars[name] != new_vars[name]:
            changes.append(f"variable `{name}` changed")
    if changes and now.get("modified") and now.get("modified") != before.get("modified"):
        changes.append(f"last changed {now['modified']}")
    return changes


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
