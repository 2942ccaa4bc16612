"""The core's messenger port on Slack: cards rendered to Block Kit, delivered through the outbox."""

from __future__ import annotations

from bot.core.cards import (
    ApprovalCard,
    Card,
    ConfirmationCard,
    ConfirmationDecided,
    LaunchCard,
    Note,
    ResultCard,
    RollingPause,
)
from bot.core.reasons import People, Reason, say
from bot.slack.blocks.approvals import approval_message
from bot.slack.blocks.digest import sections
from bot.slack.blocks.launch import launch_message
from bot.slack.blocks.results import result_reply
from bot.slack.blocks.runcontrol import confirmation_decided, confirmation_message, rolling_pause_message
from bot.slack.blocks.text import Message, notice, queued
from bot.slack.notifier import Notifier
from bot.slack.outbox import Outbox
from bot.slack.words import words
from bot.store import ApprovalRecord, LaunchRecord, OutboxMessage

__all__ = ["SlackMessenger"]


class SlackMessenger:
    """Renders each card when it is queued (launch and approval cards again from the store when an edit is sent,
    in the outbox), so what is persisted is exactly what Slack will be sent."""

    def __init__(self, *, outbox: Outbox, notifier: Notifier, web_root: str | None) -> None:
        self._outbox = outbox
        self._notifier = notifier
        self._web_root = web_root

    def render(self, card: Card) -> Message:
        if isinstance(card, LaunchCard):
            return launch_message(card.launch, web_root=self._web_root)
        if isinstance(card, ApprovalCard):
            return approval_message(card.approval, list(card.votes), web_root=self._web_root)
        if isinstance(card, ResultCard):
            return result_reply(
                card.launch,
                job_status=card.job_status,
                detail=card.detail,
                web_root=self._web_root,
                digest=sections(card.report) if card.report is not None else [],
                logs_button=card.logs_button,
            )
        if isinstance(card, ConfirmationCard):
            confirmation = card.confirmation
            mentions = words(say("{who}", who=People(tuple(confirmation.answerers)))) if confirmation.answerers else ""
            return confirmation_message(
                card.launch, confirmation, who=words(confirmation.who_may_answer()), mentions=mentions
            )
        if isinstance(card, ConfirmationDecided):
            return confirmation_decided(card.step_number, card.step_name, by=card.by, confirmed=card.confirmed)
        if isinstance(card, RollingPause):
            return rolling_pause_message(
                card.launch,
                step_instance_id=card.step_instance_id,
                step_number=card.step_number,
                step_name=card.step_name,
            )
        assert isinstance(card, Note)
        return notice(words(card.reason))

    async def announce(self, channel: str, card: Card, *, requester: str) -> str:
        # Paced with the channel's other posts; a busy channel delays the post rather than refusing it.
        return await self._outbox.send_now(
            channel,
            self.render(card),
            on_queued=lambda wait: self._notifier.tell(channel, requester, queued(wait)),
        )

    async def post(self, channel: str, card: Card, *, thread_ts: str | None = None) -> None:
        await self._outbox.post(channel, self.render(card), thread_ts=thread_ts)

    def result(self, launch: LaunchRecord, card: Card, *, key: str) -> OutboxMessage:
        return self._outbox.reply(
            launch.channel, self.render(card), thread_ts=launch.message_ts, on_sent={"result": [launch.id, key]}
        )

    def wake(self) -> None:
        self._outbox.wake()

    async def refresh_launch(self, launch: LaunchRecord) -> None:
        await self._outbox.refresh_launch(launch)

    async def refresh_approval(self, approval: ApprovalRecord) -> None:
        await self._outbox.refresh_approval(approval)

    async def tell(self, channel: str, user: str, reason: Reason) -> None:
        await self._notifier.tell(channel, user, words(reason))

    async def attach(
        self, channel: str, *, thread_ts: str | None, filename: str, title: str, content: str, comment: Reason
    ) -> None:
        await self._notifier.upload(
            channel, thread_ts=thread_ts, filename=filename, title=title, content=content, comment=words(comment)
        )
