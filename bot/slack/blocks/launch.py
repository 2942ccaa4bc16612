"""Block Kit builders: pure functions from domain objects to Slack messages and modals, and their IDs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from cachetools import LRUCache
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    ExternalDataSelectElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    OptionGroup,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.bkjob import status
from bot.bkjob.models import JobDetail, JobInstanceStatus, PlanSummary, PlanVariable, VariableType
from bot.bkjob.variables import MASK, default_text, host_hint, type_name
from bot.core.cards import Confirmation
from bot.store.records import ApprovalRecord, ApprovalState, LaunchRecord, LaunchState, SentVariable, Vote

__all__ = [
    "APPROVE_ACTION",
    "PLAN_PICKER_ACTION",
    "PLAN_PICKER_BLOCK",
    "RUN_PLAN_ACTION",
    "finding_modal",
    "PlanChoice",
    "picker_modal",
    "plan_options",
    "plans_list",
    "LOGS_ACTION",
    "CONFIRM_ACTION",
    "END_CONFIRM_ACTION",
    "IGNORE_ACTION",
    "OPEN_ACTION",
    "RERUN_ACTION",
    "RETRY_FAILED_ACTION",
    "RETRY_STEP_ACTION",
    "STOP_ACTION",
    "confirmation_decided",
    "confirmation_message",
    "run_controls",
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
    "queued",
    "fit_text",
    "MAX_PRIVATE_TEXT",
    "utc_time",
    "when",
    "escape",
    "untrusted",
    "parse_var_block_id",
    "result_reply",
    "run_modal",
    "var_block_id",
]

RUN_VIEW = "bkjob_run"
_MAX_INPUT = 3000  # Slack's limit on a plain-text input (and its initial value)
_MAX_SECTION = 3000
_MAX_MODAL_BLOCKS = 100
MAX_PRIVATE_TEXT = 4000
"""Ephemeral and response_url texts: Slack folds a message behind "Show more" past about 4,000 characters and
refuses one over 40,000 (`msg_too_long`)."""
_MAX_LIST = 3000  # a list answered privately: one screenful, well under Slack's 40,000-character message


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
    return dict(_loading_modal(job_id))


@lru_cache(maxsize=1024)
def _loading_modal(job_id: int) -> dict[str, Any]:
    return _modal(
        title="BK-JOB",
        blocks=[SectionBlock(text=MarkdownTextObject(text=f":hourglass_flowing_sand: Reading plan *{job_id}*…"))],
    )


def error_modal(message: str) -> dict[str, Any]:
    """One icon (the message's own when it brings one) and a Close button: there is nothing to cancel."""
    text = message if message.startswith(":") else f":warning: {message}"
    return _modal(
        title="BK-JOB",
        close="Close",
        blocks=[SectionBlock(text=MarkdownTextObject(text=_cut(text, _MAX_SECTION)))],
    )


_RUN_FORMS: LRUCache[tuple[Any, ...], dict[str, Any]] = LRUCache(maxsize=128)
"""Run forms as slack_sdk checked and serialised them, by everything they show (not by who opens them)."""


def run_modal(
    plan: JobDetail,
    *,
    bk_biz_id: int,
    prefill: Mapping[str, str],
    metadata: str,
    locked: Mapping[str, str] | None = None,
    preset: str | None = None,
    picker: bool = False,
    approval: tuple[Sequence[str], int] | None = None,
) -> dict[str, Any]:
    """One input per variable, pre-filled with the plan's default or the command line's value.

    A preset's `locked` variables are shown, not editable; with `picker`, the plan picker stays on top so the
    person can choose another plan in the same form. In a channel that needs `approval` (approvers, how many),
    the form says so and who will be asked, and its button requests rather than launches.

    slack_sdk's models check and serialise a form in 0.35 ms for three variables (more with more), the biggest
    cost of a `/bkjob run` after its ack; people open the same plan's form over and over, so the checked JSON
    is kept (see _RUN_FORMS).
    """
    key = (
        # A digest, not the JSON: a plan with thousands of default hosts would make every key that big.
        hashlib.blake2b(plan.model_dump_json().encode(), digest_size=16).digest(),
        bk_biz_id,
        tuple(prefill.items()),
        tuple(locked.items()) if locked is not None else None,
        preset,
        picker,
        (tuple(approval[0]), approval[1]) if approval is not None else None,
    )
    form = _RUN_FORMS.get(key)
    if form is None:
        form = _RUN_FORMS[key] = _run_form(plan, bk_biz_id, prefill, locked, preset, picker, approval)
    # Only the signed metadata (who, where) differs between people opening the same plan's form.
    return {**form, "private_metadata": metadata}


def _run_form(
    plan: JobDetail,
    bk_biz_id: int,
    prefill: Mapping[str, str],
    locked: Mapping[str, str] | None,
    preset: str | None,
    picker: bool,
    approval: tuple[Sequence[str], int] | None,
) -> dict[str, Any]:
    heading = f"Plan *{_esc(plan.name)}* (ID {plan.bk_job_id}) in business *{bk_biz_id}*"
    if preset:
        heading = f"Preset *{_esc(preset)}*: " + heading
    blocks: list[Block] = [_picker_block(PlanChoice.plan(plan.bk_job_id, plan.name))] if picker else []
    blocks.append(SectionBlock(text=MarkdownTextObject(text=_cut(heading, 3000))))
    if approval is not None:
        blocks.append(_approval_notice(*approval))
    for var in plan.variables:
        if locked is not None and var.name in locked:
            blocks.append(_locked_block(var, locked[var.name]))
            continue
        blocks.append(_variable_block(var, prefill.get(var.name)))
    if not plan.variables:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text="This plan has no global variables.")]))
    if len(blocks) > _MAX_MODAL_BLOCKS:
        blocks = blocks[: _MAX_MODAL_BLOCKS - 1]
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text="More variables keep the plan's values.")]))
    return _modal(
        title=plan.name or "BK-JOB",
        blocks=blocks,
        submit="Request approval" if approval is not None else "Launch",
        callback_id=RUN_VIEW,
    )


