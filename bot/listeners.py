"""Thin Bolt handlers: ack at once, then hand a typed request to the domain and tell the person the outcome."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.blocks import RUN_VIEW, error_modal, loading_modal, parse_var_block_id, run_modal
from bot.commands import USAGE, HelpCommand, RunCommand, parse_command
from bot.errors import BotError, CommandError, SlackError, TargetError
from bot.explain import explain
from bot.launches import Launches, LaunchRequest
from bot.notifier import Notifier
from bot.store import Store
from bot.targets import parse_targets
from bot.tokens import Signer

__all__ = ["Listeners"]

log = logging.getLogger(__name__)

Ack = Callable[..., Awaitable[None]]
Respond = Callable[..., Awaitable[Any]]


class Listeners:
    """One place where every Slack surface the bot answers is registered."""

    def __init__(
        self,
        *,
        store: Store,
        launches: Launches,
        notifier: Notifier,
        signer: Signer,
        default_biz: int | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._launches = launches
        self._notifier = notifier
        self._signer = signer
        self._default_biz = default_biz
        self._clock = clock

    def register(self, app: AsyncApp) -> None:
        app.command("/bkjob")(self.on_command)
        app.view(RUN_VIEW)(self.on_run_submitted)
        app.error(self.on_error)

    async def on_command(self, ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        await ack()
        # Slack may deliver the same command again (X-Slack-Retry-Num); its trigger_id is unique per invocation.
        if not await self._store.claim(f"command:{command.get('trigger_id')}", now=self._clock()):
            log.info("dropping a repeated delivery of a command from %s", command.get("user_id"))
            return
        try:
            parsed = parse_command(str(command.get("text") or ""))
        except CommandError as exc:
            await respond(text=f":warning: {exc}\n\n{USAGE}", response_type="ephemeral")
            return
        if isinstance(parsed, RunCommand):
            await self._run(parsed, command, respond)
        elif isinstance(parsed, HelpCommand) and parsed.unknown:
            await respond(text=f"I don't know `{parsed.unknown}`.\n\n{USAGE}", response_type="ephemeral")
        else:
            await respond(text=USAGE, response_type="ephemeral")

    async def _run(self, cmd: RunCommand, command: Mapping[str, Any], respond: Respond) -> None:
        user, channel = str(command["user_id"]), str(command["channel_id"])
        biz = cmd.biz_id or self._default_biz
        if biz is None:
            await respond(
                text=":warning: Which business? Add `--biz <bk_biz_id>` (this bot has no default business).",
                response_type="ephemeral",
            )
            return
        if not cmd.confirm:
            await self._open_form(cmd, biz, command, respond)
            return
        request = LaunchRequest(
            requester=user, channel=channel, bk_biz_id=biz, bk_job_id=cmd.job_id, values=cmd.overrides
        )
        try:
            await self._launches.launch(request)
        except BotError as exc:
            await respond(text=explain(exc), response_type="ephemeral")

    async def _open_form(
        self, cmd: RunCommand, biz: int, command: Mapping[str, Any], respond: Respond
    ) -> None:
        """Open a loading modal within the trigger's 3 seconds, then fill it once the plan is read."""
        user, channel = str(command["user_id"]), str(command["channel_id"])
        try:
            view_id, view_hash = await self._notifier.open_view(
                str(command["trigger_id"]), loading_modal(cmd.job_id)
            )
        except SlackError as exc:
            await respond(text=explain(exc), response_type="ephemeral")
            return
        try:
            plan = await self._launches.plan(
                requester=user, bk_biz_id=biz, bk_job_id=cmd.job_id, names=list(cmd.overrides)
            )
            metadata = self._signer.sign({"c": channel, "b": biz, "j": cmd.job_id, "u": user})
            view = run_modal(plan, bk_biz_id=biz, prefill=cmd.overrides, metadata=metadata)
        except BotError as exc:
            view = error_modal(explain(exc))
        try:
            await self._notifier.update_view(view_id, view, view_hash=view_hash)
        except SlackError as exc:
            await respond(text=explain(exc), response_type="ephemeral")

    async def on_run_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = str(body.get("user", {}).get("id", ""))
        meta = self._signer.unsign(str(view.get("private_metadata") or ""))
        if meta is None or meta.get("u") != user:
            log.warning("refused a run form with tampered metadata from %s", user)
            await ack(
                response_action="update", view=error_modal("This form was not issued to you by the bot.")
            )
            return
        values, errors = _read_form(view)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        if not await self._store.claim(f"view:{view.get('id')}:{view.get('hash')}", now=self._clock()):
            return
        channel = str(meta["c"])
        request = LaunchRequest(
            requester=user, channel=channel, bk_biz_id=int(meta["b"]), bk_job_id=int(meta["j"]), values=values
        )
        try:
            await self._launches.launch(request)
        except BotError as exc:
            await self._notifier.tell(channel, user, explain(exc))

    async def on_error(self, error: Exception, body: dict[str, Any]) -> None:
        """Last resort: log with context; the person gets a generic message where Slack allows one."""
        log.error("unhandled error in a Slack listener (type %s)", body.get("type"), exc_info=error)


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
            if ref.category == 3:
                try:
                    parse_targets(text)
                except TargetError as exc:
                    errors[block_id] = _cut(str(exc), 150)
            values[name] = text
    return values, errors


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
