"""Run control: stop, retry, ignore an error, confirm a manual step, re-run; each sent to BK-JOB once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bot.bkjob.client import BkClient
from bot.bkjob.errors import BkApiError, BkError
from bot.bkjob.models import JobInstanceStatus, PlanStep, StepInstance, VariableType
from bot.core.approvals import Approvals
from bot.core.audit import Audit
from bot.core.cards import Confirmation, ConfirmationCard, ConfirmationDecided, Note, RollingPause
from bot.core.identity import Identities
from bot.core.launches import Launches, LaunchRequest
from bot.core.membership import is_listed
from bot.core.policy import APPROVERS, REQUESTER, Policy
from bot.core.ports import Directory, Messenger
from bot.core.reasons import Channel, Failure, People, Person, Reason, Slot, Tone, say
from bot.core.runstates import (
    CONFIRM_OPERATIONS,
    Operation,
    Target,
    find_target,
    is_confirmation,
    no_step,
    pause_key,
)
from bot.errors import BotError
from bot.store import LaunchRecord, LaunchState, Store

__all__ = ["Answer", "Operation", "Operations"]

log = logging.getLogger(__name__)

UNSUPPORTED_OPERATION = 1241003
"""BK-JOB: the operation does not apply to the job's (or step's) state now."""
NOT_CONFIRMER = 1244016
"""BK-JOB: only the step's confirmers may confirm it or end it."""
_STOP = 1  # TaskOperationEnum.TERMINATE_JOB


# StepOperationEnum codes (docs/bkjob.md §run-control).
_STEP_CODES = {
    Operation.RETRY_FAILED: 2,
    Operation.IGNORE: 3,
    Operation.RETRY_STEP: 8,
    Operation.CONFIRM: 6,
    Operation.END_CONFIRM: 9,
    Operation.NEXT_STEP: 11,
    Operation.CONTINUE_ROLLING: 13,
}
# Which policy list (`[operators]`) governs each: checked on the Slack person who clicks, never on the BK-JOB user.
_POLICY_KEY = {
    Operation.STOP: "stop",
    Operation.RETRY_FAILED: "retry",
    Operation.RETRY_STEP: "retry",
    Operation.IGNORE: "ignore",
    Operation.NEXT_STEP: "ignore",
    Operation.CONTINUE_ROLLING: "retry",
    Operation.RERUN: "rerun",
    Operation.CONFIRM: "confirm",
    Operation.END_CONFIRM: "confirm",
}
_VERB = {
    Operation.STOP: "stop",
    Operation.RETRY_FAILED: "retry",
    Operation.RETRY_STEP: "retry",
    Operation.IGNORE: "ignore errors of",
    Operation.NEXT_STEP: "skip a stopped step of",
    Operation.CONTINUE_ROLLING: "continue the rolling of",
    Operation.RERUN: "re-run",
    Operation.CONFIRM: "answer a confirmation step of",
    Operation.END_CONFIRM: "answer a confirmation step of",
}
_ROLES = {REQUESTER: "the requester", APPROVERS: "the channel's approvers"}
_FAILED_STEP_OPERATIONS = frozenset({Operation.RETRY_FAILED, Operation.IGNORE, Operation.RETRY_STEP})
# Operations that make a finished job (4, 9, 11) run again.
_RESUMING = frozenset({Operation.RETRY_FAILED, Operation.RETRY_STEP, Operation.IGNORE, Operation.NEXT_STEP})


@dataclass(frozen=True)
class Answer:
    """What the person who asked is told (only them); `replace` is what the clicked message becomes."""

    reason: Reason
    replace: ConfirmationDecided | None = None
    refused: bool = False
    """BK-JOB did nothing for this person (not a confirmer, no permission): the claim is given back, so that
    someone it allows may still do it. A 1241003 keeps it: the state moved on, the operation is spent."""


