"""Run control's view of a job's state: which operation BK-JOB allows on what, checked before any call.

BK-JOB's own checks (docs/bkjob.md §run-control, job-execute's `TaskExecuteServiceImpl`): terminate while the job
runs or waits (2, 7), except at a manual confirmation, where BK-JOB accepts the stop and never carries it out; retry
(2, 8) on a step in 4, 9 or 11; ignore (3) in 4 or 9; next step (11) in 11; confirm and end the confirmation (6, 9)
on a confirmation step in 7; continue rolling (13) on another step in 7 (a rolling pause).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.bkjob import status
from bot.bkjob.models import JobInstanceStatus, StepInstance
from bot.core.reasons import Reason, Tone, say

__all__ = [
    "CONFIRM_OPERATIONS",
    "Operation",
    "Target",
    "find_target",
    "is_confirmation",
    "no_step",
    "pause_key",
]


class Operation(StrEnum):
    """What a person may ask of a launch's run; each step operation is one of BK-JOB's `StepOperationEnum` codes."""

    STOP = "stop"
    RETRY_FAILED = "retry_failed_hosts"
    IGNORE = "ignore_error"
    RETRY_STEP = "retry_step"
    CONFIRM = "confirm"
    END_CONFIRM = "end_confirmation"
    NEXT_STEP = "next_step"
    CONTINUE_ROLLING = "continue_rolling"
    RERUN = "rerun"


CONFIRM_OPERATIONS = frozenset({Operation.CONFIRM, Operation.END_CONFIRM})
# The step states BK-JOB allows each failed-step operation in (TaskExecuteServiceImpl: isStepRetryable,
# ignoreError, nextStep); 6, 9 and 13 want a step in 7 of the right type (a confirmation, or a rolling step).
STEP_STATES = {
    Operation.RETRY_FAILED: frozenset({4, 9, 11}),
    Operation.RETRY_STEP: frozenset({4, 9, 11}),
    Operation.IGNORE: frozenset({4, 9}),
    Operation.NEXT_STEP: frozenset({11}),
}
CONFIRMATION_TYPE = 3  # StepExecuteTypeEnum: a manual confirmation


@dataclass(frozen=True)
class Target:
    step: StepInstance | None
    number: int  # the step's position, from 1; 0 for the whole job


def find_target(
    op: Operation, detail: JobInstanceStatus, step_instance_id: int | None
) -> tuple[Target | None, Reason | None]:
    """What the operation acts on in the job as BK-JOB reports it now (the job, the step a failed-step operation
    applies to, or the step a thread button names), and why BK-JOB would refuse it in this state (None: it
    applies). BK-JOB's own checks (docs/bkjob.md §run-control): terminate in 2 or 7, except at a manual
    confirmation, where the stop is never carried out; 2 and 8 on a step in 4, 9 or 11, 3 in 4 or 9, 11 in 11;
    6 and 9 on a confirmation step in 7, 13 on another step in 7 (a rolling pause)."""
    job = detail.job_instance.status
    steps = list(enumerate(detail.steps, start=1))
    if op is Operation.STOP:
        whole = Target(step=None, number=0)
        if job not in (2, 7):
            return whole, moved_on(job)
        waiting = next(((i, s) for i, s in steps if s.status == 7 and is_confirmation(s)), None)
        if waiting is not None:
            return whole, say(
                "The job waits for a confirmation at step {number}: BK-JOB would leave it stopping there for ever. "
                "Use *Stop here* on the question in the thread instead; nothing was sent.",
                Tone.INFO,
                number=str(waiting[0]),
            )
        return whole, None
    if op in CONFIRM_OPERATIONS or op is Operation.CONTINUE_ROLLING:
        found = next(((i, s) for i, s in steps if s.step_instance_id == step_instance_id), None)
        if found is None:
            return None, say("That button names no step of this job; nothing was sent.")
        number, step = found
        confirming = op is not Operation.CONTINUE_ROLLING
        if step.status == 7 and is_confirmation(step) == confirming:
            return Target(step=step, number=number), None
        return Target(step=step, number=number), say(
            "That no longer applies: step {number} does not wait for {what} now (it is {status}). Nothing was "
            "sent; the buttons are refreshed.",
            number=str(number),
            what="a confirmation" if confirming else "the next batch",
            status=status.describe(step.status),
        )
    states = STEP_STATES[op]
    failed = next(((i, s) for i, s in steps if s.status in states), None)
    return (Target(step=failed[1], number=failed[0]), None) if failed else (None, None)


def pause_key(step: StepInstance) -> str:
    """One pause of a rolling step: its run and how many of its hosts are done (each batch adds some)."""
    return f"{step.step_instance_id}:{step.execute_count or 0}:{step.host_counts()[0]}"


def is_confirmation(step: StepInstance) -> bool:
    """A manual-confirmation step (type 3); a step of unknown type in 7 is taken for one, as before."""
    return step.type is None or step.type == CONFIRMATION_TYPE


def moved_on(job: int) -> Reason:
    return say(
        "That no longer applies: the job is {status} now. Nothing was sent; the buttons are refreshed.",
        status=status.describe(job),
    )


def no_step(detail: JobInstanceStatus) -> Reason:
    return say(
        "That no longer applies: the job is {status} now, with no failed step to act on. Nothing was "
        "sent; the buttons are refreshed.",
        status=status.describe(detail.job_instance.status),
    )
