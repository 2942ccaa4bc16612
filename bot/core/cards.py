"""What the core has to show a channel or a person, as plain values: the chat wing decides how each one looks.

A card says *what* happened (a launch in its current state, an approval with its votes, a result with its failure
digest, a line in a thread); `bot.slack` renders it to Block Kit. Launch and approval cards are rendered from the
store when they are sent, so edits racing each other always show the latest state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bot.bkjob.models import JobInstanceStatus
from bot.core.digest import FailureReport
from bot.core.reasons import People, Quoted, Reason, Slot, say
from bot.store import ApprovalRecord, LaunchRecord, Vote

__all__ = [
    "ApprovalCard",
    "Card",
    "Confirmation",
    "ConfirmationCard",
    "ConfirmationDecided",
    "LaunchCard",
    "Note",
    "ResultCard",
    "RollingPause",
]


@dataclass(frozen=True)
class LaunchCard:
    """The launch message: the thread everything about the launch goes to."""

    launch: LaunchRecord


@dataclass(frozen=True)
class ApprovalCard:
    """The approval request, with the votes cast so far."""

    approval: ApprovalRecord
    votes: tuple[Vote, ...] = ()


@dataclass(frozen=True)
class ResultCard:
    """A run's end, posted in its thread: the final status, the steps, and where it failed the failure digest
    (`report`: None when the channel's policy shows none) and whether full logs may be asked for."""

    launch: LaunchRecord
    job_status: int
    detail: JobInstanceStatus
    report: FailureReport | None = None
    logs_button: bool = False


@dataclass(frozen=True)
class Note:
    """A line in a thread, or told to one person."""

    reason: Reason


# -- run control: a manual confirmation waiting in a launch's thread, and its answer --------------------------------

_TRIGGER_ROLE = "JOB_RESOURCE_TRIGGER_USER"


@dataclass(frozen=True)
class Confirmation:
    """A step waiting in status 7 for its confirmer, and what BK-JOB says of it (v2 names no confirmers)."""

    step_instance_id: int
    step_number: int
    step_name: str
    message: str | None
    users: Sequence[str]
    roles: Sequence[str]
    named: bool
    """Whether BK-JOB told who may confirm (v3's plan detail does, v2's does not)."""
    people: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """BK-JOB user -> the chat users the policy maps to it, so the thread can name who may answer."""
    allowed: Reason | None = None
    """Who the channel's policy (`[operators] confirm`) lets answer it, checked on the chat user who clicks."""
    answerers: Sequence[str] = ()
    """Those people and groups by chat ID (the requester, the approvers, the listed), to notify."""

    def who_may_answer(self) -> Reason:
        """The channel's policy first (it always applies), then what BK-JOB itself requires, where it says."""
        if self.allowed is None:
            return self.confirmers()
        if not self.named:
            return say(
                "{allowed} (the channel's policy), acting in BK-JOB as one of the step's confirmers where it names "
                "any (BK-JOB's v2 API does not name them; BK-JOB checks)",
                allowed=self.allowed,
            )
        if not self.users and not self.roles:
            return say("{allowed} (the channel's policy; the plan names no confirmer)", allowed=self.allowed)
        return say(
            "{allowed} (the channel's policy), acting in BK-JOB as one of the step's confirmers: {bk}",
            allowed=self.allowed,
            bk=self.confirmers(),
        )

    def confirmers(self) -> Reason:
        """Who may confirm: the BK-JOB users (with the people the policy maps to each) and roles the plan names."""
        if not self.named:
            return say("the step's confirmers in BK-JOB (BK-JOB's v2 API does not name them; BK-JOB checks)")
        parts: list[str] = []
        slots: dict[str, Slot] = {}
        for i, user in enumerate(self.users):
            slots[f"user{i}"] = Quoted(user)
            if self.people.get(user):
                slots[f"people{i}"] = People(tuple(self.people[user]))
                parts.append(f"`{{user{i}}}` ({{people{i}}})")
            else:
                parts.append(f"`{{user{i}}}`")
        for i, role in enumerate(self.roles):
            if role == _TRIGGER_ROLE:
                parts.append(f"whoever launched the job (role `{_TRIGGER_ROLE}`)")
            else:
                slots[f"role{i}"] = Quoted(role)
                parts.append(f"role `{{role{i}}}`")
        return Reason(", ".join(parts) or "nobody (the plan names no confirmer)", slots)


@dataclass(frozen=True)
class ConfirmationCard:
    """Posted in the launch's thread when the job waits in 7: the step's message, who may confirm, and a way to
    confirm it or stop the job there."""

    launch: LaunchRecord
    confirmation: Confirmation


@dataclass(frozen=True)
class ConfirmationDecided:
    """What the confirmation card becomes once BK-JOB accepted a decision: nothing left to answer."""

    step_number: int
    step_name: str
    by: str
    confirmed: bool


@dataclass(frozen=True)
class RollingPause:
    """Posted in the launch's thread when a rolling step waits in 7 between two batches (BK-JOB's manual rolling
    mode): no question and no confirmers, only a way to run its next batch (or stop the job)."""

    launch: LaunchRecord
    step_instance_id: int
    step_number: int
    step_name: str


Card = LaunchCard | ApprovalCard | ResultCard | Note | ConfirmationCard | ConfirmationDecided | RollingPause