def _approval_notice(approvers: Sequence[str], needed: int) -> Block:
    who = f"{needed} of {mentions(approvers)}" if needed > 1 else f"one of {mentions(approvers)}"
    text = (
        f":raised_hand: Launches in this channel need approval: submitting posts a request, and {who} will be"
        " asked. Nothing runs until it is approved."
    )
    return ContextBlock(elements=[MarkdownTextObject(text=_cut(text, 2000))])


def _variable_block(var: PlanVariable, override: str | None) -> Block:
    label = _cut(f"{var.name} ({type_name(var.category)})", 2000)
    if var.is_password:
        state = var.password_state()
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
        hint += host_hint(var)
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
    text = f"{_plain_status(launch)}: {_esc(launch.plan_name)} (plan {launch.bk_job_id}) by <@{launch.requester}>"
    controls = run_controls(launch, url=url)
    if controls is not None:
        blocks.append(controls)
    return Message(text=_cut(text, 3000), blocks=[b.to_dict() for b in blocks])


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
        f"{status.emoji(job_status)} *{word.capitalize()}*{_after_retry(detail)}: {_esc(launch.plan_name)}, "
        f"instance {instance}"
    ]
    if detail is not None and detail.job_instance.total_time is not None:
        lines.append(f"Ran for {_duration(detail.job_instance.total_time)}")
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
    body = _fit(head, steps, _MAX_SECTION, more)
    text = f"{word.capitalize()}: {_esc(launch.plan_name)}, instance {launch.job_instance_id}"
    blocks = [SectionBlock(text=MarkdownTextObject(text=body)).to_dict(), *_digest_blocks(digest, launch, logs_button)]
    return Message(text=_cut(text, 3000), blocks=blocks)


LOGS_ACTION = "bkjob_logs"
_MAX_DIGEST_BLOCKS = 40  # Slack takes 50 blocks a message; the reply's own section and the button come first


