"""The run form (its picker, variables, loading and error modals) and the launch message with its status line."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cachetools import LRUCache
from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)

from bot.bkjob import status
from bot.bkjob.models import JobDetail, PlanVariable, VariableType
from bot.bkjob.variables import default_text, host_hint, type_name
from bot.slack.blocks.finder import PlanChoice, picker_block
from bot.slack.blocks.runcontrol import run_controls
from bot.slack.blocks.text import (
    MAX_SECTION,
    Message,
    cut,
    duration,
    job_url,
    mentions,
    modal,
    status_emoji,
    untrusted,
    variables_text,
)
from bot.store.records import LaunchRecord, LaunchState

__all__ = [
    "RUN_VIEW",
    "VarRef",
    "var_block_id",
    "parse_var_block_id",
    "loading_modal",
    "error_modal",
    "run_modal",
    "launch_message",
    "plain_status",
    "picker_modal",
]

RUN_VIEW = "bkjob_run"
_MAX_INPUT = 3000  # Slack's limit on a plain-text input (and its initial value)
_MAX_MODAL_BLOCKS = 100


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


def loading_modal(job_id: int) -> dict[str, Any]:
    """Opened at once: Slack's trigger_id lasts 3 seconds, reading the plan may take longer."""
    return dict(_loading_modal(job_id))


@lru_cache(maxsize=1024)
def _loading_modal(job_id: int) -> dict[str, Any]:
    return modal(
        title="BK-JOB",
        blocks=[SectionBlock(text=MarkdownTextObject(text=f":hourglass_flowing_sand: Reading plan *{job_id}*…"))],
    )


def error_modal(message: str) -> dict[str, Any]:
    """One icon (the message's own when it brings one) and a Close button: there is nothing to cancel."""
    text = message if message.startswith(":") else f":warning: {message}"
    return modal(
        title="BK-JOB",
        close="Close",
        blocks=[SectionBlock(text=MarkdownTextObject(text=cut(text, MAX_SECTION)))],
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
    heading = f"Plan *{untrusted(plan.name)}* (ID {plan.bk_job_id}) in business *{bk_biz_id}*"
    if preset:
        heading = f"Preset *{untrusted(preset)}*: " + heading
    blocks: list[Block] = [picker_block(PlanChoice.plan(plan.bk_job_id, plan.name))] if picker else []
    blocks.append(SectionBlock(text=MarkdownTextObject(text=cut(heading, 3000))))
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
    return modal(
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
    return ContextBlock(elements=[MarkdownTextObject(text=cut(text, 2000))])


def _variable_block(var: PlanVariable, override: str | None) -> Block:
    label = cut(f"{var.name} ({type_name(var.category)})", 2000)
    if var.is_password:
        state = var.password_state()
        return ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=cut(f"*{untrusted(var.name)}* (password): {state}, keeps the plan's value", 2000)
                )
            ]
        )
    initial = override if override is not None else default_text(var)
    if len(initial) > _MAX_INPUT:
        return ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=cut(f"*{untrusted(var.name)}*: longer than Slack can edit, keeps the plan's value", 2000)
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
        hint=cut(hint, 2000) if hint else None,
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
        f"*Plan:* {untrusted(launch.plan_name)} (ID {launch.bk_job_id})   *Business:* {launch.bk_biz_id}\n"
        f"*Launched by:* <@{launch.requester}> as `{untrusted(launch.bk_username)}`   *Instance:* {instance}"
    )
    if launch.approved_by:
        facts += f"\n*Approved by:* {mentions(launch.approved_by)}"
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=cut(line, MAX_SECTION))),
        SectionBlock(text=MarkdownTextObject(text=cut(facts, MAX_SECTION))),
        ContextBlock(elements=[MarkdownTextObject(text=cut(variables_text(launch.variables), 2000))]),
    ]
    text = f"{plain_status(launch)}: {untrusted(launch.plan_name)} (plan {launch.bk_job_id}) by <@{launch.requester}>"
    controls = run_controls(launch, url=url)
    if controls is not None:
        blocks.append(controls)
    return Message(text=cut(text, 3000), blocks=[b.to_dict() for b in blocks])


def _status_line(launch: LaunchRecord) -> str:
    if launch.state is LaunchState.STARTING:
        return ":hourglass_flowing_sand: *Launching…*"
    if launch.state is LaunchState.NOT_STARTED:
        return f":no_entry: *Not launched*: {untrusted(launch.error or 'BK-JOB refused the launch')}"
    if launch.state is LaunchState.UNKNOWN:
        return f":grey_question: *Unknown: check BK-JOB*. {untrusted(launch.error or '')}".rstrip()
    code = launch.job_status if launch.job_status is not None else 2
    progress = launch.progress or {}
    if launch.state is LaunchState.RUNNING and isinstance(progress.get("status"), int):
        code = progress["status"]  # waiting for a confirmer (7) or stopping (10) shows as such
    line = f"{status_emoji(code)} *{status.describe(code).capitalize()}*"
    if launch.state is LaunchState.RUNNING and progress.get("total"):
        line += f": {min(int(progress.get('done', 0)), int(progress['total']))} of {progress['total']} steps done"
        if progress.get("current"):
            line += f", running *{untrusted(str(progress['current']))}*"
        if progress.get("elapsed") is not None:
            line += f", {duration(float(progress['elapsed']))} elapsed"
    return line


def plain_status(launch: LaunchRecord) -> str:
    if launch.state is LaunchState.STARTING:
        return "Launching"
    if launch.state is LaunchState.NOT_STARTED:
        return "Not launched"
    if launch.state is LaunchState.UNKNOWN:
        return "Unknown"
    return status.describe(launch.job_status if launch.job_status is not None else 2).capitalize()


def _locked_block(var: PlanVariable, value: str) -> Block:
    text = (
        f":lock: *{untrusted(var.name)}* ({type_name(var.category)}) = `{untrusted(cut(value, 500))}`,"
        " locked by the preset"
    )
    return ContextBlock(elements=[MarkdownTextObject(text=cut(text, 2000))])


def picker_modal(*, bk_biz_id: int, metadata: str, note: str | None = None) -> dict[str, Any]:
    """The form before a plan is chosen: the picker, and nothing to submit until a plan fills the form."""
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=f"Choose a plan of business *{bk_biz_id}*: type part of its name.")),
        picker_block(),
    ]
    if note:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=cut(note, 2000))]))
    return modal(title="Run a BK-JOB plan", blocks=blocks, callback_id=RUN_VIEW, private_metadata=metadata)
