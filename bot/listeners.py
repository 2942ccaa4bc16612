"""Thin Bolt handlers: ack at once, then hand a typed request to the domain and tell the person the outcome."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse

from bot.approvals import Approvals
from bot.audit import Audit
from bot.background import Background
from bot.bk import BkClient
from bot.blocks import (
    APPROVE_ACTION,
    REASON_ACTION,
    REASON_BLOCK,
    REJECT_ACTION,
    REJECT_VIEW,
    RUN_VIEW,
    error_modal,
    history_list,
    instance_status,
    loading_modal,
    parse_var_block_id,
    pending_list,
    reject_modal,
    run_modal,
)
from bot.commands import (
    USAGE,
    HelpCommand,
    HistoryCommand,
    PendingCommand,
    RunCommand,
    StatusCommand,
    parse_command,
)
from bot.errors import BotError, CommandError, SlackError, TargetError
from bot.explain import explain
from bot.identity import Identities
from bot.launches import Launches, LaunchRequest
from bot.notifier import Notifier
from bot.payloads import RejectMeta, RunMeta, verified
from bot.policy import Policy
from bot.store import ApprovalRecord, Store
from bot.targets import parse_targets
from bot.tokens import Signer

__all__ = ["Listeners"]

log = logging.getLogger(__name__)

Ack = Callable[..., Awaitable[None]]
Respond = Callable[..., Awaitable[Any]]

_MAX_INLINE_ERROR = 150
_ANY = re.compile(r".*")
_ENTRY = re.compile(r'^"[^"]*":')
MAX_FORM_VALUE = 3000
"""Slack caps a plain-text input at 3000 characters; a longer value did not come from our form."""
_FOREIGN_FORM = "This form is not one I issued (it may be from an older version of the bot); nothing was launched."


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
        clock: Callable[[], float] = time.time,
    ) -> None:
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
        # Registered last, so they only see what nothing above matched: buttons and forms of another version.
        app.action(_ANY)(self.on_unknown_action)
        app.view(_ANY)(self.on_unknown_view)
        app.error(self.on_error)

    # -- the slash command ----------------------------------------------------------------------------------

    async def on_command(self, ack: Ack, command: dict[str, Any]) -> None:
        await ack()
        respond = self._notifier.responder(str(command.get("response_url") or ""))
        self._background.spawn(self._command(command, respond), name="slash-command")

    async def _command(self, command: dict[str, Any], respond: Respond) -> None:
        # Slack may deliver the same command again (X-Slack-Retry-Num); its trigger_id is unique per invocation.
        if not await self._store.claim(f"command:{command.get('trigger_id')}", now=self._clock()):
            log.info("dropping a repeated delivery of a command from %s", command.get("user_id"))
            return
        try:
            parsed = parse_command(str(command.get("text") or ""))
        except CommandError as exc:
            await _ephemeral(respond, f":warning: {exc}\n\n{USAGE}")
            return
        channel = str(command.get("channel_id", ""))
        user = str(command.get("user_id", ""))
        if isinstance(parsed, PendingCommand | HistoryCommand) and not await self._may_read(user, channel, respond):
            return
        if isinstance(parsed, RunCommand):
            await self._run(parsed, command, respond)
        elif isinstance(parsed, PendingCommand):
            await _ephemeral(respond, pending_list(await self._store.pending_approvals(channel), permalink=_permalink))
        elif isinstance(parsed, HistoryCommand):
            launches = await self._store.recent_launches(channel, parsed.limit)
            await _ephemeral(respond, history_list(launches, web_root=self._web_root))
        elif isinstance(parsed, StatusCommand):
            await self._status(parsed, command, respond)
        elif isinstance(parsed, HelpCommand) and parsed.unknown:
            await _ephemeral(respond, f"I don't know `{parsed.unknown}`.\n\n{USAGE}")
        else:
            await _ephemeral(respond, USAGE)

    async def _run(self, cmd: RunCommand, command: Mapping[str, Any], respond: Respond) -> None:
        user, channel = str(command["user_id"]), str(command["channel_id"])
        policy = self._policy.for_channel(channel)
        biz = cmd.biz_id or policy.bk_biz_id or self._default_biz
        if biz is None:
            await _ephemeral(respond, ":warning: Which business? Add `--biz <bk_biz_id>` (no default is set here).")
            return
        if not await self._allowed(user, channel, biz, cmd.job_id, respond):
            return
        if not cmd.confirm:
            await self._open_form(cmd, biz, command, respond)
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

    async def _open_form(self, cmd: RunCommand, biz: int, command: Mapping[str, Any], respond: Respond) -> None:
        """Open a loading modal within the trigger's 3 seconds, then fill it once the plan is read."""
        user, channel = str(command["user_id"]), str(command["channel_id"])
        try:
            view_id, view_hash = await self._notifier.open_view(str(command["trigger_id"]), loading_modal(cmd.job_id))
        except SlackError as exc:
            await _ephemeral(respond, explain(exc))
            return
        try:
            plan = await self._launches.plan(
                requester=user, bk_biz_id=biz, bk_job_id=cmd.job_id, names=list(cmd.overrides)
            )
            metadata = self._signer.sign({"p": "run", "c": channel, "b": biz, "j": cmd.job_id, "u": user})
            view = run_modal(plan, bk_biz_id=biz, prefill=cmd.overrides, metadata=metadata)
        except BotError as exc:
            view = error_modal(explain(exc))
        try:
            await self._notifier.update_view(view_id, view, view_hash=view_hash)
        except SlackError as exc:
            await _ephemeral(respond, explain(exc))

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
            await self._notifier.open_view(str(body.get("trigger_id", "")), reject_modal(metadata))
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

    # -- what nothing above handles -------------------------------------------------------------------------

    async def on_unknown_action(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        action_id = str(body["actions"][0]["action_id"])
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


async def _ephemeral(respond: Respond, text: str, **kwargs: Any) -> None:
    await respond(text=text, response_type="ephemeral", **kwargs)


def _clicker(body: Mapping[str, Any]) -> tuple[str, str]:
    """Who clicked and the button's value (an approval ID); `well_formed` has checked both are strings."""
    return str(body["user"]["id"]), str(body["actions"][0].get("value", ""))


def _origin(body: Mapping[str, Any]) -> tuple[str, str]:
    """The channel and message the button was on: an approval is decided only from its own message."""
    container = body.get("container") or {}
    return str(container.get("channel_id", "")), str(container.get("message_ts", ""))


def _permalink(approval: ApprovalRecord) -> str | None:
    if not approval.message_ts:
        return None
    return f"https://slack.com/archives/{approval.channel}/p{approval.message_ts.replace('.', '')}"


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
        return _cut(exc.problems[0], _MAX_INLINE_ERROR)
    entries = ", ".join(m.group(0)[:-1] if (m := _ENTRY.match(p)) else p for p in exc.problems)
    return _cut(f"Not hosts: {entries}. Use 10.0.0.1, 2:10.0.0.1, group:<id> or module:<id>.", _MAX_INLINE_ERROR)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
