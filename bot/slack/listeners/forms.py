"""The run form: opened loading within the trigger's 3 seconds, filled once the plan is read, and read back."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from bot.bkjob.errors import TargetError
from bot.bkjob.targets import parse_targets
from bot.core.launches import Launches
from bot.core.policy import ChannelPolicy, Policy
from bot.core.presets import Preset
from bot.core.tokens import Signer
from bot.errors import BotError
from bot.slack.blocks.launch import error_modal, loading_modal, parse_var_block_id, run_modal
from bot.slack.errors import SlackError
from bot.slack.listeners.shared import Respond, ephemeral
from bot.slack.notifier import Notifier
from bot.slack.words import explain

__all__ = ["MAX_FORM_VALUE", "RunForms", "read_form"]

log = logging.getLogger(__name__)

_MAX_INLINE_ERROR = 150
_ENTRY = re.compile(r'^"[^"]*":')
MAX_FORM_VALUE = 3000
"""Slack caps a plain-text input at 3000 characters; a longer value did not come from our form."""


class RunForms:
    """Builds, opens and fills the run form for a plan, for `/bkjob run`, presets and the plan picker alike."""

    def __init__(self, *, notifier: Notifier, launches: Launches, policy: Policy, signer: Signer) -> None:
        self._notifier = notifier
        self._launches = launches
        self._policy = policy
        self._signer = signer

    async def open(
        self,
        command: Mapping[str, Any],
        respond: Respond,
        *,
        biz: int,
        job_id: int,
        prefill: Mapping[str, str],
        preset: tuple[str, Preset] | None = None,
    ) -> None:
        """Open a loading modal within the trigger's 3 seconds, then fill it once the plan is read."""
        try:
            view_id, view_hash = await self._notifier.open_view(str(command["trigger_id"]), loading_modal(job_id))
        except SlackError as exc:
            await ephemeral(respond, explain(exc))
            return
        user, channel = str(command["user_id"]), str(command["channel_id"])
        meta: dict[str, Any] = {"p": "run", "c": channel, "b": biz, "j": job_id, "u": user}
        view = await self.build(meta, prefill=prefill, preset=preset)
        await self.fill(view_id, view, view_hash, respond)

    async def fill(self, view_id: str, view: dict[str, Any], view_hash: str, respond: Respond) -> None:
        """Replace the loading modal; a person who closed it meanwhile (Slack: `not_found`) changed their mind,
        which is not an error to tell them about."""
        try:
            await self._notifier.update_view(view_id, view, view_hash=view_hash)
        except SlackError as exc:
            if exc.error == "not_found":
                log.info("the loading form %s was closed before it was filled", view_id)
                return
            await ephemeral(respond, explain(exc))

    async def build(
        self,
        meta: dict[str, Any],
        *,
        prefill: Mapping[str, str],
        preset: tuple[str, Preset] | None = None,
        picker: bool = False,
    ) -> dict[str, Any]:
        """The run form for the plan `meta` names (signed into it), or the modal that says why there is none."""
        locked = preset[1].locked_values if preset else None
        if preset:
            meta = {**meta, "s": preset[0]}
        try:
            plan = await self._launches.plan(
                requester=meta["u"], bk_biz_id=meta["b"], bk_job_id=meta["j"], names=list(prefill)
            )
            return run_modal(
                plan,
                bk_biz_id=meta["b"],
                prefill=prefill,
                metadata=self._signer.sign(meta),
                locked=locked,
                preset=preset[0] if preset else None,
                picker=picker,
                approval=_approval_of(self._policy.for_channel(str(meta["c"]))),
            )
        except BotError as exc:
            return error_modal(explain(exc))


def _approval_of(policy: ChannelPolicy) -> tuple[tuple[str, ...], int] | None:
    """Who a launch from this channel's form will ask, and how many must approve; None where it launches at once."""
    return (tuple(policy.approvers), policy.min_approvals) if policy.approval else None


def read_form(view: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Values by variable name, and inline errors by block_id for host lists that do not parse."""
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    state = view.get("state", {}).get("values", {})
    for block_id, actions in state.items():
        ref = parse_var_block_id(block_id)
        if ref is None or not isinstance(actions, Mapping):
            continue
        for name, action in actions.items():
            text = str((action or {}).get("value") or "")
            if len(text) > MAX_FORM_VALUE:
                errors[block_id] = f"At most {MAX_FORM_VALUE} characters, not {len(text)}."
                continue
            if ref.category == 3:
                try:
                    parse_targets(text)
                except TargetError as exc:
                    errors[block_id] = _inline_error(exc)
            values[name] = text
    return values, errors


def _inline_error(exc: TargetError) -> str:
    """Slack shows a short line under the field: name every bad entry, with the reason when there is one."""
    if len(exc.problems) == 1:
        return _cut_words(exc.problems[0], _MAX_INLINE_ERROR)
    entries = ", ".join(m.group(0)[:-1] if (m := _ENTRY.match(p)) else p for p in exc.problems)
    hint = " Use 10.0.0.1, 2:10.0.0.1, group:<id> or module:<id>."
    return _cut_words(f"Not hosts: {entries}.", _MAX_INLINE_ERROR - len(hint)) + hint


def _cut_words(text: str, limit: int) -> str:
    """Cut at a word boundary (a cut entry such as `10.0.0.1` reading `10.0.` would mislead)."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head).rstrip(" ,") + "…"
