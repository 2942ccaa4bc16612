"""How records map to table rows: the column lists and conversions both backends share."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bot.store.records import ApprovalRecord, AuditEvent, LaunchRecord, LaunchState, OutboxMessage, SentVariable

__all__ = [
    "APPROVAL_COLUMNS",
    "AUDIT_COLUMNS",
    "BACKLOG",
    "LAUNCH_COLUMNS",
    "OUTBOX_COLUMNS",
    "OUTBOX_INSERT_COLUMNS",
    "approval_from",
    "approval_values",
    "audit_from",
    "audit_values",
    "launch_from",
    "launch_values",
    "outbox_from",
    "outbox_insert_values",
    "outbox_values",
]

_UNFINISHED = ", ".join(f"'{s.value}'" for s in (LaunchState.STARTING, LaunchState.RUNNING, LaunchState.UNKNOWN))
BACKLOG = (
    "SELECT (SELECT COUNT(*) FROM outbox WHERE state = 'pending'),"
    " (SELECT MIN(created_at) FROM outbox WHERE state = 'pending'),"
    f" (SELECT MIN(next_poll_at) FROM launches WHERE next_poll_at <= {{now}} AND state IN ({_UNFINISHED}))"
)
"""The store's `backlog`, counted and read through indexes (`{now}`: the backend's placeholder)."""

LAUNCH_COLUMNS = (
    "id, created_at, updated_at, requester, channel, message_ts, bk_biz_id, bk_job_id, plan_name, bk_username,"
    " variables, callback_token_hash, job_instance_id, job_instance_name, state, job_status, error, finished_at,"
    " approval_id, approved_by, next_poll_at, poll_attempts, progress, progress_at"
)
APPROVAL_COLUMNS = (
    "id, created_at, updated_at, requester, channel, message_ts, bk_biz_id, bk_job_id, plan_name, bk_username,"
    " request_values, variables, approvers, min_approvals, expires_at, state, decided_by, decided_at, reason,"
    " launch_id, plan_version"
)
OUTBOX_COLUMNS = (
    "id, created_at, seq, channel, order_key, kind, payload, dedupe_key, state, attempts, next_attempt_at,"
    " sent_ts, last_error"
)
# What an insert gives: `seq` is the database's to assign (see the stores' enqueue), never the caller's clock.
OUTBOX_INSERT_COLUMNS = (
    "id, created_at, channel, order_key, kind, payload, dedupe_key, state, attempts, next_attempt_at, sent_ts,"
    " last_error"
)
AUDIT_COLUMNS = "id, at, actor, action, channel, approval_id, launch_id, job_instance_id, detail"


def launch_values(launch: LaunchRecord) -> tuple[Any, ...]:
    """In LAUNCH_COLUMNS order; lists and dicts are stored as JSON text in both databases."""
    return (
        launch.id,
        launch.created_at,
        launch.updated_at,
        launch.requester,
        launch.channel,
        launch.message_ts,
        launch.bk_biz_id,
        launch.bk_job_id,
        launch.plan_name,
        launch.bk_username,
        json.dumps([v.model_dump() for v in launch.variables]),
        launch.callback_token_hash,
        launch.job_instance_id,
        launch.job_instance_name,
        launch.state.value,
        launch.job_status,
        launch.error,
        launch.finished_at,
        launch.approval_id,
        json.dumps(launch.approved_by),
        launch.next_poll_at,
        launch.poll_attempts,
        json.dumps(launch.progress) if launch.progress is not None else None,
        launch.progress_at,
    )


def launch_from(row: Mapping[str, Any]) -> LaunchRecord:
    data = dict(row)
    data["variables"] = [SentVariable(**v) for v in json.loads(data["variables"])]
    data["approved_by"] = json.loads(data["approved_by"] or "[]")
    data["progress"] = json.loads(data["progress"]) if data["progress"] else None
    return LaunchRecord(**data)


def approval_values(approval: ApprovalRecord) -> tuple[Any, ...]:
    return (
        approval.id,
        approval.created_at,
        approval.updated_at,
        approval.requester,
        approval.channel,
        approval.message_ts,
        approval.bk_biz_id,
        approval.bk_job_id,
        approval.plan_name,
        approval.bk_username,
        json.dumps(approval.values),
        json.dumps([v.model_dump() for v in approval.variables]),
        json.dumps(approval.approvers),
        approval.min_approvals,
        approval.expires_at,
        approval.state.value,
        approval.decided_by,
        approval.decided_at,
        approval.reason,
        approval.launch_id,
        json.dumps(approval.plan_version) if approval.plan_version is not None else None,
    )


def approval_from(row: Mapping[str, Any]) -> ApprovalRecord:
    data = dict(row)
    data["values"] = json.loads(data.pop("request_values"))
    data["variables"] = [SentVariable(**v) for v in json.loads(data["variables"])]
    data["approvers"] = json.loads(data["approvers"])
    data["plan_version"] = json.loads(data["plan_version"]) if data.get("plan_version") else None
    return ApprovalRecord(**data)


def outbox_values(message: OutboxMessage) -> tuple[Any, ...]:
    return (
        message.id,
        message.created_at,
        message.seq,
        message.channel,
        message.order_key,
        message.kind.value,
        json.dumps(message.payload),
        message.dedupe_key,
        message.state.value,
        message.attempts,
        message.next_attempt_at,
        message.sent_ts,
        message.last_error,
    )


def outbox_insert_values(message: OutboxMessage) -> tuple[Any, ...]:
    """In OUTBOX_INSERT_COLUMNS order (OUTBOX_COLUMNS without seq)."""
    values = outbox_values(message)
    return values[:2] + values[3:]


def outbox_from(row: Mapping[str, Any]) -> OutboxMessage:
    data = dict(row)
    data["payload"] = json.loads(data["payload"])
    return OutboxMessage(**data)


def audit_values(event: AuditEvent) -> tuple[Any, ...]:
    return (
        event.id,
        event.at,
        event.actor,
        event.action,
        event.channel,
        event.approval_id,
        event.launch_id,
        event.job_instance_id,
        event.detail,
    )


def audit_from(row: Mapping[str, Any]) -> AuditEvent:
    return AuditEvent(**dict(row))