def _digest_blocks(digest: Sequence[str], launch: LaunchRecord, logs_button: bool) -> list[dict[str, Any]]:
    """The failure digest (bot.core.digest: mrkdwn sections already within Slack's limits) and the *Logs* button."""
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=_cut(t, _MAX_SECTION))) for t in digest]
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
        took = f" ({_duration(step.total_time)})" if step.total_time is not None else ""
        name = _esc(step.name or str(step.step_instance_id))
        line = f"{status.emoji(step.status)} {name}: {status.describe_step(step.status, job_finished=True)}{took}"
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
    progress = launch.progress or {}
    if launch.state is LaunchState.RUNNING and isinstance(progress.get("status"), int):
        code = progress["status"]  # waiting for a confirmer (7) or stopping (10) shows as such
    line = f"{status.emoji(code)} *{status.describe(code).capitalize()}*"
    if launch.state is LaunchState.RUNNING and progress.get("total"):
        line += f": {min(int(progress.get('done', 0)), int(progress['total']))} of {progress['total']} steps done"
        if progress.get("current"):
            line += f", running *{_esc(str(progress['current']))}*"
        if progress.get("elapsed") is not None:
            line += f", {_duration(float(progress['elapsed']))} elapsed"
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
    close: str = "Cancel",
) -> dict[str, Any]:
    view = View(
        type="modal",
        title=_cut(title, 24),
        close=close,
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


def escape(text: str) -> str:
    """`&`, `<` and `>` as Slack asks, so `<!channel>`, `<@U123>` and `<https://x|y>` show as typed, not as a
    mention or a link. For the bot's own mrkdwn (the usage text's `<job_id>`)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def untrusted(text: str) -> str:
    """Text from a person or from BK-JOB, for mrkdwn: escaped, and its backticks swapped for a look-alike (ˋ),
    since Slack has no escape for them and a ``` in a plan name or a value would open a code block."""
    return escape(text).replace("`", "\u02cb")


_esc = untrusted


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
    text = (
        f"Approval {approval.state.value}: {_esc(approval.plan_name)} (plan {approval.bk_job_id}), "
        f"<@{approval.requester}>"
    )
    return Message(text=_cut(text, 3000), blocks=[b.to_dict() for b in blocks])


def _approval_status(approval: ApprovalRecord, votes: Sequence[Vote]) -> str:
    count = f"{len(votes)}/{approval.min_approvals} approvals"
    by = ", ".join(f"<@{v.approver}>" for v in votes)
    if approval.state is ApprovalState.PENDING:
        so_far = f": {by}" if by else ""
        return f":raised_hand: *Approval needed* ({count}{so_far}). Expires {when(approval.expires_at)}."
    if approval.state is ApprovalState.APPROVED:
        return f":white_check_mark: *Approved* by {by or mention(approval.decided_by)}; launching…"
    if approval.state is ApprovalState.REJECTED:
        reason = f": {_esc(approval.reason)}" if approval.reason else ""
        return f":no_entry_sign: *Rejected* by {mention(approval.decided_by)}{reason}"
    return f":hourglass: *Expired* {when(approval.expires_at)} without enough approvals ({count})."


def reject_modal(metadata: str, approval: ApprovalRecord | None = None) -> dict[str, Any]:
    """Names the request being rejected; Slack itself marks the optional reason "(optional)"."""
    blocks: list[Block] = []
    if approval is not None:
        what = (
            f"Reject the launch of *{_esc(approval.plan_name)}* (plan {approval.bk_job_id}, business "
            f"{approval.bk_biz_id}) requested by <@{approval.requester}>? They are told, with your reason if you"
            " give one."
        )
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_cut(what, _MAX_SECTION))))
    return _modal(
        title="Reject launch",
        submit="Reject",
        callback_id=REJECT_VIEW,
        private_metadata=metadata,
        blocks=[
            *blocks,
            InputBlock(
                block_id=REASON_BLOCK,
                label="Reason",
                optional=True,
                element=PlainTextInputElement(action_id=REASON_ACTION, multiline=True, max_length=1000),
            ),
        ],
    )


