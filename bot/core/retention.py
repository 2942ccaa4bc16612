"""Retention: the tables that only grow (claims, sent outbox messages, audit) are trimmed to what is still needed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

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
        timer: Callable[[], float] = time.monotonic,
        pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._sent_s = sent_days * 86400
        self._audit_s = audit_days * 86400 if audit_days else None
        self._clock = clock
        self._timer = timer
        self._pause = pause

    async def sweep(self) -> int:
        """One round: every batch until the backlog is gone or the round's share is done; returns rows deleted."""
        total = 0
        for _ in range(_MAX_BATCHES):
            now = self._clock()
            started = self._timer()
            deleted = await self._store.prune(
                claims_before=now - CLAIM_RETENTION_S,
                sent_before=now - self._sent_s,
                audit_before=now - self._audit_s if self._audit_s is not None else None,
                limit=_BATCH,
            )
            total += deleted
            if deleted < _BATCH:
                break
            # A backlog (the first sweep after an upgrade: a year of sent messages) takes hundreds of batches:
            # resting as long as each took holds the writer half the time at most, so that the launches and
            # replies written meanwhile wait for one batch, not for batch after batch (on 1,000,000 launches,
            # without the rest, launches from ten senders during the sweep took p50 41-70 ms against 25-35).
            await self._pause(self._timer() - started)
        if total:
            log.info("retention: %d rows past their retention deleted", total)
        return total
