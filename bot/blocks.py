"""Block Kit builders: pure functions from domain objects to Slack messages and modals, and their IDs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot import status
from bot.bk_models import JobDetail, JobInstanceStatus, PlanVariable, VariableType
from bot.store.records import ApprovalRecord, ApprovalState, LaunchRecord, LaunchState, SentVariable, Vote
from bot.variables import MASK, default_text, type_name

__all__ = [
    "APPROVE_ACTION",
    "REASON_ACTION",
    "REASON_BLOCK",
    "REJECT_ACTION",
    "REJECT_VIEW",
    "approval_message",
    "history_list",
    "pending_list",
    "reject_modal",
    "RUN_VIEW",
    "Message",
    "VarRef",
    "error_modal",
    "instance_status",
    "job_url",
    "launch_message",
    "loading_modal",
    "mention",
    "mentions",
    "notice",
    "utc_time",
    "parse_var_block_id",
    "result_reply",
    "run_modal",
    "var_block_id",
]

RUN_VIEW = "bkjob_run"
_MAX_INPUT = 3000  # Slack's limit on a plain-text input (and its initial value)
_MAX_SECTION = 3000
_MAX_MODAL_BLOCKS = 100


@dataclass(frozen=True)
class Message:
    """A message with the `text` fallback Slack shows in notifications and screen readers."""

    text: str
    blocks: list[dict[str, Any]]


@dataclass(frozen=True)
class VarRef:
    """What a modal input block stands for, read back from its block_id."""

    category: int
    id: int | None
    name: str | None


def var_block_id(var: PlanVariable) -> str:
    """Carries the type so that host fields can be checked before the ack, without calling BK-JOB."""
    if var.id is not None:
        return f"var:{var.category}:id:{var.id}"
    return f"var:{var.category}:name:{var.name}"[:255]


def parse_var_block_id(block_id: str) -> VarRef | None:
    parts = block_id.split(":", 3)
    if len(parts) != 4 or parts[0] != "var" or not parts[1].isdigit():
        return None
    category = int(parts[1])
    if parts[2] == "id" and parts[3].isdigit():
        return VarRef(category=category, id=int(parts[3]), name=None)
    if parts[2] == "name" and parts[3]:
        return VarRef(category=category, id=None, name=parts[3])
    return None


def job_url(web_root: str | None, job_instance_id: int | None) -> str | None:
    """BK-JOB's web UI opens an instance at `/api_execute/<id>` (as bk-nodeman and JOB's own tools link it)."""
    if not web_root or job_instance_id is None:
        return None
    return f"{web_root}/api_execute/{job_instance_id}"


def loading_modal(job_id: int) -> dict[str, Any]:
    """Opened at once: Slack's trigger_id lasts 3 seconds, reading the plan may take longer."""
    return _modal(
        title="BK-JOB",
        blocks=[SectionBlock(text=MarkdownTextObject(text=f":hourglass_flowing_sand: Reading plan *{job_id}*…"))],
    )


def error_modal(message: str) -> dict[str, Any]:
    return _modal(
        title="BK-JOB",
        blocks=[SectionBlock(text=MarkdownTextObject(text=_cut(f":warning: {message}", _MAX_SECTION)))],
    )


def run_modal(plan: JobDetail, *, bk_biz_id: int, prefill: Mapping[str, str], metadata: str) -> dict[str, Any]:
    """One input per variable, pre-filled with the plan's default or the command line's value."""
    blocks: list[Block] = [
        SectionBlock(
            text=MarkdownTextObject(
                text=_cut(f"Plan *{_esc(plan.name)}* (ID {plan.bk_job_id}) in business *{bk_biz_id}*", 3000)
            )
        )
    ]
    for var in plan.variables:
        blocks.append(_variable_block(var, prefill.get(var.name)))
    if not plan.variables:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text="This plan has no global variables.")]))
    if len(blocks) > _MAX_MODAL_BLOCKS:
        blocks = blocks[: _MAX_MODAL_BLOCKS - 1]
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text="More variables keep the plan's values.")]))
    return _modal(
        title=plan.name or "BK-JOB",
        blocks=blocks,
        submit="Launch",
        callback_id=RUN_VIEW,
        private_metadata=metadata,
    )


