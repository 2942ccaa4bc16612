"""Block Kit builders: pure functions from domain objects to Slack messages and modals, and their IDs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot import status
from bot.bk_models import JobDetail, JobInstanceStatus, PlanVariable, VariableType
from bot.store.records import LaunchRecord, LaunchState, SentVariable
from bot.variables import MASK, default_text, type_name

__all__ = [
    "RUN_VIEW",
    "Message",
    "VarRef",
    "error_modal",
    "job_url",
    "launch_message",
    "loading_modal",
    "parse_var_block_id",
    "result_reply",
    "run_modal",
    "var_block_id",
]

RUN_VIEW = "bkjob_run"
_MAX_INPUT = 3000  # Slack's limit on a plain-text input (and its initial value)
_MAX_SECTION = 3000
_MAX_MODAL_BLOCKS = 100
_MAX_FAILED_STEPS = 10


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
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=f":hourglass_flowing_sand: Reading plan *{job_id}*…"))
        ],
    )


def error_modal(message: str) -> dict[str, Any]:
    return _modal(
        title="BK-JOB",
        blocks=[SectionBlock(text=MarkdownTextObject(text=_cut(f":warning: {message}", _MAX_SECTION)))],
    )


def run_modal(
    plan: JobDetail, *, bk_biz_id: int, prefill: Mapping[str, str], metadata: str
) -> dict[str, Any]:
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
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text="More variables keep the plan's values.")])
        )
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
                MarkdownTextObject(
                    text=_cut(f"*{_esc(var.name)}* (password): {state}, keeps the plan's value", 2000)
                )
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
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=_cut(line, _MAX_SECTION))),
        SectionBlock(text=MarkdownTextObject(text=_cut(facts, _MAX_SECTION))),
        ContextBlock(elements=[MarkdownTextObject(text=_cut(_variables_text(launch.variables), 2000))]),
    ]
    text = f"{_plain_status(launch)}: {launch.plan_name} (plan {launch.bk_job_id}) by <@{launch.requester}>"
    return Message(text=_cut(text, 3000), blocks=[b.to_dict() for b in blocks])


def result_reply(
    launch: LaunchRecord,
    *,
    job_status: int,
    detail: JobInstanceStatus | None,
    note: str | None,
    web_root: str | None,
) -> Message:
    """The thread reply: status, plan, instance, duration, and which steps failed."""
    word = status.describe(job_status)
    url = job_url(web_root, launch.job_instance_id)
    instance = f"<{url}|{launch.job_instance_id}>" if url else str(launch.job_instance_id)
    head = f"{status.emoji(job_status)} *{word.capitalize()}*: {_esc(launch.plan_name)}, instance {instance}"
    lines = [head]
    if detail is not None and detail.job_instance.total_time is not None:
        lines.append(f"Ran for {_duration(detail.job_instance.total_time)}")
    if job_status not in status.SUCCESSFUL:
        lines.extend(_failed_steps(detail))
        lines.append(f"<@{launch.requester}>")
    if note:
        lines.append(f"_{_esc(note)}_")
    body = "\n".join(lines)
    text = f"{word.capitalize()}: {launch.plan_name}, instance {launch.job_instance_id}"
    return Message(
        text=_cut(text, 3000),
        blocks=[SectionBlock(text=MarkdownTextObject(text=_cut(body, _MAX_SECTION))).to_dict()],
    )


def _failed_steps(detail: JobInstanceStatus | None) -> list[str]:
    if detail is None:
        return []
    failed = [s for s in detail.steps if s.status not in status.SUCCESSFUL and s.status != 1]
    lines = [
        f"• step *{_esc(s.name or str(s.step_instance_id))}*: {status.describe(s.status)}"
        for s in failed[:_MAX_FAILED_STEPS]
    ]
    if len(failed) > _MAX_FAILED_STEPS:
        lines.append(f"• and {len(failed) - _MAX_FAILED_STEPS} more steps")
    return lines


def _status_line(launch: LaunchRecord) -> str:
    if launch.state is LaunchState.STARTING:
        return ":hourglass_flowing_sand: *Launching…*"
    if launch.state is LaunchState.NOT_STARTED:
        return f":no_entry: *Not launched*: {_esc(launch.error or 'BK-JOB refused the launch')}"
    if launch.state is LaunchState.UNKNOWN:
        return f":grey_question: *Unknown: check BK-JOB*. {_esc(launch.error or '')}".rstrip()
    code = launch.job_status if launch.job_status is not None else 2
    return f"{status.emoji(code)} *{status.describe(code).capitalize()}*"


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
