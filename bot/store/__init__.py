"""The persistent store: an interface and its backends."""

from __future__ import annotations

from bot.errors import ConfigError
from bot.store.base import Store
from bot.store.postgres import PostgresStore
from bot.store.records import (
    ApprovalRecord,
    ApprovalState,
    AuditEvent,
    Backlog,
    LaunchRecord,
    LaunchState,
    OutboxKind,
    OutboxMessage,
    OutboxState,
    ResultRecord,
    SentVariable,
    Vote,
)
from bot.store.sqlite import SqliteStore

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
    "PostgresStore",
    "ResultRecord",
    "SentVariable",
    "SqliteStore",
    "Store",
    "Vote",
    "open_store",
]


def open_store(database_url: str) -> Store:
    """Pick the backend named by DATABASE_URL (the store still has to be opened)."""
    if database_url.startswith("sqlite:///"):
        return SqliteStore.from_url(database_url)
    if database_url.startswith(("postgresql://", "postgres://")):
        try:
            return PostgresStore.from_url(database_url)
        except ValueError as exc:
            raise ConfigError(f"DATABASE_URL: {exc}") from exc
    raise ConfigError(
        f"DATABASE_URL: no backend for {database_url.split(':', 1)[0]!r} (use sqlite:///path or postgresql://...)"
    )
