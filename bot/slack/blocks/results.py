"""The result reply in a launch's thread (steps, failure digest, Logs button) and `/bkjob status`'s instance text."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, MarkdownTextObject, SectionBlock

from bot.bkjob import status
from bot.bkjob.models import JobInstanceStatus
from bot.slack.blocks.text import MAX_SECTION, Message, cut, duration, job_url, status_emoji, untrusted
from bot.store.records import LaunchRecord

__all__ = [
    "result_reply",
    "LOGS_ACTION",
    "instance_status",
]


def result_reply(
    launch: LaunchRecord,
    *,
    job_status: int,
    detail: JobInstanceStatus | None,
    web_root: str | None,
    digest: Sequence[str] = (),
    logs_button: bool = False,
) -> Message:
    """The thread reply: status, plan, instance, duration, every step, and host counts where a step failed."""
    word = status.describe(job_status)
    url = job_url(web_root, launch.job_instance_id)
    instance = f"<{url}|{launch.job_instance_id}>" if url else str(launch.job_instance_id)
    lines = [
        f"{status_emoji(job_status)} *{word.capitalize()}*{_after_retry(detail)}: {untrusted(launch.plan_name)}, "
        f"instance {instance}"
    ]
    if detail is not None and detail.job_instance.total_time is not None:
        lines.append(f"Ran for {duration(detail.job_instance.total_time)}")
    steps = _step_lines(detail)
    if job_status in status.SUCCESSFUL and detail is not None and detail.steps:
        if all(step.status in status.SUCCESSFUL for step in detail.steps):
            # Nothing to look at step by step: one line says so.
            count = len(detail.steps)
            steps = [f"All {count} steps succeeded." if count > 1 else "Its one step succeeded."]
    if job_status not in status.SUCCESSFUL:
        lines.append(f"<@{launch.requester}>, your launch {word}.")
    head = "\n".join(lines)
    more = f"\n… more in <{url}|BK-JOB>" if url else "\n… more in BK-JOB"
    body = _fit(head, steps, MAX_SECTION, more)
    text = f"{word.capitalize()}: {untrusted(launch.plan_name)}, instance {launch.job_instance_id}"
    blocks = [SectionBlock(text=MarkdownTextObject(text=body)).to_dict(), *_digest_blocks(digest, launch, logs_button)]
    return Message(text=cut(text, 3000), blocks=blocks)


LOGS_ACTION = "bkjob_logs"
_MAX_DIGEST_BLOCKS = 40  # Slack takes 50 blocks a message; the reply's own section and the button come first


def _digest_blocks(digest: Sequence[str], launch: LaunchRecord, logs_button: bool) -> list[dict[str, Any]]:
    """The failure digest (bot.core.digest: mrkdwn sections already within Slack's limits) and the *Logs* button."""
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=cut(t, MAX_SECTION))) for t in digest]
    blocks = blocks[:_MAX_DIGEST_BLOCKS]
    if logs_button:
        button = ButtonElement(text="Logs", action_id=LOGS_ACTION, value=launch.id)
        blocks.append(ActionsBlock(elements=[button]))
    return [b.to_dict() for b in blocks]


def _after_retry(detail: JobInstanceStatus | None) -> str:
    """A job that finishes again after a step was retried says so: " after retry of step 2"."""
    if detail is None:
        return ""
    retried = [i for i, step in enumerate(detail.steps, start=1) if (step.execute_count or 0) > 0]
    if not retried:
        return ""
    return f" after retry of step {', '.join(str(i) for i in retried)}"


def _step_lines(detail: JobInstanceStatus | None) -> list[str]:
    if detail is None:
        return []
    lines = []
    for step in detail.steps:
        took = f" ({duration(step.total_time)})" if step.total_time is not None else ""
        name = untrusted(step.name or str(step.step_instance_id))
        line = f"{status_emoji(step.status)} {name}: {status.describe_step(step.status, job_finished=True)}{took}"
        if step.status not in status.SUCCESSFUL and step.status != 1 and step.step_ip_status:
            ok, total = step.host_counts()
            line += f", {total - ok} of {total} hosts failed"
        lines.append(line)
    return lines


def _fit(head: str, lines: Sequence[str], limit: int, more: str) -> str:
    """As many lines as fit within Slack's limit, then a pointer to the rest: never a message Slack rejects."""
    text = head
    for i, line in enumerate(lines):
        rest = more.replace("…", f"… {len(lines) - i} more steps")  # budget the pointer as it will be written
        if len(text) + 1 + len(line) + len(rest) > limit:
            return cut(text + rest, limit)
        text += "\n" + line
    return cut(text, limit)


def instance_status(detail: JobInstanceStatus, *, web_root: str | None) -> str:
    """`/bkjob status`: the instance, its steps with their status and duration, and the link."""
    job = detail.job_instance
    url = job_url(web_root, job.job_instance_id)
    instance = f"<{url}|{job.job_instance_id}>" if url else str(job.job_instance_id)
    took = f", {duration(job.total_time)}" if job.total_time is not None else ""
    started = job.started_at()
    if job.total_time is None and started is not None:  # null until the job finishes: count from its start
        took = f", {duration(max(0.0, datetime.now(UTC).timestamp() - started))} so far"
    name = untrusted(job.name or "job")
    lines = [f"{status_emoji(job.status)} *{name}*, instance {instance}: {status.describe(job.status)}{took}"]
    for step in detail.steps[:40]:
        step_took = f" ({duration(step.total_time)})" if step.total_time is not None else ""
        step_name = untrusted(step.name or str(step.step_instance_id))
        word = status.describe_step(step.status, job_finished=detail.is_finished)
        lines.append(f"• {status_emoji(step.status)} {step_name}: {word}{step_took}")
    if len(detail.steps) > 40:
        lines.append(f"• and {len(detail.steps) - 40} more steps")
    return cut("\n".join(lines), 3000)
