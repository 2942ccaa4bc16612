"""Failed hosts' logs: read from BK-JOB within a time budget, then cleaned and masked before anyone sees a line.

Cheap on BK-JOB: only failed steps, only failed hosts, for a digest only one representative host per reason, in
batches of at most 500 hosts with at most two calls in flight; whatever is not read within the budget is said
to be missing rather than waited for. Safe to show: ANSI escapes and control characters are stripped, invalid
UTF-8 and lone surrogates become U+FFFD, and every secret the bot can know (password defaults BK-JOB reveals,
values of variables the policy marks secret, `password=…`-style assignments) is replaced by a mask, in every
form bot/core/masking.py knows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace

from bot.bkjob import status
from bot.bkjob.client import BkClient
from bot.bkjob.errors import BkError
from bot.bkjob.hostlogs import (
    FILE_STEP,
    MAX_HOSTS_PER_CALL,
    FileLog,
    HostLogEntry,
    HostRef,
    HostResult,
    host_results_from_status,
)
from bot.bkjob.models import JobInstanceStatus, StepInstance
from bot.core.digest import MAX_GROUPS, FailedStep, FailureReport, group_hosts, host_status
from bot.core.masking import MASK, Masker, clean

__all__ = ["MASK", "JobLogs", "Masker", "clean", "log_file"]

log = logging.getLogger(__name__)

DIGEST_TAIL = 4000
"""Characters of a host's log kept for a digest: only its last lines are shown."""
FILE_TAIL = 256 * 1024
"""Characters of one host's log kept for the uploaded file: the end, where the failure is."""
_CONCURRENCY = 2


@dataclass
class _Reading:
    """What has arrived so far: kept outside the time budget, so a time-out keeps what was read."""

    results: list[HostResult] | None = None
    logs: dict[tuple[int, str], HostLogEntry] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class JobLogs:
    """Reads a finished job's failed hosts and their logs; never raises for BK-JOB's failures, it reports them."""

    def __init__(self, *, bk: BkClient, concurrency: int = _CONCURRENCY) -> None:
        self._bk = bk
        self._concurrency = concurrency

    async def masker(
        self, *, bk_biz_id: int, bk_job_id: int, bk_username: str, secret_names: Sequence[str], values: Iterable[str]
    ) -> Masker | None:
        """None when the plan's secrets cannot be read: then no log line may be shown at all."""
        try:
            secrets = await self._bk.secret_values(
                bk_biz_id=bk_biz_id, bk_job_id=bk_job_id, names=secret_names, bk_username=bk_username
            )
        except BkError as exc:
            log.warning("plan %s secrets could not be read to mask logs: %s", bk_job_id, exc)
            return None
        return Masker([*secrets, *values])

    async def report(
        self,
        *,
        bk_biz_id: int,
        job_instance_id: int,
        bk_username: str,
        detail: JobInstanceStatus,
        masker: Masker | None,
        budget: float,
        full: bool,
        host: str | None = None,
    ) -> FailureReport:
        """The failed steps with their failed hosts; logs of every failed host (`full`) or of one per reason."""
        steps = [s for s in detail.steps if _failed(s)]
        if not steps:
            return FailureReport(steps=())
        reading = _Reading()
        try:
            async with asyncio.timeout(budget):
                await self._read(reading, steps, bk_biz_id, job_instance_id, bk_username, full=full, host=host)
        except TimeoutError:
            reading.problems.append(f"BK-JOB did not give all the logs within {budget:g} s; some are missing.")
        results = reading.results if reading.results is not None else host_results_from_status(steps)
        if host is not None:
            results = [r for r in results if _matches(r.host, host)]
        if masker is None:
            reading.problems.append("Logs are withheld: the plan's secrets could not be read to mask them.")
        # A digest shows one log per reason: the others are not held (nor cleaned and masked, which is the cost).
        shown = None if full else {(r.step_instance_id, r.host.address) for r in _representatives(results)}
        kept = _merge(results, reading.logs, masker, tail=FILE_TAIL if full else DIGEST_TAIL, shown=shown)
        by_step: dict[int, list[HostResult]] = defaultdict(list)
        for result in kept:
            by_step[result.step_instance_id].append(result)
        failed = tuple(
            FailedStep(
                step_instance_id=s.step_instance_id,
                name=s.name or str(s.step_instance_id),
                type=s.type,
                status=s.status,
                total_hosts=len(s.step_ip_status or []) or len(by_step[s.step_instance_id]),
                hosts=tuple(by_step[s.step_instance_id]),
            )
            for s in steps
        )
        return FailureReport(steps=failed, problem=" ".join(dict.fromkeys(reading.problems)) or None)

    async def _read(
        self,
        reading: _Reading,
        steps: Sequence[StepInstance],
        bk_biz_id: int,
        job_instance_id: int,
        bk_username: str,
        *,
        full: bool,
        host: str | None,
    ) -> None:
        try:
            reading.results = await self._bk.failed_host_results(
                bk_biz_id=bk_biz_id,
                job_instance_id=job_instance_id,
                steps=steps,
                bk_username=bk_username,
            )
        except BkError as exc:
            log.warning("failed hosts of instance %s could not be read: %s", job_instance_id, exc)
            reading.problems.append(f"BK-JOB's host results could not be read ({exc}).")
            return
        file_steps = {s.step_instance_id for s in steps if s.type == FILE_STEP}
        wanted = reading.results if full else _representatives(reading.results)
        if host is not None:
            wanted = [r for r in wanted if _matches(r.host, host)]
        need: dict[int, list[HostRef]] = defaultdict(list)
        for result in wanted:
            if result.host.ip is None and result.host.bk_host_id is None:
                continue
            if result.log is None or (result.step_instance_id in file_steps and not result.files):
                need[result.step_instance_id].append(result.host)
        # A batch names its hosts all by host ID or all by IP: hosts known by ID (IPv6-only ones have nothing
        # else) go in batches of their own.
        batches = [
            (step_id, part[i : i + MAX_HOSTS_PER_CALL])
            for step_id, hosts in need.items()
            for part in (
                [h for h in hosts if h.bk_host_id is not None],
                [h for h in hosts if h.bk_host_id is None],
            )
            for i in range(0, len(part), MAX_HOSTS_PER_CALL)
        ]
        gate = asyncio.Semaphore(self._concurrency)

        async def one(step_id: int, hosts: Sequence[HostRef]) -> None:
            async with gate:
                try:
                    entries = await self._bk.host_logs(
                        bk_biz_id=bk_biz_id,
                        job_instance_id=job_instance_id,
                        step_instance_id=step_id,
                        hosts=hosts,
                        bk_username=bk_username,
                    )
                except BkError as exc:
                    log.warning("logs of step %s could not be read: %s", step_id, exc)
                    reading.problems.append(f"Some logs could not be read from BK-JOB ({exc}).")
                    return
            for entry in entries:
                reading.logs[(step_id, entry.host.address)] = entry

        await asyncio.gather(*(one(step_id, hosts) for step_id, hosts in batches))