def pending_list(approvals: Sequence[ApprovalRecord], *, permalinks: Mapping[str, str]) -> str:
    """The requests waiting here, each linked to its message (`permalinks` by approval ID, from Slack)."""
    if not approvals:
        return "No approval requests are waiting in this channel."
    lines = []
    for a in approvals:
        link = permalinks.get(a.id)
        what = f"{_esc(a.plan_name)} (plan {a.bk_job_id}, business {a.bk_biz_id})"
        lines.append(f"• {f'<{link}|{what}>' if link else what} for <@{a.requester}>, expires {when(a.expires_at)}")
    total = len(approvals)
    return _fit_list(
        lambda shown: f"*{total} approval request{'s' if total != 1 else ''} waiting here:*",
        lines,
        lambda rest: f"… and {rest} more not shown.",
    )


def history_list(launches: Sequence[LaunchRecord], *, web_root: str | None) -> str:
    if not launches:
        return "No launches in this channel yet."
    lines = []
    for launch in launches:
        url = job_url(web_root, launch.job_instance_id)
        instance = f"<{url}|{launch.job_instance_id}>" if url else str(launch.job_instance_id or "–")
        approved = f", approved by {mentions(launch.approved_by)}" if launch.approved_by else ""
        lines.append(
            f"• {when(launch.created_at)} <@{launch.requester}>: {_esc(launch.plan_name)} (plan {launch.bk_job_id},"
            f" business {launch.bk_biz_id}), instance {instance}{approved}: {_plain_status(launch).lower()}"
        )
    return _fit_list(
        lambda shown: "*The last launch here:*" if shown == 1 else f"*The last {shown} launches here:*",
        lines,
        lambda rest: f"… and {rest} older not shown (they do not fit in one message).",
    )


def _fit_list(head: Callable[[int], str], lines: Sequence[str], more: Callable[[int], str]) -> str:
    """The header, as many whole lines as fit in one message, and how many more there are: a list is never cut
    mid-line or mid-link, and its header counts what it shows."""
    for shown in range(len(lines), -1, -1):
        rest = len(lines) - shown
        text = "\n".join([head(shown), *lines[:shown], *([more(rest)] if rest else [])])
        if len(text) <= _MAX_LIST:
            return text
    return _cut(head(0), _MAX_LIST)


def instance_status(detail: JobInstanceStatus, *, web_root: str | None) -> str:
    """`/bkjob status`: the instance, its steps with their status and duration, and the link."""
    job = detail.job_instance
    url = job_url(web_root, job.job_instance_id)
    instance = f"<{url}|{job.job_instance_id}>" if url else str(job.job_instance_id)
    took = f", {_duration(job.total_time)}" if job.total_time is not None else ""
    started = job.started_at()
    if job.total_time is None and started is not None:  # null until the job finishes: count from its start
        took = f", {_duration(max(0.0, datetime.now(UTC).timestamp() - started))} so far"
    name = _esc(job.name or "job")
    lines = [f"{status.emoji(job.status)} *{name}*, instance {instance}: {status.describe(job.status)}{took}"]
    for step in detail.steps[:40]:
        step_took = f" ({_duration(step.total_time)})" if step.total_time is not None else ""
        step_name = _esc(step.name or str(step.step_instance_id))
        word = status.describe_step(step.status, job_finished=detail.is_finished)
        lines.append(f"• {status.emoji(step.status)} {step_name}: {word}{step_took}")
    if len(detail.steps) > 40:
        lines.append(f"• and {len(detail.steps) - 40} more steps")
    return _cut("\n".join(lines), 3000)


def fit_text(text: str, limit: int = MAX_PRIVATE_TEXT) -> str:
    """A private answer as Slack will show it: at most `limit` characters, cut at a line (or word) boundary and
    never inside a `<link|label>`, a mention or a date token, with "…" saying there was more."""
    if len(text) <= limit:
        return text
    head = text[: limit - 2]
    cut = head.rfind("\n")
    if cut < limit // 2:
        cut = head.rfind(" ")
    head = head[: max(cut, 0)] if cut > 0 else head
    if head.count("<") > head.count(">"):
        head = head[: head.rfind("<")]
    return head.rstrip() + "\n…"