def _variable_block(var: PlanVariable, override: str | None) -> Block:
    label = _cut(f"{var.name} ({type_name(var.category)})", 2000)
    if var.is_password:
        state = "set" if var.value else "not set"
        return ContextBlock(
            elements=[
                MarkdownTextObject(text=_cut(f"*{_esc(var.name)}* (password): {state}, keeps the plan's value", 2000))
            ]
        )
    initial = override if override is not None else default_text(var)
    if len(initial) > _MAX_INPUT:
        return ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=_cut(f"*{_esc(var.name)}*: longer than Slack can edit, keeps the plan's value", 2000)
                )
            ]
        )
    multiline = var.category in (
        VariableType.HOST_LIST,
        VariableType.ASSOCIATIVE_ARRAY,
        VariableType.INDEX_ARRAY,
    )
    hint = var.description or None
    if var.is_host:
        hint = "One per line or comma separated: 10.0.0.1, 2:10.0.0.1 (cloud area 2), group:<id>, module:1000"
    return InputBlock(
        block_id=var_block_id(var),
        label=label,
        # Emptying a host list that has a default would leave its steps without targets: Slack refuses it.
        optional=not (var.is_host and default_text(var)),
        hint=_cut(hint, 2000) if hint else None,
        element=PlainTextInputElement(
            action_id=var.name[:255],
            initial_value=initial or None,
            multiline=multiline,
            max_length=_MAX_INPUT,
        ),
    )


def launch_message(launch: LaunchRecord, *, web_root: str | None) -> Message:
    """The message whose thread receives the result; its first line is the status line kept up to date."""
    line = _status_line(launch)
    url = job_url(web_root, launch.job_instance_id)
    instance = (
        f"<{url}|{launch.job_instance_id}>"
        if url
        else str(launch.job_instance_id)
        if launch.job_instance_id is not None
        else "–"
    )
    facts = (
        f"*Plan:* {_esc(launch.plan_name)} (ID {launch.bk_job_id})   *Business:* {launch.bk_biz_id}\n"
        f"*Launched by:* <@{launch.requester}> as `{_esc(launch.bk_username)}`   *Instance:* {instance}"
    )
    if launch.approved_by:
        facts += f"\n*Approved by:* {mentions(launch.approved_by)}"
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=_cut(line, _MAX_SECTION))),
        SectionBlock(text=MarkdownTextObject(text=_cut(facts, _MAX_SECTION))),
        ContextBlock(elements=[MarkdownTextObject(text=_cut(_variables_text(launch.variables), 2000))]),
    ]
    text = f"{_plain_status(launch)}: {launch.plan_name} (plan {launch.bk_job_id}) by <@{launch.requester}>"
    return Message(text=_cut(text, 3000), blocks=[b.to_dict() for b in blocks])


def result_reply(
    launch: LaunchRecord, *, job_status: int, detail: JobInstanceStatus | None, note: str | None, web_root: str | None
) -> Message:
    """The thread reply: status, plan, instance, duration, every step, and host counts where a step failed."""
    word = status.describe(job_status)
    url = job_url(web_root, launch.job_instance_id)
    instance = f"<{url}|{launch.job_instance_id}>" if url else str(launch.job_instance_id)
    lines = [f"{status.emoji(job_status)} *{word.capitalize()}*: {_esc(launch.plan_name)}, instance {instance}"]
    if detail is not None and detail.job_instance.total_time is not None:
        lines.append(f"Ran for {_duration(detail.job_instance.total_time)}")
    steps = _step_lines(detail)
    if job_status not in status.SUCCESSFUL:
        lines.append(f"<@{launch.requester}>")
    if note:
        lines.append(f"_{_esc(note)}_")
    head = "\n".join(lines)
    more = f"\n… more in <{url}|BK-JOB>" if url else "\n… more in BK-JOB"
    body = _fit(head, steps, _MAX_SECTION, more)
    text = f"{word.capitalize()}: {launch.plan_name}, instance {launch.job_instance_id}"
    return Message(
        text=_cut(text, 3000),
        blocks=[SectionBlock(text=MarkdownTextObject(text=body)).to_dict()],
    )


def _step_lines(detail: JobInstanceStatus | None) -> list[str]:
    if detail is None:
        return []
    lines = []
    for step in detail.steps:
        took = f" ({_duration(step.total_time)})" if step.total_time is not None else ""
        name = _esc(step.name or str(step.step_instance_id))
        line = f"{status.emoji(step.status)} {name}: {status.describe(step.status)}{took}"
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
            return _cut(text + rest, limit)
        text += "\n" + line
    return _cut(text, limit)


