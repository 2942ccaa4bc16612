"""What the core has to show a channel or a person, as plain values: the chat wing decides how each one looks.

A card says *what* happened (a launch in its current state, an approval with its votes, a result with its failure
digest, a line in a thread); `bot.slack` renders it to Block Kit. Launch and approval cards are rendered from the
store when they are sent, so edits racing each other always show the latest state.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.bkjob.models import JobInstanceStatus
from bot.core.digest import FailureReport
from bot.core.reasons import Reason
from bot.store import ApprovalRecord, LaunchRecord, Vote

__all__ = ["ApprovalCard", "Card", "LaunchCard", "Note", "ResultCard"]


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


Card = LaunchCard | ApprovalCard | ResultCard | Note