def queued(wait: float) -> str:
    """Told to the person when their launch or approval message waits for a busy channel (Slack's pacing)."""
    return (
        ":hourglass: This channel is busy in Slack: your message is queued and goes out in about"
        f" {max(1, round(wait))} s. Nothing is lost, and nothing runs before it is posted."
    )


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


def when(epoch: float) -> str:
    """A time each reader sees in their own time zone (Slack's date token), UTC where the token is not shown."""
    return f"<!date^{int(epoch)}^{{date_short_pretty}} at {{time}}|{utc_time(epoch)}>"


def utc_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- finding plans: the picker, its options and `/bkjob plans` (issue 17) -----------------------------------------

PLAN_PICKER_BLOCK = "plan_picker"
PLAN_PICKER_ACTION = "bkjob_plan_pick"
RUN_PLAN_ACTION = "bkjob_run_plan"
_MAX_OPTION_TEXT = 75  # Slack's limit on an option's (and an option group's) text
_MAX_OPTIONS = 100  # Slack's limit on the options (or groups) in one answer
_MAX_LISTED = 20  # plans in `/bkjob plans`: each is a block, and a message holds at most 50


@dataclass(frozen=True)
class PlanChoice:
    """What a picker option or a Run button stands for: a plan of the form's business, or a preset."""

    kind: str  # "plan" | "preset"
    key: str
    label: str
    bk_biz_id: int | None = None  # a Run button outside a form names its business; a picker's is the form's

    @classmethod
    def plan(cls, bk_job_id: int, name: str, bk_biz_id: int | None = None) -> PlanChoice:
        return cls("plan", str(bk_job_id), f"{name} ({bk_job_id})", bk_biz_id)

    @classmethod
    def preset(cls, name: str, summary: str) -> PlanChoice:
        return cls("preset", name, f"{name}: {summary}")

    @property
    def value(self) -> str:
        biz = f"@{self.bk_biz_id}" if self.bk_biz_id is not None else ""
        return f"{self.kind}:{self.key}{biz}"

    @staticmethod
    def parse(value: str) -> tuple[str, str, int | None] | None:
        """("plan", "100", biz or None) or ("preset", "deploy-web", None) from a value this bot made; else None."""
        kind, _, rest = value.partition(":")
        if kind == "preset" and rest:
            return kind, rest, None
        key, at, biz = rest.partition("@")
        if kind != "plan" or not _is_long(key) or (at and not _is_long(biz)):
            return None
        return kind, key, int(biz) if at else None

    def option(self) -> Option:
        return Option(value=self.value[:150], text=_cut(self.label, _MAX_OPTION_TEXT))

    def option_json(self) -> Mapping[str, Any]:
        """The option as Slack's JSON, built (and checked by slack_sdk's model) once per plan and label: a picker
        answers up to 100 options per keystroke, and building them anew was a third of each answer's time."""
        return _option_json(self.value, self.label)


@lru_cache(maxsize=20_000)
def _option_json(value: str, label: str) -> Mapping[str, Any]:
    return Option(value=value[:150], text=_cut(label, _MAX_OPTION_TEXT)).to_dict()


def _is_long(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < len(text) <= 19 and 0 < int(text) < 2**63


def _picker_block(selected: PlanChoice | None = None) -> ActionsBlock:
    """An external_select: Slack asks the bot for options as the person types (min_query_length 0: at once)."""
    return ActionsBlock(
        block_id=PLAN_PICKER_BLOCK,
        elements=[
            ExternalDataSelectElement(
                action_id=PLAN_PICKER_ACTION,
                placeholder="Type part of a plan's name",
                min_query_length=0,
                initial_option=selected.option() if selected else None,
            )
        ],
    )


def _locked_block(var: PlanVariable, value: str) -> Block:
    text = f":lock: *{_esc(var.name)}* ({type_name(var.category)}) = `{_esc(_cut(value, 500))}`, locked by the preset"
    return ContextBlock(elements=[MarkdownTextObject(text=_cut(text, 2000))])


def picker_modal(*, bk_biz_id: int, metadata: str, note: str | None = None) -> dict[str, Any]:
    """The form before a plan is chosen: the picker, and nothing to submit until a plan fills the form."""
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=f"Choose a plan of business *{bk_biz_id}*: type part of its name.")),
        _picker_block(),
    ]
    if note:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_cut(note, 2000))]))
    return _modal(title="Run a BK-JOB plan", blocks=blocks, callback_id=RUN_VIEW, private_metadata=metadata)


