"""BK-JOB's status codes as people read them."""

from __future__ import annotations

from bot.bkjob import status
from bot.slack.blocks.text import status_emoji


def test_there_is_no_status_12() -> None:
    """JOB's docs list 12 "force-stop failed", RunStatusEnum has none (docs/bkjob.md §status): shown as its number."""
    assert status.describe(12) == "status 12" and status_emoji(12) == ":grey_question:"
    assert [status.describe(c) for c in (11, 13)] == ["force-stopped", "confirmation terminated"]


def test_a_step_never_run_in_a_finished_job_reads_not_run() -> None:
    assert status.describe_step(1, job_finished=True) == "not run"
    assert status.describe_step(1, job_finished=False) == "waiting"
    assert status.describe_step(4, job_finished=True) == "failed"
