"""The `/bkjob` command handed to its feature's listeners, and what no listener matches: foreign buttons and forms,
and the last-resort error handler."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt.response import BoltResponse

from bot.core.background import Background
from bot.slack.blocks.launch import error_modal
from bot.slack.blocks.text import escape, fit_text, untrusted
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
from bot.slack.errors import CommandError
from bot.slack.listeners.finder import FinderListeners
from bot.slack.listeners.launch import LaunchListeners
from bot.slack.listeners.lists import ListListeners
from bot.slack.listeners.logs import LogListeners
from bot.slack.listeners.runcontrol import RunControlListeners
from bot.slack.listeners.shared import Ack, Respond, cut, ephemeral
from bot.slack.notifier import Notifier
from bot.store import Store

__all__ = ["Router"]

log = logging.getLogger(__name__)

_MAX_ECHO = 40  # what a person typed, quoted back: enough to recognise, never a wall of their own text
_FOREIGN_FORM = "This form is not one I issued (it may be from an older version of the bot); nothing was launched."


class Router:
    """Parses `/bkjob`, answers what needs no reading in the ack, and passes the rest to the feature it names."""

    def __init__(
        self,
        *,
        store: Store,
        notifier: Notifier,
        background: Background,
        launch: LaunchListeners,
        lists: ListListeners,
        finder: FinderListeners,
        runcontrol: RunControlListeners,
        logs: LogListeners,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._background = background
        self._launch = launch
        self._lists = lists
        self._finder = finder
        self._runcontrol = runcontrol
        self._logs = logs
        self._clock = clock

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
        if isinstance(parsed, RunCommand):
            await self._launch.run(parsed, command, respond)
        elif isinstance(parsed, PendingCommand):
            await self._lists.pending(user, channel, respond)
        elif isinstance(parsed, HistoryCommand):
            await self._lists.history(parsed, user, channel, respond)
        elif isinstance(parsed, StatusCommand):
            await self._lists.status(parsed, command, respond)
        elif isinstance(parsed, PlansCommand):
            await self._finder.plans(parsed, command, respond)
        elif isinstance(parsed, StopCommand | RetryCommand):
            await self._runcontrol.control(parsed, command, respond)
        elif isinstance(parsed, LogsCommand):
            await self._logs.logs(parsed, user, channel, respond)

    # -- what no feature handles ----------------------------------------------------------------------------

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
        answer = ephemeral(
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
            return f"I don't know `{untrusted(cut(parsed.unknown, _MAX_ECHO))}`.\n\n{escape(USAGE)}"
        return escape(USAGE)
    return parsed