def plan_options(
    presets: Sequence[PlanChoice], recent: Sequence[PlanChoice], plans: Sequence[PlanChoice], *, notice: str = ""
) -> dict[str, Any]:
    """The answer to Slack's options request: groups when there is more than one kind, at most 100 options.

    A `notice` (the list is still being read, BK-JOB refused it) is an option of its own: said in the menu,
    where the person looks, rather than an empty list; choosing it does nothing.
    """
    groups = [
        (label, choices)
        for label, choices in (("Presets", presets), ("Your recent plans", recent), ("Plans", plans))
        if choices
    ]
    if notice:
        groups.append(("Plans", [PlanChoice("none", "", notice)]))
    budget = _MAX_OPTIONS
    kept: list[tuple[str, list[PlanChoice]]] = []
    for label, choices in groups:
        kept.append((label, list(choices[:budget])))
        budget -= len(kept[-1][1])
        if budget <= 0:
            break
    if len(kept) == 1:
        return {"options": [c.option_json() for c in kept[0][1]]}
    return {"option_groups": [_group(label, choices) for label, choices in kept]}


def _group(label: str, choices: Sequence[PlanChoice]) -> dict[str, Any]:
    return {**_group_label(label), "options": [c.option_json() for c in choices]}


@lru_cache(maxsize=16)
def _group_label(label: str) -> Mapping[str, Any]:
    """{"label": ...} as slack_sdk's OptionGroup writes it (the label checked once; the options one by one)."""
    return {"label": OptionGroup(label=label, options=[]).to_dict()["label"]}


def plans_list(
    *,
    words: Sequence[str],
    bk_biz_id: int,
    presets: Sequence[tuple[PlanChoice, str]],
    plans: Sequence[PlanSummary],
    more: bool,
    note: str | None = None,
) -> Message:
    """`/bkjob plans [words]`: presets, then plans, one line each with a Run button that opens the form."""
    searched = f" matching *{_esc(' '.join(words))}*" if words else ""
    blocks: list[Block] = []
    lines = 0
    for choice, summary in presets[:_MAX_LISTED]:
        blocks.append(_run_row(f":bookmark: *{_esc(choice.key)}* (preset): {_esc(summary)}", choice))
        lines += 1
    for plan in plans[:_MAX_LISTED]:
        choice = PlanChoice.plan(plan.bk_job_id, plan.name, bk_biz_id)
        blocks.append(_run_row(f"*{_esc(plan.name)}* (ID {plan.bk_job_id})", choice))
        lines += 1
    if lines == 0:
        head = f"No plans or presets{searched} in business {bk_biz_id}."
    else:
        head = f"Plans and presets{searched} in business *{bk_biz_id}*:"
    blocks.insert(0, SectionBlock(text=MarkdownTextObject(text=_cut(head, _MAX_SECTION))))
    tail = []
    if more or len(plans) > _MAX_LISTED:
        tail.append("More plans match: add words to narrow the list, or type in the form's picker (`/bkjob run`).")
    if note:
        tail.append(note)
    if tail:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_cut(" ".join(tail), 2000))]))
    text = f"{lines} plans and presets{searched}" if lines else f"No plans or presets{searched}"
    return Message(text=_cut(text, 3000), blocks=[b.to_dict() for b in blocks])


def _run_row(text: str, choice: PlanChoice) -> SectionBlock:
    return SectionBlock(
        text=MarkdownTextObject(text=_cut(text, _MAX_SECTION)),
        accessory=ButtonElement(text="Run", action_id=RUN_PLAN_ACTION, value=choice.value[:2000]),
    )


def finding_modal() -> dict[str, Any]:
    """Opened at once for `/bkjob run` without a plan: the trigger lasts 3 s, finding who you are may not."""
    return _modal(
        title="BK-JOB",
        blocks=[SectionBlock(text=MarkdownTextObject(text=":hourglass_flowing_sand: Finding plans…"))],
    )


