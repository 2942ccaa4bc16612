"""Failed hosts' logs: `/bkjob logs <instance> [host]` and the Logs button on a result."""

from __future__ import annotations

from typing import Any

from bot.core.background import Background
from bot.core.logfiles import LogFiles
from bot.slack.commands import LogsCommand
from bot.slack.listeners.shared import Ack, Respond, clicker, ephemeral, origin
from bot.slack.notifier import Notifier
from bot.slack.words import words

__all__ = ["LogListeners"]


class LogListeners:
    """Hands a request for logs to LogFiles, which decides what this person may read and uploads it."""

    def __init__(self, *, notifier: Notifier, background: Background, log_files: LogFiles | None = None) -> None:
        self._notifier = notifier
        self._background = background
        self._log_files = log_files

    async def logs(self, cmd: LogsCommand, user: str, channel: str, respond: Respond) -> None:
        if self._log_files is None:
            await ephemeral(respond, "Logs are not available from this bot.")
            return
        answer = await self._log_files.for_instance(
            user=user, channel=channel, job_instance_id=cmd.job_instance_id, host=cmd.host
        )
        await ephemeral(respond, words(answer))

    async def on_logs(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        respond = self._notifier.responder(str(body.get("response_url") or ""))
        self._background.spawn(self._logs_clicked(body, respond), name="logs")

    async def _logs_clicked(self, body: dict[str, Any], respond: Respond) -> None:
        user, launch_id = clicker(body)
        channel, _ = origin(body)
        if self._log_files is None:
            answer = "Logs are not available from this bot."
        else:
            answer = words(await self._log_files.for_launch(user=user, channel=channel, launch_id=launch_id))
        await ephemeral(respond, answer, replace_original=False)