def _status_line(launch: LaunchRecord) -> str:
    if launch.state is LaunchState.STARTING:
        return ":hourglass_flowing_sand: *Launching…*"
    if launch.state is LaunchState.NOT_STARTED:
        return f":no_entry: *Not launched*: {_esc(launch.error or 'BK-JOB refused the launch')}"
    if launch.state is LaunchState.UNKNOWN:
        return f":grey_question: *Unknown: check BK-JOB*. {_esc(launch.error or '')}".rstrip()
    code = launch.job_status if launch.job_status is not None else 2
    line = f"{status.emoji(code)} *{status.describe(code).capitalize()}*"
    progress = launch.progress or {}
    if launch.state is LaunchState.RUNNING and progress.get("total"):
        current = f" ({_esc(str(progress['current']))})" if progress.get("current") else ""
        line += f": step {min(int(progress.get('done', 0)) + 1, int(progress['total']))}/{progress['total']}{current}"
        if progress.get("elapsed") is not None:
            line += f", {_duration(float(progress['elapsed']))} so far"
    return line


def _plain_status(launch: LaunchRecord) -> str:
    if launch.state is LaunchState.STARTING:
        return "Launching"
    if launch.state is LaunchState.NOT_STARTED:
        return "Not launched"
    if launch.state is LaunchState.UNKNOWN:
        return "Unknown"
    return status.describe(launch.job_status if launch.job_status is not None else 2).capitalize()


def _variables_text(variables: Sequence[SentVariable]) -> str:
    if not variables:
        return "Variables: the plan's defaults"
    parts = []
    for var in variables:
        shown = MASK if var.category == VariableType.PASSWORD else var.shown.replace("\n", ", ")
        parts.append(f"`{_esc(var.name)}` = `{_esc(_cut(shown, 200))}`")
    return "Variables sent: " + "; ".join(parts)


