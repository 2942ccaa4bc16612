"""The audit trail: an append-only row in the store and a structured log line for every decision and outcome."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable

from bot.metrics import audited
from bot.store import AuditEvent, Store

__all__ = ["Audit"]

log = logging.getLogger("bot.core.audit")


class Audit:
    """Callers pass only identifiers and plain facts; secrets have no parameter to travel through."""

    def __init__(self, *, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def record(
        self,
        actor: str,
        action: str,
        *,
        channel: str | None = None,
        approval_id: str | None = None,
        launch_id: str | None = None,
        job_instance_id: int | None = None,
        detail: str | None = None,
    ) -> None:
        event = AuditEvent(
            id=uuid.uuid4().hex,
            at=self._clock(),
            actor=actor,
            action=action,
            channel=channel,
            approval_id=approval_id,
            launch_id=launch_id,
            job_instance_id=job_instance_id,
            detail=detail,
        )
        await self._store.append_audit(event)
        audited(action, detail)
        log.info("audit %s", json.dumps(event.model_dump(exclude_none=True), ensure_ascii=False, sort_keys=True))