def _failed(step: StepInstance) -> bool:
    """A step that ran and did not succeed (never-run steps have status 1)."""
    return status.is_finished(step.status) and step.status not in status.SUCCESSFUL


def _representatives(results: Sequence[HostResult]) -> list[HostResult]:
    """One host per reason per step, for the reasons a digest shows."""
    by_step: dict[int, list[HostResult]] = defaultdict(list)
    for result in results:
        by_step[result.step_instance_id].append(result)
    return [g.hosts[0] for hosts in by_step.values() for g in group_hosts(hosts)[:MAX_GROUPS]]


def _matches(host: HostRef, wanted: str) -> bool:
    return wanted in (host.address, host.ip, str(host.bk_host_id))


def _merge(
    results: Sequence[HostResult],
    logs: dict[tuple[int, str], HostLogEntry],
    masker: Masker | None,
    *,
    tail: int,
    shown: Collection[tuple[int, str]] | None = None,
) -> list[HostResult]:
    """Attach what was read, then clean, mask and cut every text; without a masker no text is kept at all.

    Hosts not `shown` (None: all are) keep no log of their own; a host with no text left is passed on as it is,
    so a digest of thousands of failed hosts costs one copy per host at most, not two.
    """
    out = []
    for result in results:
        key = (result.step_instance_id, result.host.address)
        entry = logs.get(key)
        hidden = shown is not None and key not in shown
        if entry is not None:
            result = replace(result, log=entry.log, files=entry.files)
        elif hidden and result.log is not None:
            result = replace(result, log=None)
        if result.log is None and not result.files:
            out.append(result)
            continue
        if masker is None:
            out.append(replace(result, log=None, files=()))
            continue
        text = None if result.log is None else _safe_tail(result.log, masker, tail)
        files = tuple(_safe_file(f, masker) for f in result.files)
        out.append(replace(result, log=text, files=files))
    return out


def _safe_file(f: FileLog, masker: Masker) -> FileLog:
    def safe(text: str | None) -> str | None:
        return None if text is None else masker(clean(text))

    return replace(f, src_path=safe(f.src_path), dest_path=safe(f.dest_path), text=_safe_tail(f.text, masker, 4000))


_MARGIN = 1024


def _safe_tail(text: str, masker: Masker, limit: int) -> str:
    """The cleaned, masked end of a log. A huge log costs no more than its tail; the tail is read with a margin and
    cut only after masking, so a secret straddling the cut is never shown in part."""
    if len(text) <= limit:
        return masker(clean(text))
    safe = masker(clean(text[-(limit + _MARGIN) :]))
    return f"[… earlier output not shown: {len(text) - limit:,}+ characters]\n…" + safe[-limit:]


def log_file(report: FailureReport, *, title: str) -> str:
    """The uploaded file: one section per failed host, with its step and how it ended."""
    parts = [title, "Secrets are masked (******); colour codes and control characters removed.", ""]
    for step in report.steps:
        for result in step.hosts:
            how = host_status(result.status)
            codes = []
            if result.exit_code not in (None, 0):
                codes.append(f"exit code {result.exit_code}")
            if result.error_code not in (None, 0):
                codes.append(f"BK-JOB error code {result.error_code}")
            if result.execute_count is not None:
                codes.append(f"attempt {result.execute_count + 1}")
            parts.append(
                f"===== {result.host.address} · step {step.name!r} ({status.describe(step.status)}) · {how}"
                + (f" · {', '.join(codes)}" if codes else "")
                + " ====="
            )
            for f in result.files:
                parts.append(
                    f"transfer {f.src or '?'}:{f.src_path or '?'} -> {f.dest or result.host.address}:"
                    f"{f.dest_path or '?'} ({'failed' if f.failed else f'status {f.status}'})"
                )
            if result.log is None:
                parts.append("(log not available)")
            elif result.log.strip():
                parts.append(result.log.rstrip("\n"))
            else:
                parts.append("(no output)")
            parts.append("")
    if report.problem:
        parts.append(f"Note: {report.problem}")
    return "\n".join(parts) + "\n"
