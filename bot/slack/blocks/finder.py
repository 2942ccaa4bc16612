"""Finding plans: the picker's options, what an option or Run button stands for (PlanChoice), `/bkjob plans`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    ExternalDataSelectElement,
    MarkdownTextObject,
    Option,
    OptionGroup,
    SectionBlock,
)

from bot.bkjob.models import PlanSummary
from bot.slack.blocks.text import MAX_SECTION, Message, cut, modal, untrusted

__all__ = [
    "PLAN_PICKER_BLOCK",
    "PLAN_PICKER_ACTION",
    "RUN_PLAN_ACTION",
    "PlanChoice",
    "picker_block",
    "plan_options",
    "plans_list",
    "finding_modal",
]

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
        return Option(value=self.value[:150], text=cut(self.label, _MAX_OPTION_TEXT))

    def option_json(self) -> Mapping[str, Any]:
        """The option as Slack's JSON, built (and checked by slack_sdk's model) once per plan and label: a picker
        answers up to 100 options per keystroke, and building them anew was a third of each answer's time."""
        return _option_json(self.value, self.label)


@lru_cache(maxsize=20_000)
def _option_json(value: str, label: str) -> Mapping[str, Any]:
    return Option(value=value[:150], text=cut(label, _MAX_OPTION_TEXT)).to_dict()


def _is_long(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < len(text) <= 19 and 0 < int(text) < 2**63


def picker_block(selected: PlanChoice | None = None) -> ActionsBlock:
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
    searched = f" matching *{untrusted(' '.join(words))}*" if words else ""
    blocks: list[Block] = []
    lines = 0
    for choice, summary in presets[:_MAX_LISTED]:
        blocks.append(_run_row(f":bookmark: *{untrusted(choice.key)}* (preset): {untrusted(summary)}", choice))
        lines += 1
    for plan in plans[:_MAX_LISTED]:
        choice = PlanChoice.plan(plan.bk_job_id, plan.name, bk_biz_id)
        blocks.append(_run_row(f"*{untrusted(plan.name)}* (ID {plan.bk_job_id})", choice))
        lines += 1
    if lines == 0:
        head = f"No plans or presets{searched} in business {bk_biz_id}."
    else:
        head = f"Plans and presets{searched} in business *{bk_biz_id}*:"
    blocks.insert(0, SectionBlock(text=MarkdownTextObject(text=cut(head, MAX_SECTION))))
    tail = []
    if more or len(plans) > _MAX_LISTED:
        tail.append("More plans match: add words to narrow the list, or type in the form's picker (`/bkjob run`).")
    if note:
        tail.append(note)
    if tail:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=cut(" ".join(tail), 2000))]))
    text = f"{lines} plans and presets{searched}" if lines else f"No plans or presets{searched}"
    return Message(text=cut(text, 3000), blocks=[b.to_dict() for b in blocks])


def _run_row(text: str, choice: PlanChoice) -> SectionBlock:
    return SectionBlock(
        text=MarkdownTextObject(text=cut(text, MAX_SECTION)),
        accessory=ButtonElement(text="Run", action_id=RUN_PLAN_ACTION, value=choice.value[:2000]),
    )


def finding_modal() -> dict[str, Any]:
    """Opened at once for `/bkjob run` without a plan: the trigger lasts 3 s, finding who you are may not."""
    return modal(
        title="BK-JOB",
        blocks=[SectionBlock(text=MarkdownTextObject(text=":hourglass_flowing_sand: Finding plans…"))],
    )
