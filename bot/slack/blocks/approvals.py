"""Approvals: the request message with its buttons, the reject-reason modal and `/bkjob pending`'s list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)

from bot.slack.blocks.text import (
    MAX_SECTION,
    Message,
    cut,
    fit_list,
    mention,
    mentions,
    modal,
    untrusted,
    variables_text,
    when,
)
from bot.store.records import ApprovalRecord, ApprovalState, Vote

__all__ = [
    "APPROVE_ACTION",
    "REJECT_ACTION",
    "REJECT_VIEW",
    "REASON_BLOCK",
    "REASON_ACTION",
    "approval_message",
    "reject_modal",
    "pending_list",
]

APPROVE_ACTION = "bkjob_approve"
REJECT_ACTION = "bkjob_reject"
REJECT_VIEW = "bkjob_reject_reason"
REASON_BLOCK = "reason"
REASON_ACTION = "reason"


def approval_message(approval: ApprovalRecord, votes: Sequence[Vote], *, web_root: str | None) -> Message:
    """The request in the channel: who asks, what exactly would be sent, until when, and the two buttons."""
    head = _approval_status(approval, votes)
    facts = (
        f"*Plan:* {untrusted(approval.plan_name)} (ID {approval.bk_job_id})   *Business:* {approval.bk_biz_id}\n"
        f"*Requested by:* <@{approval.requester}> as `{untrusted(approval.bk_username)}`   "
        f"*Approvers:* {mentions(approval.approvers)}"
    )
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=cut(head, MAX_SECTION))),
        SectionBlock(text=MarkdownTextObject(text=cut(facts, MAX_SECTION))),
        ContextBlock(elements=[MarkdownTextObject(text=cut(variables_text(approval.variables), 2000))]),
    ]
    if approval.state is ApprovalState.PENDING:
        blocks.append(
            ActionsBlock(
                block_id=f"approval:{approval.id}",
                elements=[
                    ButtonElement(text="Approve", action_id=APPROVE_ACTION, value=approval.id, style="primary"),
                    ButtonElement(text="Reject", action_id=REJECT_ACTION, value=approval.id, style="danger"),
                ],
            )
        )
    text = (
        f"Approval {approval.state.value}: {untrusted(approval.plan_name)} (plan {approval.bk_job_id}), "
        f"<@{approval.requester}>"
    )
    return Message(text=cut(text, 3000), blocks=[b.to_dict() for b in blocks])


def _approval_status(approval: ApprovalRecord, votes: Sequence[Vote]) -> str:
    count = f"{len(votes)}/{approval.min_approvals} approvals"
    by = ", ".join(f"<@{v.approver}>" for v in votes)
    if approval.state is ApprovalState.PENDING:
        so_far = f": {by}" if by else ""
        return f":raised_hand: *Approval needed* ({count}{so_far}). Expires {when(approval.expires_at)}."
    if approval.state is ApprovalState.APPROVED:
        return f":white_check_mark: *Approved* by {by or mention(approval.decided_by)}; launching…"
    if approval.state is ApprovalState.REJECTED:
        reason = f": {untrusted(approval.reason)}" if approval.reason else ""
        return f":no_entry_sign: *Rejected* by {mention(approval.decided_by)}{reason}"
    return f":hourglass: *Expired* {when(approval.expires_at)} without enough approvals ({count})."


def reject_modal(metadata: str, approval: ApprovalRecord | None = None) -> dict[str, Any]:
    """Names the request being rejected; Slack itself marks the optional reason "(optional)"."""
    blocks: list[Block] = []
    if approval is not None:
        what = (
            f"Reject the launch of *{untrusted(approval.plan_name)}* (plan {approval.bk_job_id}, business "
            f"{approval.bk_biz_id}) requested by <@{approval.requester}>? They are told, with your reason if you"
            " give one."
        )
        blocks.append(SectionBlock(text=MarkdownTextObject(text=cut(what, MAX_SECTION))))
    return modal(
        title="Reject launch",
        submit="Reject",
        callback_id=REJECT_VIEW,
        private_metadata=metadata,
        blocks=[
            *blocks,
            InputBlock(
                block_id=REASON_BLOCK,
                label="Reason",
                optional=True,
                element=PlainTextInputElement(action_id=REASON_ACTION, multiline=True, max_length=1000),
            ),
        ],
    )


def pending_list(approvals: Sequence[ApprovalRecord], *, permalinks: Mapping[str, str]) -> str:
    """The requests waiting here, each linked to its message (`permalinks` by approval ID, from Slack)."""
    if not approvals:
        return "No approval requests are waiting in this channel."
    lines = []
    for a in approvals:
        link = permalinks.get(a.id)
        what = f"{untrusted(a.plan_name)} (plan {a.bk_job_id}, business {a.bk_biz_id})"
        lines.append(f"• {f'<{link}|{what}>' if link else what} for <@{a.requester}>, expires {when(a.expires_at)}")
    total = len(approvals)
    return fit_list(
        lambda shown: f"*{total} approval request{'s' if total != 1 else ''} waiting here:*",
        lines,
        lambda rest: f"… and {rest} more not shown.",
    )
