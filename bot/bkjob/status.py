"""BK-JOB's job and step status codes (RunStatusEnum): their words, and which are finished or successful.

There is no 12: JOB's docs list "force-stop failed", but RunStatusEnum has no such value (docs/bkjob.md §status).
"""

from __future__ import annotations

__all__ = ["FINISHED", "SUCCESSFUL", "describe", "describe_step", "is_finished"]

_WORDS: dict[int, str] = {
    1: "waiting",
    2: "running",
    3: "succeeded",
    4: "failed",
    5: "skipped",
    6: "error ignored",
    7: "waiting for a user",
    8: "terminated",
    9: "abnormal state",
    10: "stopping",
    11: "force-stopped",
    13: "confirmation terminated",
    14: "abandoned",
    15: "rolling wait",
}

FINISHED = frozenset({3, 4, 5, 6, 8, 9, 11, 13, 14})
SUCCESSFUL = frozenset({3, 5, 6})


def describe(code: int) -> str:
    """An unknown code is shown as its number, never dropped."""
    return _WORDS.get(code, f"status {code}")


def describe_step(code: int, *, job_finished: bool) -> str:
    """A step still in 1 (BLANK) when its job has finished never ran: "not run", not "waiting"."""
    if code == 1 and job_finished:
        return "not run"
    return describe(code)


def is_finished(code: int) -> bool:
    return code in FINISHED
