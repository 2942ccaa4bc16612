"""Retention: the tables that only grow (claims, sent outbox messages, audit) are trimmed to what is still needed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.store import Store

__all__ = ["CLAIM_RETENTION_S", "SENT_RETENTION_S", "Retention"]

log = logging.getLogger(__name__)

CLAIM_RETENTION_S = 24 * 3600.0
"""Slack retries a delivery within minutes and a form submission is single-use: a day is ample."""
SENT_RETENTION_S = 7 * 24 * 3600.0
"""A delivered message is kept a week, for looking into a report of a missing or doubled reply."""
_BATCH = 200  # one batch of 1,000 held SQLite's write lock ~37 ms on a million-row backlog; 200, ~7 ms
_MAX_BATCHES = 500  # per sweep (100,000 rows): a first sweep over a large backlog spans several rounds


class Retention:
    """Deletes in small batches, on every replica (each delete is idempotent, so replicas need no coordination).
    Audit events are kept forever unless `audit_days` is set: the audit trail is a compliance record and how long
    it is kept is the operator's decision (AUDIT_RETENTION_DAYS)."""

    def __init__(
        self,
        *,
        store: Store,
        audit_days: float | None,
        sent_days: float = SENT_RETENTION_S / 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._sent_s = sent_days * 86400
        self._audit_s = audit_days * 86400 if audit_days else None
        self._clock = clock

    async def sweep(self) -> int:
        """One round: every batch until the backlog is gone or the round's share is done; returns rows deleted."""
        total = 0
        for _ in range(_MAX_BATCHES):
            now = self._clock()
            deleted = await self._store.prune(
                claims_before=now - CLAIM_RETENTION_S,
                sent_before=now - self._sent_s,
                audit_before=now - self._audit_s if self._audit_s is not None else None,
                limit=_BATCH,
            )
            total += deleted
            if deleted < _BATCH:
                break
        if total:
            log.info("retention: %d rows past their retention deleted", total)
        return total
