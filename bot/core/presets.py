"""Presets: launches a team repeats, named in the policy file (`[presets.<name>]`), some variables locked."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, model_validator
from pydantic_core import PydanticCustomError

from bot.core.errors import Refusal
from bot.core.reasons import Channel, Reason, say

__all__ = ["MAX_PRESET_NAME", "Preset", "PresetName", "PresetRefused", "check_locks"]

MAX_PRESET_NAME = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")


class PresetRefused(Refusal):
    """A preset cannot be used as asked (a locked variable overridden, another business, another channel)."""


def _preset_name(value: str) -> str:
    """`/bkjob run <name>`: a word people type; all digits would read as a job id, so one letter at least."""
    if not _NAME.fullmatch(value) or len(value) > MAX_PRESET_NAME or value.isdigit():
        raise PydanticCustomError(
            "policy",
            f"{value!r} is not a preset name: letters, digits, '-', '_' or '.', at most {MAX_PRESET_NAME} "
            "characters, not only digits (a number is read as a job id)",
        )
    return value


def _channel_id(value: str) -> str:
    if not _CHANNEL_ID.fullmatch(value):
        raise PydanticCustomError("policy", f"{value!r} is not a Slack channel ID (C… or G…)")
    return value


PresetName = Annotated[str, AfterValidator(_preset_name)]


class Preset(BaseModel):
    """A named launch: a plan in a business with variable values; `locked` ones no one may change from Slack.

    A preset never widens what a channel allows: it is used only where the channel's policy allows its business
    and plan (checked when it is used, and for the channels it names when the file is loaded).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    plan: int = Field(strict=True, ge=1)
    bk_biz_id: int = Field(strict=True, ge=1)
    description: StrictStr = ""
    values: dict[StrictStr, StrictStr] = {}
    locked: frozenset[StrictStr] = frozenset()
    channels: frozenset[Annotated[str, AfterValidator(_channel_id)]] | None = None

    @model_validator(mode="after")
    def _locked_have_values(self) -> Preset:
        """A locked variable without a value would lock nothing in place: the writer forgot its value."""
        missing = sorted(self.locked - set(self.values))
        if missing:
            raise PydanticCustomError(
                "policy", f"locked variables {', '.join(missing)} have no value in `values`: give each one a value"
            )
        return self

    @property
    def locked_values(self) -> dict[str, str]:
        return {name: value for name, value in self.values.items() if name in self.locked}

    def where_refused(self, name: str, channel: str) -> Reason | None:
        """Why the preset may not be used in `channel` by its own list (the channel's policy is checked apart)."""
        if self.channels is not None and channel not in self.channels:
            return say("Preset `{name}` is not offered in {channel}.", name=name, channel=Channel(channel))
        return None

    def merge(self, name: str, overrides: Mapping[str, str], *, biz_id: int | None = None) -> dict[str, str]:
        """The preset's values with the person's overrides over them; a locked variable cannot be overridden."""
        if biz_id is not None and biz_id != self.bk_biz_id:
            raise PresetRefused(
                say(
                    "preset `{name}` launches in business {biz}, not {asked}",
                    name=name,
                    biz=self.bk_biz_id,
                    asked=biz_id,
                )
            )
        locked = {n: v for n, v in self.locked_values.items() if n in overrides and overrides[n] != v}
        if locked:
            listed = ", ".join(f"`{n}` (always `{v}`)" for n, v in locked.items())
            raise PresetRefused(say("preset `{name}` locks {listed}: it cannot be changed", name=name, listed=listed))
        return {**self.values, **overrides}

    def summary(self) -> str:
        """One line for lists: the plan, the business and the locked values."""
        text = f"plan {self.plan} in business {self.bk_biz_id}"
        if self.locked:
            text += "; locked: " + ", ".join(f"{n}={v}" for n, v in sorted(self.locked_values.items()))
        return text


def check_locks(bk_job_id: int, applying: Sequence[tuple[str, Preset]], values: Mapping[str, str]) -> None:
    """A run of the plan by ID where presets apply keeps every value they lock (issue 23): a lock binds the plan in
    that channel, not only the preset. `values` are the values the run would have (given, else the plan's).

    Raises PresetRefused naming each changed variable, the value it must keep, and the presets that lock it.
    """
    broken: dict[str, tuple[str, list[str]]] = {}
    for name, preset in applying:
        for variable, locked in preset.locked_values.items():
            if variable in values and values[variable] != locked:
                broken.setdefault(variable, (locked, []))[1].append(name)
    if not broken:
        return
    listed = "; ".join(
        f"`{variable}` (always `{locked}`, locked by preset {', '.join(f'`{n}`' for n in names)})"
        for variable, (locked, names) in broken.items()
    )
    presets = sorted({n for _, names in broken.values() for n in names})
    raise PresetRefused(
        say(
            "plan {plan} here keeps the values its presets lock: {listed}. Keep them, or run the preset "
            "(`/bkjob run {preset}`)",
            plan=bk_job_id,
            listed=listed,
            preset=presets[0],
        )
    )
