"""Thin Bolt handlers: ack at once, then hand a typed request to the domain and tell the person the outcome."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse

from bot.bkjob.errors import TargetError
from bot.bkjob.esb import BkClient
from bot.bkjob.targets import parse_targets
from bot.core.approvals import Approvals
from bot.core.audit import Audit
from bot.core.background import Background
from bot.core.finder import PlanFinder
from bot.core.identity import Identities
from bot.core.launches import Launches, LaunchRequest
from bot.core.logfiles import LogFiles
from bot.core.policy import ChannelPolicy, Policy
from bot.core.presets import Preset, PresetRefused
from bot.core.runcontrol import Operation, Operations
from bot.core.tokens import Signer
from bot.errors import BotError
from bot.slack.blocks import (
    APPROVE_ACTION,
    CONFIRM_ACTION,
    END_CONFIRM_ACTION,
    IGNORE_ACTION,
    LOGS_ACTION,
    OPEN_ACTION,
    PLAN_PICKER_ACTION,
    REASON_ACTION,
    REASON_BLOCK,
    REJECT_ACTION,
    REJECT_VIEW,
    RERUN_ACTION,
    RETRY_FAILED_ACTION,
    RETRY_STEP_ACTION,
    RUN_PLAN_ACTION,
    RUN_VIEW,
    STOP_ACTION,
    Message,
    PlanChoice,
    error_modal,
    escape,
    finding_modal,
    fit_text,
    history_list,
    instance_status,
    loading_modal,
    parse_var_block_id,
    pending_list,
    picker_modal,
    plan_options,
    plans_list,
    reject_modal,
    run_modal,
    untrusted,
)
from bot.slack.commands import (
    USAGE,
    Command,
    HelpCommand,
    HistoryCommand,
    LogsCommand,
    PendingCommand,
    PlansCommand,
    RetryCommand,
    RunCommand,
    StatusCommand,
    StopCommand,
    parse_command,
)
from bot.slack.errors import CommandError, SlackError
from bot.slack.notifier import Notifier
from bot.slack.payloads import PickMeta, RejectMeta, RunMeta, verified
from bot.slack.words import explain, words
from bot.store import Store

__all__ = ["Listeners"]

log = logging.getLogger(__name__)

Ack = Callable[..., Awaitable[None]]
Respond = Callable[..., Awaitable[Any]]

_MAX_INLINE_ERROR = 150
_MAX_PENDING = 50
_MAX_ECHO = 40  # what a person typed, quoted back: enough to recognise, never a wall of their own text
_ANY = re.compile(r".*")
_ENTRY = re.compile(r'^"[^"]*":')
MAX_FORM_VALUE = 3000
"""Slack caps a plain-text input at 3000 characters; a longer value did not come from our form."""
_FOREIGN_FORM = "This form is not one I issued (it may be from an older version of the bot); nothing was launched."
OPTIONS_BUDGET = 2.0
"""Seconds an options request may wait for a plan list being read: Slack shows nothing after 3 s."""
_RECENT = 10
_OPERATIONS = {
    STOP_ACTION: Operation.STOP,
    RETRY_FAILED_ACTION: Operation.RETRY_FAILED,
    IGNORE_ACTION: Operation.IGNORE,
    RETRY_STEP_ACTION: Operation.RETRY_STEP,
    RERUN_ACTION: Operation.RERUN,
    CONFIRM_ACTION: Operation.CONFIRM,
    END_CONFIRM_ACTION: Operation.END_CONFIRM,
}


class Listeners:
    """One place where every Slack surface the bot answers is registered."""

    def __init__(
        self,
        *,
        store: Store,
        launches: Launches,
        approvals: Approvals,
        notifier: Notifier,
        identities: Identities,
        bk: BkClient,
        audit: Audit,
        policy: Policy,
        signer: Signer,
        default_biz: int | None,
        web_root: str | None,
        background: Background,
        finder: PlanFinder,
        options_budget: float = OPTIONS_BUDGET,
        list_wait: float = 10.0,
        operations: Operations | None = None,
        clock: Callable[[], float] = time.time,
        log_files: LogFiles | None = None,
    ) -> None:
        self._log_files = log_files
        self._finder = finder
        self._options_budget = options_budget
        self._list_wait = list_wait
        self._operations = operations
        self._background = background
        self._store = store
        self._launches = launches
        self._approvals = approvals
        self._notifier = notifier
        self._identities = identities
        self._bk = bk
        self._audit = audit
        self._policy = policy
        self._signer = signer
        self._default_biz = default_biz
        self._web_root = web_root
        self._clock = clock

    def register(self, app: AsyncApp) -> None:
        app.command("/bkjob")(self.on_command)
        app.view(RUN_VIEW)(self.on_run_submitted)
        app.action(APPROVE_ACTION)(self.on_approve)
        app.action(REJECT_ACTION)(self.on_reject)
        app.view(REJECT_VIEW)(self.on_reject_submitted)
        app.options(PLAN_PICKER_ACTION)(self.on_plan_options)
        app.action(PLAN_PICKER_ACTION)(self.on_plan_picked)
        app.action(RUN_PLAN_ACTION)(self.on_run_button)
        for action_id in _OPERATIONS:
            app.action(action_id)(self.on_operation)
        app.action(OPEN_ACTION)(self.on_open)
        app.action(LOGS_ACTION)(self.on_logs)
        # Registered last, so they only see what nothing above matched: buttons and forms of another version.
        app.action(_ANY)(self.on_unknown_action)
        app.view(_ANY)(self.on_unknown_view)
        app.error(self.on_error)

    # -- the slash command ----------------------------------------------------------------------------------

    async def on_command(self, ack: Ack, command: dict[str, Any]) -> None:
        """What can be answered without reading anything (the usage, a command that does not parse) is answered in
        the ack itself, as Slack allows for slash commands: no second request, no record; the rest after the ack."""
        immediate = _immediate_answer(str(command.get("text") or ""))
        if isinstance(immediate, str):
            await ack(text=fit_text(immediate), response_type="ephemeral")
            return
        await ack()
        respond = self._notifier.responder(str(command.get("response_url") or ""))
        self._background.spawn(self._command(immediate, command, respond), name="slash-command")

    async def _command(self, parsed: Command, command: dict[str, Any], respond: Respond) -> None:
        # Slack may deliver the same command again (X-Slack-Retry-Num); its trigger_id is unique per invocation.
        if not await self._store.claim(f"command:{command.get('trigger_id')}", now=self._clock()):
            log.info("dropping a repeated delivery of a command from %s", command.get("user_id"))
            return
        channel = str(command.get("channel_id", ""))
        user = str(command.get("user_id", ""))
        if isinstance(parsed, PendingCommand | HistoryCommand) and not await self._may_read(user, channel, respond):
            return
        if isinstance(parsed, RunCommand):
            await self._run(parsed, command, respond)
        elif isinstance(parsed, PendingCommand):
            await self._pending(channel, respond)
        elif isinstance(parsed, HistoryCommand):
            launches = await self._store.recent_launches(channel, parsed.limit)
            await _ephemeral(respond, history_list(launches, web_root=self._web_root))
        elif isinstance(parsed, StatusCommand):
            await self._status(parsed, command, respond)
        elif isinstance(parsed, PlansCommand):
            await self._plans(parsed, command, respond)
        elif isinstance(parsed, StopCommand | RetryCommand):
            await self._control(parsed, command, respond)
        elif isinstance(parsed, LogsCommand):
            await self._logs(parsed, user, channel, respond)

    async def _run(self, cmd: RunCommand, command: Mapping[str, Any], respond: Respond) -> None:
        if cmd.job_id is None:
            await self._run_by_name(cmd, command, respond)
            return
        user, channel = str(command["user_id"]), str(command["channel_id"])
        policy = self._policy.for_channel(channel)
        biz = cmd.biz_id or policy.bk_biz_id or self._default_biz
        if biz is None:
            await _ephemeral(respond, ":warning: Which business? Add `--biz <bk_biz_id>` (no default is set here).")
            return
        if not await self._allowed(user, channel, biz, cmd.job_id, respond):
            return
        if not cmd.confirm:
            await self._open_form(command, respond, biz=biz, job_id=cmd.job_id, prefill=cmd.overrides)
            return
        request = LaunchRequest(
            requester=user, channel=channel, bk_biz_id=biz, bk_job_id=cmd.job_id, values=cmd.overrides
        )
        try:
            await self._start(request)
        except BotError as exc:
            await _ephemeral(respond, explain(exc))

    async def _allowed(self, user: str, channel: str, biz: int, job_id: int, respond: Respond) -> bool:
        """The channel's policy is applied before anything is sent to BK-JOB."""
        refusal = self._policy.for_channel(channel).refusal(channel=channel, bk_biz_id=biz, bk_job_id=job_id)
        if refusal is None:
            return True
        await self._audit.record(user, "launch_refused", channel=channel, detail=refusal)
        await _ephemeral(respond, f":no_entry: {refusal}")
        return False

    async def _may_read(self, user: str, channel: str, respond: Respond, biz: int | None = None) -> str | None:
        """Looking is governed like launching: the channel's policy, then who the person is in BK-JOB.

        Returns their BK-JOB user, or None once they have been told why not.
        """
        refusal = self._policy.for_channel(channel).read_refusal(channel=channel, bk_biz_id=biz)
        if refusal is not None:
            await _ephemeral(respond, f":no_entry: {refusal}")
            return None
        try:
            return await self._identities.bk_username(user)
        except BotError as exc:
            await _ephemeral(respond, explain(exc))
            return None

    async def _start(self, request: LaunchRequest) -> None:
        """Launch now, or post an approval request where the channel demands one."""
        policy = self._policy.for_channel(request.channel)
        if policy.approval:
            await self._approvals.request(request, policy)
        else:
            await self._launches.launch(request)

    async def _open_form(
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
            await _ephemeral(respond, explain(exc))
            return
        user, channel = str(command["user_id"]), str(command["channel_id"])
        meta: dict[str, Any] = {"p": "run", "c": channel, "b": biz, "j": job_id, "u": user}
        view = await self._form(meta, prefill=prefill, preset=preset)
        await self._fill(view_id, view, view_hash, respond)

    async def _fill(self, view_id: str, view: dict[str, Any], view_hash: str, respond: Respond) -> None:
        """Replace the loading modal; a person who closed it meanwhile (Slack: `not_found`) changed their mind,
        which is not an error to tell them about."""
        try:
            await self._notifier.update_view(view_id, view, view_hash=view_hash)
        except SlackError as exc:
            if exc.error == "not_found":
                log.info("the loading form %s was closed before it was filled", view_id)
                return
            await _ephemeral(respond, explain(exc))

    async def _form(
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

    async def _pending(self, channel: str, respond: Respond) -> None:
        """Each request linked by Slack's own permalink (asked for those shown, at most 50, side by side)."""
        approvals = list(await self._store.pending_approvals(channel))[:_MAX_PENDING]
        posted = [(a.id, a.channel, a.message_ts) for a in approvals if a.message_ts]
        links = await asyncio.gather(*(self._notifier.permalink(channel, ts) for _, channel, ts in posted))
        permalinks = {aid: link for (aid, _, _), link in zip(posted, links, strict=True) if link}
        await _ephemeral(respond, pending_list(approvals, permalinks=permalinks))

    async def _status(self, cmd: StatusCommand, command: Mapping[str, Any], respond: Respond) -> None:
        user, channel = str(command["user_id"]), str(command["channel_id"])
        biz = cmd.biz_id or self._policy.for_channel(channel).bk_biz_id or self._default_biz
        if biz is None:
            await _ephemeral(respond, ":warning: Which business? Add `--biz <bk_biz_id>` (no default is set here).")
            return
        bk_username = await self._may_read(user, channel, respond, biz)
        if bk_username is None:
            return
        try:
            detail = await self._bk.get_job_instance_status(
                bk_biz_id=biz, job_instance_id=cmd.job_instance_id, bk_username=bk_username
            )
        except BotError as exc:
            await _ephemeral(respond, explain(exc))
            return
        allowed = self._policy.for_channel(channel).allowed_jobs
        if allowed is not None and detail.job_instance.bk_job_id not in allowed:
            await _ephemeral(respond, f":no_entry: This channel (<#{channel}>) may not look into that instance's plan.")
            return
        await _ephemeral(respond, instance_status(detail, web_root=self._web_root))

    async def _control(self, cmd: StopCommand | RetryCommand, command: Mapping[str, Any], respond: Respond) -> None:
        """`/bkjob stop|retry <instance>`: the same operations as the buttons, for a launch made in this channel."""
        user, channel = str(command["user_id"]), str(command["channel_id"])
        if self._operations is None:
            await _ephemeral(respond, "Run control is not available here.")
            return
        launch = await self._operations.find(channel, cmd.job_instance_id)
        if launch is None:
            await _ephemeral(
                respond,
                f"Instance {cmd.job_instance_id} was not launched from this channel by me; nothing was sent. "
                "Use the channel it was launched from, or BK-JOB.",
            )
            return
        op = Operation.STOP if isinstance(cmd, StopCommand) else Operation.RETRY_FAILED
        answer = await self._operations.operate(op, launch_id=launch.id, user=user, channel=channel)
        await _ephemeral(respond, answer.text)

    # -- run control buttons --------------------------------------------------------------------------------

    async def on_operation(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        respond = self._notifier.responder(str(body.get("response_url") or ""))
        self._background.spawn(self._operation(body, respond), name="operation")

    async def _operation(self, body: dict[str, Any], respond: Respond) -> None:
        """The click decides nothing by itself: Operations reads BK-JOB's state and sends the operation once."""
        user, value = _clicker(body)
        action = body["actions"][0]
        # Slack re-delivers a click it got no timely answer for: the same click (user, action_ts) is handled once.
        if not await self._store.claim(f"click:{user}:{action.get('action_ts')}:{value}", now=self._clock()):
            return
        op = _OPERATIONS[str(action["action_id"])]
        channel, _ = _origin(body)
        launch_id, _, step = value.partition(":")
        if self._operations is None:
            return
        answer = await self._operations.operate(
            op,
            launch_id=launch_id,
            user=user,
            channel=channel,
            step_instance_id=int(step) if step.isdigit() else None,
        )
        if answer.replace is not None:
            # The confirmation message loses its buttons: nobody else presses a question already answered.
            try:
                await self._notifier.update(
                    channel, str((body.get("container") or {}).get("message_ts", "")), answer.replace
                )
            except SlackError as exc:
                log.warning("the answered confirmation message could not be updated: %s", exc.error)
        await _ephemeral(respond, answer.text, replace_original=False)

    async def on_open(self, ack: Ack) -> None:
        """The link button opens BK-JOB in the browser; Slack still sends the click, which only needs an ack."""
        await ack()

    # -- the run form ---------------------------------------------------------------------------------------

    async def on_run_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = str(body["user"]["id"])
        meta = verified(self._signer, RunMeta, view.get("private_metadata"))
        if meta is None or meta.u != user:
            log.warning("refused a run form with tampered metadata from %s", user)
            await ack(response_action="update", view=error_modal("This form was not issued to you by the bot."))
            return
        values, errors = _read_form(view)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        if meta.s is not None:
            try:
                values = self._preset_values(meta, values)
            except PresetRefused as exc:
                await ack(response_action="update", view=error_modal(f"{exc}; nothing was launched."))
                return
        await ack()
        request = LaunchRequest(requester=user, channel=meta.c, bk_biz_id=meta.b, bk_job_id=meta.j, values=values)
        self._background.spawn(self._submitted(request, f"view:{view.get('id')}:{view.get('hash')}"), name="run-form")

    async def _submitted(self, request: LaunchRequest, claim: str) -> None:
        if not await self._store.claim(claim, now=self._clock()):
            return
        # The policy as it is now, not as it was when the form opened: limits tightened meanwhile apply.
        refusal = self._policy.for_channel(request.channel).refusal(
            channel=request.channel, bk_biz_id=request.bk_biz_id, bk_job_id=request.bk_job_id
        )
        if refusal is not None:
            await self._audit.record(request.requester, "launch_refused", channel=request.channel, detail=refusal)
            await self._notifier.tell(request.channel, request.requester, f":no_entry: {refusal}")
            return
        try:
            await self._start(request)
        except BotError as exc:
            await self._notifier.tell(request.channel, request.requester, explain(exc))

    # -- approval buttons and the reject form ---------------------------------------------------------------

    async def on_approve(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        respond = self._notifier.responder(str(body.get("response_url") or ""))
        self._background.spawn(self._approve(body, respond), name="approve")

    async def _approve(self, body: dict[str, Any], respond: Respond) -> None:
        user, approval_id = _clicker(body)
        try:
            await self._approvals.approve(approval_id, user, origin=_origin(body))
        except BotError as exc:
            await _ephemeral(respond, explain(exc), replace_original=False)

    async def on_reject(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        respond = self._notifier.responder(str(body.get("response_url") or ""))
        self._background.spawn(self._reject(body, respond), name="reject")

    async def _reject(self, body: dict[str, Any], respond: Respond) -> None:
        user, approval_id = _clicker(body)
        try:
            approval = await self._approvals.check_approver(approval_id, user, origin=_origin(body))
            metadata = self._signer.sign({"p": "reject", "a": approval.id, "u": user, "c": approval.channel})
            await self._notifier.open_view(str(body.get("trigger_id", "")), reject_modal(metadata, approval))
        except BotError as exc:
            await _ephemeral(respond, explain(exc), replace_original=False)

    async def on_reject_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = str(body["user"]["id"])
        meta = verified(self._signer, RejectMeta, view.get("private_metadata"))
        if meta is None or meta.u != user:
            log.warning("refused a reject form with tampered metadata from %s", user)
            await ack(response_action="update", view=error_modal("This form was not issued to you by the bot."))
            return
        await ack()
        state = view.get("state", {}).get("values", {})
        reason = str((state.get(REASON_BLOCK, {}).get(REASON_ACTION) or {}).get("value") or "").strip() or None
        self._background.spawn(self._rejected(meta.a, user, reason, meta.c), name="reject-form")

    async def _rejected(self, approval_id: str, user: str, reason: str | None, channel: str) -> None:
        try:
            await self._approvals.reject(approval_id, user, reason)
        except BotError as exc:
            await self._notifier.tell(channel, user, explain(exc))

    # -- finding plans: the picker, presets, `/bkjob plans` (issue 17) ----------------------------------------

    async def _run_by_name(self, cmd: RunCommand, command: Mapping[str, Any], respond: Respond) -> None:
        """`/bkjob run <preset>` launches a preset; other words (or none) open the form with the plan picker."""
        name = cmd.words[0] if len(cmd.words) == 1 else None
        preset = self._policy.preset(name) if name else None
        if name is not None and preset is not None:
            await self._run_preset(name, preset, cmd, command, respond)
            return
        if cmd.confirm or cmd.overrides:
            typed = untrusted(_cut(" ".join(cmd.words), 60))
            await _ephemeral(
                respond,
                f":warning: missing job id: `{typed}` is not a preset here, and --yes or name=value need a plan. "
                f"Write `/bkjob run &lt;job_id&gt;`, or `/bkjob run {typed}` to find it in the form.\n\n"
                f"{escape(USAGE)}",
            )
            return
        await self._open_picker(cmd, command, respond)

    async def _run_preset(
        self, name: str, preset: Preset, cmd: RunCommand, command: Mapping[str, Any], respond: Respond
    ) -> None:
        """A preset launches like `/bkjob run <plan>` with its values, inside what the channel allows."""
        user, channel = str(command["user_id"]), str(command["channel_id"])
        refusal = self._policy.preset_refusal(name, preset, channel)
        if refusal is not None:
            await self._audit.record(user, "launch_refused", channel=channel, detail=refusal)
            await _ephemeral(respond, f":no_entry: {refusal}")
            return
        try:
            values = preset.merge(name, cmd.overrides, biz_id=cmd.biz_id)
        except PresetRefused as exc:
            await _ephemeral(respond, f":warning: {exc}")
            return
        if not cmd.confirm:
            await self._open_form(
                command, respond, biz=preset.bk_biz_id, job_id=preset.plan, prefill=values, preset=(name, preset)
            )
            return
        request = LaunchRequest(
            requester=user, channel=channel, bk_biz_id=preset.bk_biz_id, bk_job_id=preset.plan, values=values
        )
        try:
            await self._start(request)
        except BotError as exc:
            await _ephemeral(respond, explain(exc))

    def _preset_values(self, meta: RunMeta, values: Mapping[str, str]) -> dict[str, str]:
        """A submitted preset form: its locked values are put back (they were never inputs) and cannot be forged."""
        name = meta.s or ""
        preset = self._policy.preset(name)
        if preset is None or (preset.bk_biz_id, preset.plan) != (meta.b, meta.j):
            raise PresetRefused(f"preset `{name}` has changed since this form was opened: run it again")
        refusal = self._policy.preset_refusal(name, preset, meta.c)
        if refusal is not None:
            raise PresetRefused(refusal)
        return preset.merge(name, values)

    def _business(self, channel: str, biz_id: int | None) -> tuple[int | None, str | None]:
        """The business to look in, or why not: none named, or one the channel's policy does not allow."""
        policy = self._policy.for_channel(channel)
        biz = biz_id or policy.bk_biz_id or self._default_biz
        if biz is None:
            return None, ":warning: Which business? Add `--biz <bk_biz_id>` (no default is set here)."
        refusal = policy.read_refusal(channel=channel, bk_biz_id=biz)
        if refusal is not None:
            return None, f":no_entry: {refusal}"
        return biz, None

    async def _recent(self, user: str, channel: str, biz: int) -> list[int]:
        """The plans this person launched here lately, newest first: what the picker offers first."""
        recent: list[int] = []
        for launch in await self._store.recent_launches(channel, 200):
            if launch.requester == user and launch.bk_biz_id == biz and launch.bk_job_id not in recent:
                recent.append(launch.bk_job_id)
        return recent[:_RECENT]

    async def _open_picker(self, cmd: RunCommand, command: Mapping[str, Any], respond: Respond) -> None:
        """Open the form at once (the trigger lasts 3 s), then show the picker, or the plan when one matches."""
        user, channel = str(command["user_id"]), str(command["channel_id"])
        biz, problem = self._business(channel, cmd.biz_id)
        if biz is None:
            await _ephemeral(respond, problem or "")
            return
        try:
            view_id, view_hash = await self._notifier.open_view(str(command["trigger_id"]), finding_modal())
        except SlackError as exc:
            await _ephemeral(respond, explain(exc))
            return
        try:
            bk_username = await self._identities.bk_username(user)
            meta: dict[str, Any] = {
                "c": channel,
                "b": biz,
                "u": user,
                "k": bk_username,
                "r": await self._recent(user, channel, biz),
                "q": " ".join(cmd.words),
            }
            view = await self._picker_view(meta)
        except BotError as exc:
            view = error_modal(explain(exc))
        await self._fill(view_id, view, view_hash, respond)

    async def _picker_view(self, meta: dict[str, Any], note: str | None = None) -> dict[str, Any]:
        """With words typed on the command line, one matching plan fills the form at once; else the picker says
        how many match. The list is read now, so that the picker's first keystroke is answered from memory."""
        catalogue = await self._finder.catalogue(meta["b"], meta["k"], wait=self._list_wait if meta["q"] else 0)
        words = str(meta["q"]).split()
        if words and catalogue is not None and note is None:
            allowed = self._policy.for_channel(meta["c"]).allowed_jobs
            found = self._finder.search(catalogue, words, allowed=allowed, limit=2)
            presets = self._usable_presets(meta["c"], meta["b"], words)
            if len(found) == 1 and not presets:
                return await self._form({**meta, "p": "run", "j": found[0].bk_job_id}, prefill={}, picker=True)
            shown = _cut(" ".join(words), 60)
            count = "No plan" if not found and not presets else "Several plans" if len(found) > 1 else "A preset"
            note = f"{count} here match *{untrusted(shown)}*: open the menu above, or type other words."
        elif note is None and catalogue is None and (failure := self._finder.failure(meta["b"], meta["k"])):
            note = explain(failure)
        return picker_modal(bk_biz_id=meta["b"], metadata=self._signer.sign({**meta, "p": "pick"}), note=note)

    def _usable_presets(self, channel: str, biz: int, words: Sequence[str]) -> list[tuple[str, Preset]]:
        """Presets of this business that this channel may use, whose name (or description) has every word."""
        found = []
        for name, preset in sorted(self._policy.presets.items()):
            if preset.bk_biz_id != biz or self._policy.preset_refusal(name, preset, channel) is not None:
                continue
            text = f"{name} {preset.description}".casefold()
            if all(word.casefold() in text for word in words):
                found.append((name, preset))
        return found

    def _picker_meta(self, body: Mapping[str, Any]) -> PickMeta | RunMeta | None:
        """The picker's context from its form's signed metadata, only for the person it was opened for."""
        view = body.get("view") or {}
        metadata = view.get("private_metadata") if isinstance(view, Mapping) else None
        meta: PickMeta | RunMeta | None = verified(self._signer, PickMeta, metadata) or verified(
            self._signer, RunMeta, metadata
        )
        if meta is None or meta.k is None or meta.u != str(body["user"]["id"]):
            return None
        return meta

    async def on_plan_options(self, ack: Ack, body: dict[str, Any]) -> None:
        """Slack's options request: answered from memory within its 3 seconds, whatever BK-JOB is doing."""
        meta = self._picker_meta(body)
        if meta is None or meta.k is None:
            log.warning("refused an options request with foreign metadata from %s", body["user"]["id"])
            await ack(options=[])
            return
        words = str(body.get("value") or "").split() or meta.q.split()
        presets = [
            PlanChoice.preset(name, preset.description or preset.summary())
            for name, preset in self._usable_presets(meta.c, meta.b, words)
        ]
        catalogue = await self._finder.catalogue(meta.b, meta.k, wait=self._options_budget)
        if catalogue is None:
            failure = self._finder.failure(meta.b, meta.k)
            notice = f"BK-JOB: {failure}" if failure else "Still reading the plans from BK-JOB; type again"
            await ack(**plan_options(presets, [], [], notice=notice))
            return
        allowed = self._policy.for_channel(meta.c).allowed_jobs
        found = self._finder.search(catalogue, words, allowed=allowed, first=meta.r, limit=100 - len(presets))
        recent = [PlanChoice.plan(p.bk_job_id, p.name) for p in found if p.bk_job_id in meta.r]
        others = [PlanChoice.plan(p.bk_job_id, p.name) for p in found if p.bk_job_id not in meta.r]
        await ack(**plan_options(presets, recent, others))

    async def on_plan_picked(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        self._background.spawn(self._picked(body), name="plan-picked")

    async def _picked(self, body: Mapping[str, Any]) -> None:
        """A plan (or preset) chosen in the picker fills the same form, as `/bkjob run <id>` would."""
        meta = self._picker_meta(body)
        selected = body["actions"][0].get("selected_option") or {}
        choice = PlanChoice.parse(str(selected.get("value") or ""))
        view = body.get("view") or {}
        if meta is None or choice is None:
            log.info("ignored a plan pick without a plan or with foreign metadata")
            return
        picker = {"c": meta.c, "b": meta.b, "u": meta.u, "k": meta.k, "r": list(meta.r), "q": meta.q}
        kind, key, _ = choice
        if kind == "preset":
            form = await self._picked_preset(key, picker)
        else:
            refusal = self._policy.for_channel(meta.c).refusal(channel=meta.c, bk_biz_id=meta.b, bk_job_id=int(key))
            if refusal is not None:
                await self._audit.record(meta.u, "launch_refused", channel=meta.c, detail=refusal)
                form = await self._picker_view(picker, note=f":no_entry: {refusal}")
            else:
                form = await self._form({**picker, "p": "run", "j": int(key)}, prefill={}, picker=True)
        try:
            await self._notifier.update_view(str(view.get("id")), form, view_hash=str(view.get("hash") or "") or None)
        except SlackError as exc:
            log.info("could not fill the form after a plan was picked: %s", exc)

    async def _picked_preset(self, name: str, picker: dict[str, Any]) -> dict[str, Any]:
        preset = self._policy.preset(name)
        refusal = self._policy.preset_refusal(name, preset, picker["c"]) if preset else f"No preset `{name}`."
        if preset is None or refusal is not None or preset.bk_biz_id != picker["b"]:
            return await self._picker_view(
                picker, note=f":no_entry: {refusal or 'That preset is not for this business.'}"
            )
        meta = {**picker, "p": "run", "j": preset.plan}
        return await self._form(meta, prefill=preset.values, preset=(name, preset), picker=True)

    async def on_run_button(self, ack: Ack, body: dict[str, Any]) -> None:
        """*Run* next to a plan or preset in `/bkjob plans`: the same as typing `/bkjob run <id|preset>`."""
        await ack()
        respond = self._notifier.responder(str(body.get("response_url") or ""))
        choice = PlanChoice.parse(str(body["actions"][0].get("value") or ""))
        channel = str((body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id") or "")
        if choice is None or not channel:
            self._background.spawn(_ephemeral(respond, "That button is not one I know; nothing changed."), name="run")
            return
        kind, key, biz = choice
        cmd = RunCommand(words=(key,)) if kind == "preset" else RunCommand(job_id=int(key), biz_id=biz)
        command = {"user_id": str(body["user"]["id"]), "channel_id": channel, "trigger_id": body.get("trigger_id")}
        self._background.spawn(self._run(cmd, command, respond), name="run-button")

    async def _plans(self, cmd: PlansCommand, command: Mapping[str, Any], respond: Respond) -> None:
        """`/bkjob plans [words]`: the channel's presets and plans that match, each with a Run button."""
        user, channel = str(command["user_id"]), str(command["channel_id"])
        biz, problem = self._business(channel, cmd.biz_id)
        if biz is None:
            await _ephemeral(respond, problem or "")
            return
        try:
            bk_username = await self._identities.bk_username(user)
        except BotError as exc:
            await _ephemeral(respond, explain(exc))
            return
        presets = [
            (PlanChoice.preset(n, p.summary()), p.description or p.summary())
            for n, p in self._usable_presets(channel, biz, cmd.words)
        ]
        catalogue = await self._finder.catalogue(biz, bk_username, wait=self._list_wait)
        if catalogue is None:
            failure = self._finder.failure(biz, bk_username)
            note = (
                explain(failure)
                if failure
                else ":hourglass_flowing_sand: BK-JOB has not answered with its plan list yet; try again in a moment."
            )
            await respond(
                **_message(plans_list(words=cmd.words, bk_biz_id=biz, presets=presets, plans=[], more=False, note=note))
            )
            return
        allowed = self._policy.for_channel(channel).allowed_jobs
        recent = await self._recent(user, channel, biz)
        found = self._finder.search(catalogue, cmd.words, allowed=allowed, first=recent, limit=21)
        message = plans_list(words=cmd.words, bk_biz_id=biz, presets=presets, plans=found[:20], more=len(found) > 20)
        await respond(**_message(message))

    # -- failed hosts' logs ---------------------------------------------------------------------------------

    async def _logs(self, cmd: LogsCommand, user: str, channel: str, respond: Respond) -> None:
        if self._log_files is None:
            await _ephemeral(respond, "Logs are not available from this bot.")
            return
        answer = await self._log_files.for_instance(
            user=user, channel=channel, job_instance_id=cmd.job_instance_id, host=cmd.host
        )
        await _ephemeral(respond, words(answer))

    async def on_logs(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        respond = self._notifier.responder(str(body.get("response_url") or ""))
        self._background.spawn(self._logs_clicked(body, respond), name="logs")

    async def _logs_clicked(self, body: dict[str, Any], respond: Respond) -> None:
        user, launch_id = _clicker(body)
        channel, _ = _origin(body)
        if self._log_files is None:
            answer = "Logs are not available from this bot."
        else:
            answer = words(await self._log_files.for_launch(user=user, channel=channel, launch_id=launch_id))
        await _ephemeral(respond, answer, replace_original=False)

    # -- what nothing above handles -------------------------------------------------------------------------

    async def on_unknown_action(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        action = body["actions"][0]
        action_id = str(action["action_id"])
        if action.get("url") or not body.get("response_url"):
            # A link button opened its URL in the browser (Slack still sends the click), or the click came from
            # inside a modal, which has no response_url: the ack is the whole answer.
            log.info("acknowledged a click on %.64s (link button or inside a modal)", action_id)
            return
        log.info("a click on an action this bot does not know (%.64s)", action_id)
        answer = _ephemeral(
            self._notifier.responder(str(body.get("response_url") or "")),
            "That button is not one I know (it may be from an older message); nothing changed.",
            replace_original=False,
        )
        self._background.spawn(answer, name="unknown-action")

    async def on_unknown_view(self, ack: Ack, view: dict[str, Any]) -> None:
        log.info("a submitted form this bot does not know (%.64s)", view.get("callback_id"))
        await ack(response_action="update", view=error_modal(_FOREIGN_FORM))

    async def on_error(self, error: Exception, body: dict[str, Any]) -> BoltResponse:
        """Last resort: log with context and answer 400, since Bolt's own 500 would invite Slack to retry a request
        that fails the same way (the payload passed `well_formed`, so Bolt's own parsing is the likely culprit)."""
        kind = body.get("type") if isinstance(body, Mapping) else None
        log.error("unhandled error in a Slack listener (type %.40s)", kind, exc_info=error)
        return BoltResponse(status=400, body="this request could not be handled")


def _immediate_answer(text: str) -> str | Command:
    """The usage, or why the command does not parse (with the usage), as a person reads it; else the command."""
    try:
        parsed = parse_command(text)
    except CommandError as exc:
        return f":warning: {untrusted(str(exc))}\n\n{escape(USAGE)}"
    if isinstance(parsed, HelpCommand):
        if parsed.unknown:
            return f"I don't know `{untrusted(_cut(parsed.unknown, _MAX_ECHO))}`.\n\n{escape(USAGE)}"
        return escape(USAGE)
    return parsed


def _message(message: Message) -> dict[str, Any]:
    return {"text": message.text, "blocks": message.blocks, "response_type": "ephemeral"}


async def _ephemeral(respond: Respond, text: str, **kwargs: Any) -> None:
    await respond(text=text, response_type="ephemeral", **kwargs)


def _clicker(body: Mapping[str, Any]) -> tuple[str, str]:
    """Who clicked and the button's value (an approval ID); `well_formed` has checked both are strings."""
    return str(body["user"]["id"]), str(body["actions"][0].get("value", ""))


def _approval_of(policy: ChannelPolicy) -> tuple[tuple[str, ...], int] | None:
    """Who a launch from this channel's form will ask, and how many must approve; None where it launches at once."""
    return (tuple(policy.approvers), policy.min_approvals) if policy.approval else None


def _origin(body: Mapping[str, Any]) -> tuple[str, str]:
    """The channel and message the button was on: an approval is decided only from its own message."""
    container = body.get("container") or {}
    return str(container.get("channel_id", "")), str(container.get("message_ts", ""))


def _read_form(view: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
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


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
