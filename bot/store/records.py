"""Records the store keeps: launches and their results."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ApprovalRecord",
    "ApprovalState",
    "AuditEvent",
    "Backlog",
    "LaunchRecord",
    "LaunchState",
    "OutboxKind",
    "OutboxMessage",
    "OutboxState",
    "ResultRecord",
    "SentVariable",
    "Vote",
]


class LaunchState(StrEnum):
    """Where a launch stands from the bot's side (BK-JOB's own status is `job_status`)."""

    STARTING = "starting"  # recorded, execute_job not answered yet
    RUNNING = "running"  # execute_job returned an instance ID
    FINISHED = "finished"  # a final status was reported
    NOT_STARTED = "not_started"  # BK-JOB refused; nothing runs
    UNKNOWN = "unknown"  # the execute_job answer was lost: it may or may not run


class SentVariable(BaseModel):
    """A variable as sent to BK-JOB, safe to store and show (passwords are never kept in clear)."""

    model_config = ConfigDict(frozen=True)

    id: int | None = None
    name: str
    category: int
    shown: str = Field(description="the value as shown to people: masked for passwords, one line per host")


class LaunchRecord(BaseModel):
    """A launch, recorded before execute_job is called so that nothing is ever launched silently."""

    model_config = ConfigDict(frozen=True)

    id: str
    created_at: float
    updated_at: float
    requester: str
    channel: str
    message_ts: str | None = None
    bk_biz_id: int
    bk_job_id: int
    plan_name: str
    bk_username: str
    variables: list[SentVariable] = Field(default_factory=list)
    callback_token_hash: str | None = None
    job_instance_id: int | None = None
    job_instance_name: str | None = None
    state: LaunchState = LaunchState.STARTING
    job_status: int | None = None
    error: str | None = None
    finished_at: float | None = None
    approval_id: str | None = None
    approved_by: list[str] = Field(default_factory=list)
    next_poll_at: float | None = None
    poll_attempts: int = 0
    progress: dict[str, Any] | None = None
    progress_at: float | None = None


class ResultRecord(BaseModel):
    """A final result of one launch, kept so that a repeated report posts nothing new."""

    model_config = ConfigDict(frozen=True)

    launch_id: str
    result_key: str
    job_status: int
    created_at: float
    reply_ts: str | None = None


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ApprovalRecord(BaseModel):
    """A launch waiting for approval; `values` are what the requester typed (passwords are never accepted)."""

    model_config = ConfigDict(frozen=True)

    id: str
    created_at: float
    updated_at: float
    requester: str
    channel: str
    message_ts: str | None = None
    bk_biz_id: int
    bk_job_id: int
    plan_name: str
    bk_username: str
    values: dict[str, str] = Field(default_factory=dict)
    variables: list[SentVariable] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    min_approvals: int = 1
    expires_at: float
    state: ApprovalState = ApprovalState.PENDING
    decided_by: str | None = None
    decided_at: float | None = None
    reason: str | None = None
    launch_id: str | None = None
    plan_version: dict[str, Any] | None = None  # the plan as requested: its last change time and digests


class Vote(BaseModel):
    model_config = ConfigDict(frozen=True)

    approver: str
    at: float


class AuditEvent(BaseModel):
    """One append-only audit row: who did what, when, to which request or launch. Never holds a secret."""

    model_config = ConfigDict(frozen=True)

    id: str
    at: float
    actor: str
    action: str
    channel: str | None = None
    approval_id: str | None = None
    launch_id: str | None = None
    job_instance_id: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Backlog:
    """What waits, counted by the database (never by loading rows): for /metrics."""

    pending_messages: int
    oldest_pending_at: float | None
    """When the oldest message still waiting for Slack was stored (None: none waits)."""
    oldest_due_poll_at: float | None
    """When the most overdue status poll of an unfinished launch fell due (None: none is due)."""


class OutboxKind(StrEnum):
    POST = "post"  # chat.postMessage with the stored payload
    REFRESH_LAUNCH = "refresh_launch"  # chat.update of a launch message, rendered from the store when sent
    REFRESH_APPROVAL = "refresh_approval"  # the same for an approval message


class OutboxState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"  # Slack refused it for good (e.g. channel archived); logged, never retried


class OutboxMessage(BaseModel):
    """A message to Slack, stored before it is sent and marked sent only when Slack said ok.

    Messages with the same `order_key` (one thread, or one edited message) are delivered in `seq` order; `seq` is
    assigned by the store when the message is stored (0 until then).
    A pending message with the same `dedupe_key` makes a new one a no-op (progress edits coalesce).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    created_at: float
    seq: int = 0
    channel: str
    order_key: str
    kind: OutboxKind
    payload: dict[str, Any] = Field(default_factory=dict)
    dedupe_key: str | None = None
    state: OutboxState = OutboxState.PENDING
    attempts: int = 0
    next_attempt_at: float = 0.0
    sent_ts: str | None = None
    last_error: str | None = None
