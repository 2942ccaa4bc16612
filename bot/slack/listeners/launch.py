"""Launching: `/bkjob run` (by plan or preset), the run form's submission, and the Run button of `/bkjob plans`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from bot.core.approvals import Approvals
from bot.core.audit import Audit
from bot.core.background import Background
from bot.core.launches import Launches, LaunchRequest
from bot.core.policy import Policy
from bot.core.presets import Preset, PresetRefused
from bot.core.reasons import say
from bot.core.tokens import Signer
from bot.errors import BotError
from bot.slack.blocks.finder import PlanChoice
from bot.slack.blocks.launch import error_modal
from bot.slack.blocks.text import escape, untrusted
from bot.slack.commands import USAGE, RunCommand
from bot.slack.listeners.finder import FinderListeners
from bot.slack.listeners.forms import RunForms, read_form
from bot.slack.listeners.shared import Ack, Respond, cut, ephemeral
from bot.slack.notifier import Notifier
from bot.slack.payloads import RunMeta, verified
from bot.slack.words import explain, words
from bot.store import Store

__all__ = ["LaunchListeners"]

log = logging.getLogger(__name__)


class LaunchListeners:
    """A launch asked for by command, form or button: the channel's policy first, then a launch or an approval."""

    def __init__(
        self,
        *,
        store: Store,
        launches: Launches,
        approvals: Approvals,
        notifier: Notifier,
        audit: Audit,
        policy: Policy,
        signer: Signer,
        default_biz: int | None,
        background: Background,
        forms: RunForms,
        finder: FinderListeners,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._launches = launches
        self._approvals = approvals
        self._notifier = notifier
        self._audit = audit
        self._policy = policy
        self._signer = signer
        self._default_biz = default_biz
        self._background = background
        self._forms = forms
        self._finder = finder
        self._clock = clock

    async def run(self, cmd: RunCommand, command: Mapping[str, Any], respond: Respond) -> None:
        if cmd.job_id is None:
            await self._run_by_name(cmd, command, respond)
            return
        user, channel = str(command["user_id"]), str(command["channel_id"])
        policy = self._policy.for_channel(channel)
        biz = cmd.biz_id or policy.bk_biz_id or self._default_biz
        if biz is None:
            await ephemeral(
                respond, ":warning: Which business? Add `--biz &lt;bk_biz_id&gt;` (no default is set here)."
            )
            return
        if not await self._allowed(user, channel, biz, cmd.job_id, respond):
            return
        if not cmd.confirm:
            await self._forms.open(command, respond, biz=biz, job_id=cmd.job_id, prefill=cmd.overrides)
            return
        request = LaunchRequest(
            requester=user, channel=channel, bk_biz_id=biz, bk_job_id=cmd.job_id, values=cmd.overrides
        )
        try:
            await self._start(request)
        except BotError as exc:
            await ephemeral(respond, explain(exc))

    async def _allowed(self, user: str, channel: str, biz: int, job_id: int, respond: Respond) -> bool:
        """The channel's policy is applied before anything is sent to BK-JOB."""
        refusal = self._policy.for_channel(channel).refusal(channel=channel, bk_biz_id=biz, bk_job_id=job_id)
        if refusal is None:
            return True
        await self._audit.record(user, "launch_refused", channel=channel, detail=words(refusal))
        await ephemeral(respond, f":no_entry: {words(refusal)}")
        return False

    async def _start(self, request: LaunchRequest) -> None:
        """Launch now, or post an approval request where the channel demands one."""
        policy = self._policy.for_channel(request.channel)
        if policy.approval:
            await self._approvals.request(request, policy)
        else:
            await self._launches.launch(request)

    # -- the run form ---------------------------------------------------------------------------------------

    async def on_run_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = str(body["user"]["id"])
        meta = verified(self._signer, RunMeta, view.get("private_metadata"))
        if meta is None or meta.u != user:
            log.warning("refused a run form with tampered metadata from %s", user)
            await ack(response_action="update", view=error_modal("This form was not issued to you by the bot."))
            return
        values, errors = read_form(view)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        if meta.s is not None:
            try:
                values = self._preset_values(meta, values)
            except PresetRefused as exc:
                await ack(response_action="update", view=error_modal(f"{words(exc.reason)}; nothing was launched."))
                return
        await ack()
        request = LaunchRequest(
            requester=user, channel=meta.c, bk_biz_id=meta.b, bk_job_id=meta.j, values=values, preset=meta.s
        )
        self._background.spawn(self._submitted(request, f"view:{view.get('id')}:{view.get('hash')}"), name="run-form")

    async def _submitted(self, request: LaunchRequest, claim: str) -> None:
        if not await self._store.claim(claim, now=self._clock()):
            return
        # The policy as it is now, not as it was when the form opened: limits tightened meanwhile apply.
        refusal = self._policy.for_channel(request.channel).refusal(
            channel=request.channel, bk_biz_id=request.bk_biz_id, bk_job_id=request.bk_job_id
        )
        if refusal is not None:
            await self._audit.record(
                request.requester, "launch_refused", channel=request.channel, detail=words(refusal)
            )
            await self._notifier.tell(request.channel, request.requester, f":no_entry: {words(refusal)}")
            return
        try:
            await self._start(request)
        except BotError as exc:
            await self._notifier.tell(request.channel, request.requester, explain(exc))

    # -- presets, and words instead of a plan ID (issue 17) ---------------------------------------------------

    async def _run_by_name(self, cmd: RunCommand, command: Mapping[str, Any], respond: Respond) -> None:
        """`/bkjob run <preset>` launches a preset; other words (or none) open the form with the plan picker."""
        name = cmd.words[0] if len(cmd.words) == 1 else None
        preset = self._policy.preset(name) if name else None
        if name is not None and preset is not None:
            await self._run_preset(name, preset, cmd, command, respond)
            return
        if cmd.confirm or cmd.overrides:
            typed = untrusted(cut(" ".join(cmd.words), 60))
            await ephemeral(
                respond,
                f":warning: missing job id: `{typed}` is not a preset here, and --yes or name=value need a plan. "
                f"Write `/bkjob run &lt;job_id&gt;`, or `/bkjob run {typed}` to find it in the form.\n\n"
                f"{escape(USAGE)}",
            )
            return
        await self._finder.open_picker(cmd, command, respond)

    async def _run_preset(
        self, name: str, preset: Preset, cmd: RunCommand, command: Mapping[str, Any], respond: Respond
    ) -> None:
        """A preset launches like `/bkjob run <plan>` with its values, inside what the channel allows."""
        user, channel = str(command["user_id"]), str(command["channel_id"])
        refusal = self._policy.preset_refusal(name, preset, channel)
        if refusal is not None:
            await self._audit.record(user, "launch_refused", channel=channel, detail=words(refusal))
            await ephemeral(respond, f":no_entry: {words(refusal)}")
            return
        try:
            values = preset.merge(name, cmd.overrides, biz_id=cmd.biz_id)
        except PresetRefused as exc:
            await ephemeral(respond, explain(exc))
            return
        if not cmd.confirm:
            await self._forms.open(
                command, respond, biz=preset.bk_biz_id, job_id=preset.plan, prefill=values, preset=(name, preset)
            )
            return
        request = LaunchRequest(
            requester=user,
            channel=channel,
            bk_biz_id=preset.bk_biz_id,
            bk_job_id=preset.plan,
            values=values,
            preset=name,
        )
        try:
            await self._start(request)
        except BotError as exc:
            await ephemeral(respond, explain(exc))

    def _preset_values(self, meta: RunMeta, values: Mapping[str, str]) -> dict[str, str]:
        """A submitted preset form: its locked values are put back (they were never inputs) and cannot be forged."""
        name = meta.s or ""
        preset = self._policy.preset(name)
        if preset is None or (preset.bk_biz_id, preset.plan) != (meta.b, meta.j):
            raise PresetRefused(say("preset `{name}` has changed since this form was opened: run it again", name=name))
        refusal = self._policy.preset_refusal(name, preset, meta.c)
        if refusal is not None:
            raise PresetRefused(refusal)
        return preset.merge(name, values)

    async def on_run_button(self, ack: Ack, body: dict[str, Any]) -> None:
        """*Run* next to a plan or preset in `/bkjob plans`: the same as typing `/bkjob run <id|preset>`."""
        await ack()
        respond = self._notifier.responder(str(body.get("response_url") or ""))
        choice = PlanChoice.parse(str(body["actions"][0].get("value") or ""))
        channel = str((body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id") or "")
        if choice is None or not channel:
            self._background.spawn(ephemeral(respond, "That button is not one I know; nothing changed."), name="run")
            return
        kind, key, biz = choice
        cmd = RunCommand(words=(key,)) if kind == "preset" else RunCommand(job_id=int(key), biz_id=biz)
        command = {"user_id": str(body["user"]["id"]), "channel_id": channel, "trigger_id": body.get("trigger_id")}
        self._background.spawn(self.run(cmd, command, respond), name="run-button")