# -- run control: buttons on the launch message and the manual-confirmation message in its thread ----------------

STOP_ACTION = "bkjob_stop"
RETRY_FAILED_ACTION = "bkjob_retry_failed"
IGNORE_ACTION = "bkjob_ignore_error"
RETRY_STEP_ACTION = "bkjob_retry_step"
RERUN_ACTION = "bkjob_rerun"
CONFIRM_ACTION = "bkjob_confirm"
END_CONFIRM_ACTION = "bkjob_end_confirm"
OPEN_ACTION = "bkjob_open"
"""The link button: Slack still sends its click, which needs only an ack."""


def run_controls(launch: LaunchRecord, *, url: str | None) -> ActionsBlock | None:
    """The buttons that fit the launch's state: Stop while it runs, the step operations when it failed, Re-run
    once it has ended, and the link to BK-JOB whenever there is one. Values name the launch only: what a click
    does is decided from BK-JOB's status at click time."""
    buttons: list[ButtonElement] = []
    code = launch.job_status
    running = (launch.progress or {}).get("status", code)
    if launch.state is LaunchState.RUNNING and running != 10:
        buttons.append(ButtonElement(text="Stop", action_id=STOP_ACTION, value=launch.id, style="danger"))
    if launch.state is LaunchState.FINISHED and code == 4:
        buttons += [
            ButtonElement(text="Retry failed hosts", action_id=RETRY_FAILED_ACTION, value=launch.id, style="primary"),
            ButtonElement(text="Ignore error and continue", action_id=IGNORE_ACTION, value=launch.id),
            ButtonElement(text="Retry the step", action_id=RETRY_STEP_ACTION, value=launch.id),
        ]
    if launch.state is LaunchState.FINISHED:
        buttons.append(ButtonElement(text="Re-run", action_id=RERUN_ACTION, value=launch.id))
    if url:
        buttons.append(ButtonElement(text="Open in BK-JOB", action_id=OPEN_ACTION, url=url, value=launch.id))
    if not buttons:
        return None
    return ActionsBlock(block_id=f"run:{launch.id}", elements=buttons)


def confirmation_message(launch: LaunchRecord, confirmation: Confirmation, *, who: str) -> Message:
    """In the launch's thread when the job waits in 7: the step's message, who may confirm (`who`: the
    confirmation's confirmers in words), and two buttons."""
    head = (
        f":raised_hand: *Waiting for confirmation* at step {confirmation.step_number} "
        f"(*{_esc(confirmation.step_name)}*) of {_esc(launch.plan_name)}, instance {launch.job_instance_id}"
    )
    said = f"> {_esc(confirmation.message)}" if confirmation.message else "_The step has no message._"
    value = f"{launch.id}:{confirmation.step_instance_id}"
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=_cut(head, _MAX_SECTION))),
        SectionBlock(text=MarkdownTextObject(text=_cut(said, _MAX_SECTION))),
        ContextBlock(elements=[MarkdownTextObject(text=_cut(f"*Who may confirm:* {who}", 2000))]),
        ActionsBlock(
            block_id=f"confirm:{confirmation.step_instance_id}",
            elements=[
                ButtonElement(text="Confirm and continue", action_id=CONFIRM_ACTION, value=value, style="primary"),
                ButtonElement(text="Stop here", action_id=END_CONFIRM_ACTION, value=value, style="danger"),
            ],
        ),
    ]
    text = f"Waiting for confirmation at step {confirmation.step_number} of {_esc(launch.plan_name)}"
    return Message(text=_cut(text, 3000), blocks=[b.to_dict() for b in blocks])


def confirmation_decided(step_number: int, step_name: str, *, by: str, confirmed: bool) -> Message:
    """What the confirmation message becomes once BK-JOB accepted a decision: no buttons left to press."""
    if confirmed:
        text = f":white_check_mark: Step {step_number} (*{_esc(step_name)}*) confirmed by <@{by}>; the job continues."
    else:
        text = f":octagonal_sign: Step {step_number} (*{_esc(step_name)}*): <@{by}> stopped the job here."
    return notice(text)