def _modal(
    *,
    title: str,
    blocks: Sequence[Block],
    submit: str | None = None,
    callback_id: str | None = None,
    private_metadata: str | None = None,
) -> dict[str, Any]:
    view = View(
        type="modal",
        title=_cut(title, 24),
        close="Cancel",
        submit=submit,
        callback_id=callback_id,
        private_metadata=private_metadata,
        blocks=list(blocks),
    )
    result: dict[str, Any] = view.to_dict()
    return result


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _esc(text: str) -> str:
    """Slack mrkdwn needs only these three escaped; anything else a person typed is shown as is."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


APPROVE_ACTION = "bkjob_approve"
REJECT_ACTION = "bkjob_reject"
REJECT_VIEW = "bkjob_reject_reason"
REASON_BLOCK = "reason"
REASON_ACTION = "reason"


def approval_message(approval: ApprovalRecord, votes: Sequence[Vote], *, web_root: str | None) -> Message:
    """The request in the channel: who asks, what exactly would be sent, until when, and the two buttons."""
    head = _approval_status(approval, votes)
    facts = (
        f"*Plan:* {_esc(approval.plan_name)} (ID {approval.bk_job_id})   *Business:* {approval.bk_biz_id}\n"
        f"*Requested by:* <@{approval.requester}> as `{_esc(approval.bk_username)}`   "
        f"*Approvers:* {mentions(approval.approvers)}"
    )
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=_cut(head, _MAX_SECTION))),
        SectionBlock(text=MarkdownTextObject(text=_cut(facts, _MAX_SECTION))),
        ContextBlock(elements=[MarkdownTextObject(text=_cut(_variables_text(approval.variables), 2000))]),
    ]
    if approval.state is ApprovalState.PENDING:
        blocks.append(
            ActionsBlock(
                block_id=f"approval:{approval.id}",
                elements=[
                    ButtonElement(text="Approve", action_id=APPROVE_ACTION, value=approval.id, style="primary"),
                    ButtonElement(text="Reject", action_id=REJECT_ACTION, value=approval.id, style="danger"),
                ],
            )
        )
    text = f"Approval {approval.state.value}: {approval.plan_name} (plan {approval.bk_job_id}), <@{approval.requester}>"
    return Message(text=_cut(text, 3000), blocks=[b.to_dict() for b in blocks])


def _approval_status(approval: ApprovalRecord, votes: Sequence[Vote]) -> str:
    count = f"{len(votes)}/{approval.min_approvals} approvals"
    by = ", ".join(f"<@{v.approver}>" for v in votes)
    if approval.state is ApprovalState.PENDING:
        so_far = f": {by}" if by else ""
        when = f"<!date^{int(approval.expires_at)}^{{date_short_pretty}} {{time}}|{utc_time(approval.expires_at)}>"
        return f":raised_hand: *Approval needed* ({count}{so_far}). Expires {when}."
    if approval.state is ApprovalState.APPROVED:
        return f":white_check_mark: *Approved* by {by or mention(approval.decided_by)}; launching…"
    if approval.state is ApprovalState.REJECTED:
        reason = f": {_esc(approval.reason)}" if approval.reason else ""
        return f":no_entry_sign: *Rejected* by {mention(approval.decided_by)}{reason}"
    return f":hourglass: *Expired* at {utc_time(approval.expires_at)} without enough approvals ({count})."


def reject_modal(metadata: str) -> dict[str, Any]:
    return _modal(
        title="Reject launch",
        submit="Reject",
        callback_id=REJECT_VIEW,
        private_metadata=metadata,
        blocks=[
            InputBlock(
                block_id=REASON_BLOCK,
                label="Reason (optional)",
                optional=True,
                element=PlainTextInputElement(action_id=REASON_ACTION, multiline=True, max_length=1000),
            )
        ],
    )


def pending_list(approvals: Sequence[ApprovalRecord], *, permalink: Callable[[ApprovalRecord], str | None]) -> str:
    if not approvals:
        return "No approval requests are waiting in this channel."
    lines = ["*Waiting for approval:*"]
    for a in approvals[:50]:
        link = permalink(a)
        what = f"{_esc(a.plan_name)} (plan {a.bk_job_id}, business {a.bk_biz_id})"
        lines.append(f"• {f'<{link}|{what}>' if link else what} for <@{a.requester}>, expires {utc_time(a.expires_at)}")
    return _cut("\n".join(lines), 3000)


def history_list(launches: Sequence[LaunchRecord], *, web_root: str | None) -> str:
    if not launches:
        return "No launches in this channel yet."
    lines = [f"*Last {len(launches)} launches here:*"]
    for launch in launches:
        url = job_url(web_root, launch.job_instance_id)
        instance = f"<{url}|{launch.job_instance_id}>" if url else str(launch.job_instance_id or "–")
        approved = f", approved by {mentions(launch.approved_by)}" if launch.approved_by else ""
        lines.append(
            f"• {utc_time(launch.created_at)} <@{launch.requester}>: {_esc(launch.plan_name)} (plan {launch.bk_job_id},"
            f" business {launch.bk_biz_id}), instance {instance}{approved}: {_plain_status(launch).lower()}"
        )
    return _cut("\n".join(lines), 3000)


def instance_status(detail: JobInstanceStatus, *, web_root: str | None) -> str:
    """`/bkjob status`: the instance, its steps with their status and duration, and the link."""
    job = detail.job_instance
    url = job_url(web_root, job.job_instance_id)
    instance = f"<{url}|{job.job_instance_id}>" if url else str(job.job_instance_id)
    took = f", {_duration(job.total_time)}" if job.total_time is not None else ""
    name = _esc(job.name or "job")
    lines = [f"{status.emoji(job.status)} *{name}*, instance {instance}: {status.describe(job.status)}{took}"]
    for step in detail.steps[:40]:
        step_took = f" ({_duration(step.total_time)})" if step.total_time is not None else ""
        step_name = _esc(step.name or str(step.step_instance_id))
        lines.append(f"• {status.emoji(step.status)} {step_name}: {status.describe(step.status)}{step_took}")
    if len(detail.steps) > 40:
        lines.append(f"• and {len(detail.steps) - 40} more steps")
    return _cut("\n".join(lines), 3000)


def notice(text: str) -> Message:
    """A plain text message (thread notes): Slack still gets a block, so the text renders as mrkdwn."""
    return Message(
        text=_cut(text, 3000), blocks=[SectionBlock(text=MarkdownTextObject(text=_cut(text, _MAX_SECTION))).to_dict()]
    )


def mentions(ids: Sequence[str]) -> str:
    return ", ".join(mention(i) for i in ids) or "–"


def mention(slack_id: str | None) -> str:
    if not slack_id:
        return "someone"
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"


def utc_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
