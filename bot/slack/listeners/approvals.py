"""Approvals: the Approve and Reject buttons of an approval request, and the form that asks why it was rejected."""

from __future__ import annotations

import logging
from typing import Any

from bot.core.approvals import Approvals
from bot.core.background import Background
from bot.core.tokens import Signer
from bot.errors import BotError
from bot.slack.blocks.approvals import REASON_ACTION, REASON_BLOCK, reject_modal
from bot.slack.blocks.launch import error_modal
from bot.slack.listeners.shared import Ack, Respond, clicker, ephemeral, origin
from bot.slack.notifier import Notifier
from bot.slack.payloads import RejectMeta, verified
from bot.slack.words import explain

__all__ = ["ApprovalListeners"]

log = logging.getLogger(__name__)


class ApprovalListeners:
    """An approver's decision, taken only from the request's own message; Approvals checks who may decide."""

    def __init__(self, *, approvals: Approvals, notifier: Notifier, signer: Signer, background: Background) -> None:
        self._approvals = approvals
        self._notifier = notifier
        self._signer = signer
        self._background = background

    async def on_approve(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        respond = self._notifier.responder(str(body.get("response_url") or ""))
        self._background.spawn(self._approve(body, respond), name="approve")

    async def _approve(self, body: dict[str, Any], respond: Respond) -> None:
        user, approval_id = clicker(body)
        try:
            await self._approvals.approve(approval_id, user, origin=origin(body))
        except BotError as exc:
            await ephemeral(respond, explain(exc), replace_original=False)

    async def on_reject(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        respond = self._notifier.responder(str(body.get("response_url") or ""))
        self._background.spawn(self._reject(body, respond), name="reject")

    async def _reject(self, body: dict[str, Any], respond: Respond) -> None:
        user, approval_id = clicker(body)
        try:
            approval = await self._approvals.check_approver(approval_id, user, origin=origin(body))
            metadata = self._signer.sign({"p": "reject", "a": approval.id, "u": user, "c": approval.channel})
            await self._notifier.open_view(str(body.get("trigger_id", "")), reject_modal(metadata, approval))
        except BotError as exc:
            await ephemeral(respond, explain(exc), replace_original=False)

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