class Operations:
    """Each operation is claimed in the store before it is sent (a claim per job run or step run), so double
    clicks, Slack's retries and replicas send it once; BK-JOB decides whether it applies, and its refusals are
    explained. Nothing is retried: an operation whose answer was lost is reported as unknown."""

    def __init__(
        self,
        *,
        store: Store,
        bk: BkClient,
        policy: Policy,
        identities: Identities,
        directory: Directory | None,
        audit: Audit,
        messenger: Messenger,
        launches: Launches,
        approvals: Approvals,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._bk = bk
        self._policy = policy
        self._identities = identities
        self._directory = directory
        self._audit = audit
        self._messenger = messenger
        self._launches = launches
        self._approvals = approvals
        self._clock = clock

    async def find(self, channel: str, job_instance_id: int) -> LaunchRecord | None:
        """The launch of this channel that started the instance, however old (read through the instance's index)."""
        launch = await self._store.find_launch_by_instance(job_instance_id)
        if launch is None or launch.channel != channel:
            return None
        return launch

    async def operate(
        self, op: Operation, *, launch_id: str, user: str, channel: str, step_instance_id: int | None = None
    ) -> Answer:
        launch = await self._store.get_launch(launch_id)
        if launch is None or launch.channel != channel:
            return Answer(say("That button belongs to no launch of mine in this channel; nothing was sent."))
        refusal = await self._refusal(launch, op, user)
        if refusal is not None:
            await self._audit.record(
                user, f"{op.value}_refused", channel=channel, launch_id=launch.id, detail=str(refusal)
            )
            return Answer(say("{refusal}", Tone.REFUSED, refusal=refusal))
        if op is Operation.RERUN:
            return await self._rerun(launch, user)
        if launch.job_instance_id is None:
            return Answer(say("This launch has no BK-JOB instance (yet); nothing was sent."))
        try:
            bk_user = await self._identities.bk_username(user)
            detail = await self._bk.get_job_instance_status(
                bk_biz_id=launch.bk_biz_id, job_instance_id=launch.job_instance_id, bk_username=bk_user
            )
        except BotError as exc:
            return Answer(say("{error}", error=Failure(exc)))
        target, why = find_target(op, detail, step_instance_id)
        if target is None:
            await self._messenger.refresh_launch(launch)
            return Answer(why or no_step(detail))
        if op in CONFIRM_OPERATIONS and why is None:
            refusal = await self._not_a_named_confirmer(launch, op, user, bk_user, target)
            if refusal is not None:
                return Answer(refusal)
        key = _claim_key(launch, op, detail, target)
        if not await self._store.claim(key, now=self._clock()):
            return Answer(
                say("That was already sent to BK-JOB (a second click, or someone else's); nothing more was sent.")
            )
        if why is not None:  # BK-JOB would refuse it in this state: the person is told without a call
            await self._store.release(key)
            await self._messenger.refresh_launch(launch)
            return Answer(why)
        answer = await self._send(launch, op, user, bk_user, target)
        if answer.refused:
            await self._store.release(key)  # BK-JOB did nothing: someone else (a confirmer) may still do it
        return answer

    async def _send(self, launch: LaunchRecord, op: Operation, user: str, bk_user: str, target: Target) -> Answer:
        assert launch.job_instance_id is not None
        what = _describe(op, target)
        try:
            if op is Operation.STOP:
                await self._bk.operate_job_instance(
                    bk_biz_id=launch.bk_biz_id,
                    job_instance_id=launch.job_instance_id,
                    operation_code=_STOP,
                    bk_username=bk_user,
                )
            else:
                assert target.step is not None
                await self._bk.operate_step_instance(
                    bk_biz_id=launch.bk_biz_id,
                    job_instance_id=launch.job_instance_id,
                    step_instance_id=target.step.step_instance_id,
                    operation_code=_STEP_CODES[op],
                    bk_username=bk_user,
                )
        except BkError as exc:
            return await self._refused(launch, op, user, bk_user, target, exc)
        await self._audit.record(
            user,
            op.value,
            channel=launch.channel,
            launch_id=launch.id,
            job_instance_id=launch.job_instance_id,
            detail=f"{what} as {bk_user}: BK-JOB accepted",
        )
        await self._say(
            launch,
            say(
                "{user} asked BK-JOB to {what} (as `{bk_user}`); BK-JOB accepted.",
                Tone.STARTED,
                user=Person(user),
                what=what,
                bk_user=bk_user,
            ),
        )
        await self._follow(launch, op)
        replace = None
        if op in CONFIRM_OPERATIONS and target.step is not None:
            replace = ConfirmationDecided(
                step_number=target.number,
                step_name=target.step.name or str(target.step.step_instance_id),
                by=user,
                confirmed=op is Operation.CONFIRM,
            )
        return Answer(say("BK-JOB accepted: {what}.", Tone.DONE, what=what), replace=replace)

    async def _refused(
        self, launch: LaunchRecord, op: Operation, user: str, bk_user: str, target: Target, exc: BkError
    ) -> Answer:
        """Every answer is audited; 1241003 refreshes the buttons, 1244016 names who may confirm."""
        outcome = f"[{exc.code}] {exc.message}" if isinstance(exc, BkApiError) else str(exc)
        await self._audit.record(
            user,
            f"{op.value}_failed",
            channel=launch.channel,
            launch_id=launch.id,
            job_instance_id=launch.job_instance_id,
            detail=f"{_describe(op, target)} as {bk_user}: {outcome}",
        )
        if isinstance(exc, BkApiError) and exc.code == UNSUPPORTED_OPERATION:
            if launch.state is LaunchState.RUNNING:
                await self._store.schedule_poll(launch.id, at=self._clock())
            await self._messenger.refresh_launch(launch)
            return Answer(
                say(
                    "BK-JOB says that no longer applies ({outcome}): the job has moved on since the button was shown. "
                    "Nothing was done; the buttons are refreshed.",
                    Tone.INFO,
                    outcome=outcome,
                )
            )
        if isinstance(exc, BkApiError) and exc.code == NOT_CONFIRMER:
            confirmation = await self._confirmation(launch, target)
            who = confirmation.confirmers() if confirmation is not None else "the step's confirmers"
            return Answer(
                say(
                    "BK-JOB allows only the step's confirmers to answer it ({outcome}). You act as `{bk_user}`; who "
                    "may confirm: {who}.",
                    Tone.REFUSED,
                    outcome=outcome,
                    bk_user=bk_user,
                    who=who,
                ),
                refused=True,
            )
        if isinstance(exc, BkApiError):
            return Answer(say("{error}", error=Failure(exc)), refused=True)
        return Answer(
            say(
                "{error} It may or may not have reached BK-JOB: check there; I will not send it again.",
                error=Failure(exc),
            )
        )

    async def _not_a_named_confirmer(
        self, launch: LaunchRecord, op: Operation, user: str, bk_user: str, target: Target
    ) -> Reason | None:
        """Where BK-JOB names the step's confirm users and no role, it lets anyone pass (its confirmer check reads
        the roles only): the clicker's BK-JOB user must be one of those users. Roles named: BK-JOB decides that
        part; nobody named (v2, or a plan that names no one): the channel's policy alone."""
        confirmation = await self._confirmation(launch, target)
        if confirmation is None or not confirmation.named or confirmation.roles or not confirmation.users:
            return None
        if bk_user in confirmation.users:
            return None
        refusal = say(
            "BK-JOB names the step's confirmers: {who}. You act as `{bk_user}`, not one of them; nothing was sent.",
            Tone.REFUSED,
            who=confirmation.confirmers(),
            bk_user=bk_user,
        )
        await self._audit.record(
            user,
            f"{op.value}_refused",
            channel=launch.channel,
            launch_id=launch.id,
            job_instance_id=launch.job_instance_id,
            detail=f"{_describe(op, target)} as {bk_user}: not one of the step's confirm users",
        )
        return refusal

    async def _follow(self, launch: LaunchRecord, op: Operation) -> None:
        """A retried step or an ignored error makes a finished job run again: the launch is running again and the
        poller watches it; otherwise the poller reads the new state at once (a stop, an ended confirmation)."""
        now = self._clock()
        if op in _RESUMING and launch.finished_at is not None:
            await self._store.reopen_launch(launch.id, finished_at=launch.finished_at, job_status=2, now=now)
        elif launch.state is LaunchState.RUNNING:
            await self._store.schedule_poll(launch.id, at=now)
        fresh = await self._store.get_launch(launch.id)
        await self._messenger.refresh_launch(fresh or launch)

    async def _refusal(self, launch: LaunchRecord, op: Operation, user: str) -> str | Reason | None:
        """The channel's policy: may look into the business at all, then `[operators]` for this operation."""
        policy = self._policy.for_channel(launch.channel)
        refusal = policy.read_refusal(channel=launch.channel, bk_biz_id=launch.bk_biz_id)
        if refusal is not None:
            return refusal
        allowed = getattr(policy.operators, _POLICY_KEY[op])
        if REQUESTER in allowed and user == launch.requester:
            return None
        named = [a for a in allowed if a not in (REQUESTER, APPROVERS)]
        if APPROVERS in allowed:
            named += list(policy.approvers)
        if await is_listed(user, named, self._directory):
            return None
        listed = tuple(a for a in allowed if a not in (REQUESTER, APPROVERS))
        who = [_ROLES[w] for w in allowed if w in (REQUESTER, APPROVERS)] + (["{listed}"] if listed else [])
        return say(
            f"In {{channel}} only {', '.join(who) or 'nobody'} may {{verb}} a launch (the channel's policy); "
            "nothing was sent.",
            channel=Channel(launch.channel),
            listed=People(listed),
            verb=_VERB[op],
        )

    async def _rerun(self, launch: LaunchRecord, user: str) -> Answer:
        """A new launch of the same plan with the same values, by the person who clicked, through the channel's
        policy and (unless the policy says otherwise) its approval, like any launch."""
        policy = self._policy.for_channel(launch.channel)
        refusal = policy.refusal(channel=launch.channel, bk_biz_id=launch.bk_biz_id, bk_job_id=launch.bk_job_id)
        if refusal is not None:
            return Answer(say("{refusal}", Tone.REFUSED, refusal=refusal))
        if not await self._store.claim(f"op:{launch.id}:rerun", now=self._clock()):
            return Answer(say("A re-run of this launch was already requested; nothing more was sent."))
        request = LaunchRequest(
            requester=user,
            channel=launch.channel,
            bk_biz_id=launch.bk_biz_id,
            bk_job_id=launch.bk_job_id,
            values=_values(launch),
        )
        await self._audit.record(
            user,
            Operation.RERUN.value,
            channel=launch.channel,
            launch_id=launch.id,
            job_instance_id=launch.job_instance_id,
            detail=f"plan {launch.bk_job_id} in business {launch.bk_biz_id} with the values of launch {launch.id}",
        )
        try:
            if policy.rerun_needs_approval:
                await self._approvals.request(request, policy)
                return Answer(say("Re-run requested: it waits for an approval in the channel.", Tone.ASKED))
            await self._launches.launch(request)
        except BotError as exc:
            return Answer(say("{error}", error=Failure(exc)))
        return Answer(say("Re-run launched: see the new launch message in the channel.", Tone.STARTED))

    # -- manual confirmation: shown when the poller sees status 7 -------------------------------------------------

    async def show_confirmation(self, launch: LaunchRecord, detail: JobInstanceStatus) -> bool:
        """Post the waiting step's message, its confirmers and the buttons in the thread, once per step run
        (claimed, so replicas and repeated polls post it once); True when posted now."""
        waiting = next(((i, s) for i, s in enumerate(detail.steps, start=1) if s.status == 7), None)
        if waiting is None or launch.message_ts is None:
            return False
        number, step = waiting
        if not is_confirmation(step):  # a rolling step paused between batches: no question, no confirmers
            key = f"rolling-shown:{launch.id}:{pause_key(step)}"
            if not await self._store.claim(key, now=self._clock()):
                return False
            name = step.name or str(step.step_instance_id)
            pause = RollingPause(
                launch=launch, step_instance_id=step.step_instance_id, step_number=number, step_name=name
            )
            await self._messenger.post(launch.channel, pause, thread_ts=launch.message_ts)
            return True
        key = f"confirm-shown:{launch.id}:{step.step_instance_id}:{step.execute_count or 0}"
        if not await self._store.claim(key, now=self._clock()):
            return False
        confirmation = await self._confirmation(launch, Target(step=step, number=number))
        if confirmation is None:
            confirmation = _confirmation(step, number, None)
        if confirmation.allowed is None:
            confirmation = replace(confirmation, **_allowed(self._policy, launch))
        await self._messenger.post(
            launch.channel, ConfirmationCard(launch=launch, confirmation=confirmation), thread_ts=launch.message_ts
        )
        return True

    async def _confirmation(self, launch: LaunchRecord, target: Target) -> Confirmation | None:
        """The plan's step the waiting step is says what the confirmation asks and of whom."""
        if target.step is None:
            return None
        try:
            plan = await self._bk.get_job_detail(
                bk_biz_id=launch.bk_biz_id, bk_job_id=launch.bk_job_id, bk_username=launch.bk_username
            )
        except BkError as exc:
            log.warning("plan %s could not be read for its confirmation step: %s", launch.bk_job_id, exc)
            return _confirmation(target.step, target.number, None)
        confirmation = _confirmation(target.step, target.number, _plan_step(plan.plan_steps(), target.step))
        people: dict[str, list[str]] = {}
        for slack_user, bk_user in self._policy.users.items():
            if bk_user in confirmation.users:
                people.setdefault(bk_user, []).append(slack_user)
        return replace(confirmation, people=people, **_allowed(self._policy, launch))

    async def _say(self, launch: LaunchRecord, reason: Reason) -> None:
        if launch.message_ts is not None:
            await self._messenger.post(launch.channel, Note(reason), thread_ts=launch.message_ts)


def _claim_key(launch: LaunchRecord, op: Operation, detail: JobInstanceStatus, target: Target) -> str:
    """One claim per run of what is acted on: a stop per run of the job, one decision (retry, retry all or
    ignore; confirm or end) per run of a step. A later run (after a retry) can be operated on again."""
    if target.step is None:
        runs = sum(s.execute_count or 0 for s in detail.steps) + sum(1 for s in detail.steps if s.status == 6)
        return f"op:{launch.id}:{op.value}:{runs}"
    if op is Operation.CONTINUE_ROLLING:
        return f"op:{launch.id}:rolling:{pause_key(target.step)}"
    group = "confirm" if op in CONFIRM_OPERATIONS else "failed"
    return f"op:{launch.id}:{group}:{target.step.step_instance_id}:{target.step.execute_count or 0}"


def _describe(op: Operation, target: Target) -> str:
    name = f"step {target.number}"
    if target.step is not None and target.step.name and target.step.name != name:
        name += f" ({target.step.name})"
    return {
        Operation.STOP: "stop the job",
        Operation.RETRY_FAILED: f"retry the failed hosts of {name}",
        Operation.IGNORE: f"ignore the error of {name} and continue",
        Operation.RETRY_STEP: f"retry {name} on all its hosts",
        Operation.CONFIRM: f"confirm {name} and continue",
        Operation.END_CONFIRM: f"stop the job at {name}",
        Operation.NEXT_STEP: f"leave the stopped {name} and go on with the next step",
        Operation.CONTINUE_ROLLING: f"continue the rolling of {name} with its next batch",
        Operation.RERUN: "re-run the launch",
    }[op]


def _plan_step(steps: Sequence[PlanStep], step: StepInstance) -> PlanStep | None:
    """v2 by `step_id`; v3 (whose plan detail also lists disabled steps, which a run does not have, and whose
    steps carry no `step_id`) by name and type, and None where that is ambiguous: no confirmers rather than the
    wrong ones."""
    if step.step_id is not None:
        return next((p for p in steps if p.step_id == step.step_id), None)
    same = [p for p in steps if p.name == step.name and (step.type is None or p.type == step.type)]
    return same[0] if len(same) == 1 else None


def _confirmation(step: StepInstance, number: int, plan_step: PlanStep | None) -> Confirmation:
    named = plan_step is not None and (plan_step.confirm_users is not None or plan_step.confirm_roles is not None)
    return Confirmation(
        step_instance_id=step.step_instance_id,
        step_number=number,
        step_name=step.name or (plan_step.name if plan_step else None) or str(step.step_instance_id),
        message=plan_step.confirm_message if plan_step else None,
        users=list(plan_step.confirm_users or []) if plan_step else [],
        roles=list(plan_step.confirm_roles or []) if plan_step else [],
        named=named,
    )


def _allowed(policy: Policy, launch: LaunchRecord) -> dict[str, Any]:
    """Who the channel's `[operators] confirm` lets answer a confirmation: in words (each by name, to notify
    them), and their chat IDs (`Confirmation.allowed`, `.answerers`)."""
    listed = policy.for_channel(launch.channel)
    parts: list[str] = []
    slots: dict[str, Slot] = {}
    answerers: list[str] = []
    for who in listed.operators.confirm:
        if who == REQUESTER:
            parts.append("the requester ({requester})")
            slots["requester"] = Person(launch.requester)
            answerers.append(launch.requester)
        elif who == APPROVERS and listed.approvers:
            parts.append("the channel's approvers ({approvers})")
            slots["approvers"] = People(listed.approvers)
            answerers.extend(listed.approvers)
    named = tuple(a for a in listed.operators.confirm if a not in (REQUESTER, APPROVERS))
    if named:
        parts.append("{listed}")
        slots["listed"] = People(named)
        answerers.extend(named)
    words = Reason(", ".join(parts) or "nobody (the channel's `[operators] confirm` names no one)", slots)
    return {"allowed": words, "answerers": tuple(dict.fromkeys(answerers))}


def _values(launch: LaunchRecord) -> dict[str, str]:
    """The values the launch sent, as a person would type them: a host variable's shown text leads with its
    counts ("2 IPs: …"), the rest is the list; passwords are never taken from Slack and keep the plan's value."""
    values: dict[str, str] = {}
    for var in launch.variables:
        if var.category == VariableType.PASSWORD:
            continue
        values[var.name] = var.shown.partition(": ")[2] if var.category == VariableType.HOST_LIST else var.shown
    return values
