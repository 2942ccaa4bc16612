"""Run control: the operation buttons on a launch's messages, the BK-JOB link button, and `/bkjob stop|retry`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from bot.core.background import Background
from bot.core.runcontrol import Operation, Operations
from bot.slack.blocks.runcontrol import (
    CONFIRM_ACTION,
    CONTINUE_ROLLING_ACTION,
    END_CONFIRM_ACTION,
    IGNORE_ACTION,
    NEXT_STEP_ACTION,
    RERUN_ACTION,
    RETRY_FAILED_ACTION,
    RETRY_STEP_ACTION,
    STOP_ACTION,
    confirmation_decided,
)
from bot.slack.commands import RetryCommand, StopCommand
from bot.slack.errors import SlackError
from bot.slack.listeners.shared import Ack, Respond, clicker, ephemeral, origin
from bot.slack.notifier import Notifier
from bot.slack.words import words
from bot.store import Store

__all__ = ["OPERATIONS", "RunControlListeners"]

log = logging.getLogger(__name__)

OPERATIONS = {
    STOP_ACTION: Operation.STOP,
    RETRY_FAILED_ACTION: Operation.RETRY_FAILED,
    IGNORE_ACTION: Operation.IGNORE,
    RETRY_STEP_ACTION: Operation.RETRY_STEP,
    RERUN_ACTION: Operation.RERUN,
    CONFIRM_ACTION: Operation.CONFIRM,
    END_CONFIRM_ACTION: Operation.END_CONFIRM,
    NEXT_STEP_ACTION: Operation.NEXT_STEP,
    CONTINUE_ROLLING_ACTION: Operation.CONTINUE_ROLLING,
}
"""Each operation button's action_id and the operation it asks for."""


class RunControlListeners:
    """Stop, retry, skip, rerun or confirm a running launch; Operations decides from BK-JOB's state, once."""

    def __init__(
        self,
        *,
        store: Store,
        notifier: Notifier,
        background: Background,
        operations: Operations | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._background = background
        self._operations = operations
        self._clock = clock

    async def control(self, cmd: StopCommand | RetryCommand, command: Mapping[str, Any], respond: Respond) -> None:
        """`/bkjob stop|retry <instance>`: the same operations as the buttons, for a launch made in this channel."""
        user, channel = str(command["user_id"]), str(command["channel_id"])
        if self._operations is None:
            await ephemeral(respond, "Run control is not available here.")
            return
        launch = await self._operations.find(channel, cmd.job_instance_id)
        if launch is None:
            await ephemeral(
                respond,
                f"Instance {cmd.job_instance_id} was not launched from this channel by me; nothing was sent. "
                "Use the channel it was launched from, or BK-JOB.",
            )
            return
        op = Operation.STOP if isinstance(cmd, StopCommand) else Operation.RETRY_FAILED
        answer = await self._operations.operate(op, launch_id=launch.id, user=user, channel=channel)
        await ephemeral(respond, words(answer.reason))

    async def on_operation(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        respond = self._notifier.responder(str(body.get("response_url") or ""))
        self._background.spawn(self._operation(body, respond), name="operation")

    async def _operation(self, body: dict[str, Any], respond: Respond) -> None:
        """The click decides nothing by itself: Operations reads BK-JOB's state and sends the operation once."""
        user, value = clicker(body)
        action = body["actions"][0]
        # Slack re-delivers a click it got no timely answer for: the same click (user, action_ts) is handled once.
        if not await self._store.claim(f"click:{user}:{action.get('action_ts')}:{value}", now=self._clock()):
            return
        op = OPERATIONS[str(action["action_id"])]
        channel, _ = origin(body)
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
        if (decided := answer.replace) is not None:
            # The confirmation message loses its buttons: nobody else presses a question already answered.
            done = confirmation_decided(
                decided.step_number, decided.step_name, by=decided.by, confirmed=decided.confirmed
            )
            try:
                await self._notifier.update(channel, str((body.get("container") or {}).get("message_ts", "")), done)
            except SlackError as exc:
                log.warning("the answered confirmation message could not be updated: %s", exc.error)
        await ephemeral(respond, words(answer.reason), replace_original=False)

    async def on_open(self, ack: Ack) -> None:
        """The link button opens BK-JOB in the browser; Slack still sends the click, which only needs an ack."""
        await ack()
