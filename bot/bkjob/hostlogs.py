"""BK-JOB's per-host results and logs: the v2 and v3 wire shapes of the log APIs and the one domain shape they become.

    v2  get_job_instance_log            every step x every host of the latest attempt, grouped by (ip_status, tag),
                                        with exit and error codes; `log_content` is HTML-encoded by JOB
    v3  batch_get_job_instance_ip_log   one step, at most 500 hosts (`ip_list` or `host_id_list`), latest attempt:
                                        `script_task_logs[]` or `file_task_logs[].file_logs[]` (docs/bkjob.md §logs)

The text in here is raw: cleaning and masking happen in `bot.core.joblogs`, before anything reaches Slack.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.bkjob.models import StepInstance

__all__ = [
    "FILE_STEP",
    "MAX_HOSTS_PER_CALL",
    "SCRIPT_STEP",
    "FileLog",
    "HostLogEntry",
    "HostRef",
    "HostResult",
    "IpLogsV3",
    "StepLogV2",
    "batch_log_body",
    "host_results_from_status",
    "host_results_from_v2",
]

MAX_HOSTS_PER_CALL = 500
"""`batch_get_job_instance_ip_log` refuses more (EsbBatchGetJobInstanceIpLogV3ResourceImpl.checkRequest)."""

# Per-host statuses that are not failures (ExecuteObjectTaskStatusEnum): last succeeded, waiting, running, success.
_NOT_FAILED = frozenset({3, 5, 7, 9})
SCRIPT_STEP, FILE_STEP = 1, 2


@dataclass(frozen=True)
class HostRef:
    """A host as BK-JOB names it in results: cloud area and IP, or only a host ID (IPv6-only hosts)."""

    bk_cloud_id: int
    ip: str | None
    bk_host_id: int | None = None

    @property
    def address(self) -> str:
        if self.ip:
            return self.ip if self.bk_cloud_id == 0 else f"{self.bk_cloud_id}:{self.ip}"
        return f"host {self.bk_host_id}" if self.bk_host_id is not None else "unknown host"


@dataclass(frozen=True)
class FileLog:
    """One file transfer of a file step (v3 `file_logs[]`); `status` 5 is FileDistStatusEnum.FAILED."""

    mode: int | None
    src: str | None
    src_path: str | None
    dest: str | None
    dest_path: str | None
    status: int | None
    text: str

    @property
    def failed(self) -> bool:
        return self.status == 5


@dataclass(frozen=True)
class HostResult:
    """How one host ended in one step, and its log when it has been read (None: not read yet)."""

    step_instance_id: int
    host: HostRef
    status: int
    exit_code: int | None = None
    error_code: int | None = None
    tag: str = ""
    execute_count: int | None = None
    log: str | None = None
    files: tuple[FileLog, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status not in _NOT_FAILED


@dataclass(frozen=True)
class HostLogEntry:
    """What a batch log read returns for one host."""

    host: HostRef
    log: str
    files: tuple[FileLog, ...] = ()


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# -- v2 get_job_instance_log (EsbStepInstanceResultAndLog) -----------------------------------------------------


class _IpLogV2(_Wire):
    ip: str | None = None
    bk_cloud_id: int | None = 0
    execute_count: int | None = None
    error_code: int | None = None
    exit_code: int | None = None
    log_content: str | None = None


class _StepResultV2(_Wire):
    ip_status: int
    tag: str | None = None
    ip_logs: list[_IpLogV2] | None = None


class StepLogV2(_Wire):
    """One `data[]` item: a step with its hosts grouped by status and tag."""

    step_instance_id: int
    name: str | None = None
    status: int | None = None
    step_results: list[_StepResultV2] | None = None


def host_results_from_v2(steps: Iterable[StepLogV2], wanted: Iterable[int]) -> list[HostResult]:
    """The failed hosts of the `wanted` steps, with their logs (JOB HTML-encodes v2 log text: undone here)."""
    keep = set(wanted)
    out: list[HostResult] = []
    for step in steps:
        if step.step_instance_id not in keep:
            continue
        for group in step.step_results or []:
            if group.ip_status in _NOT_FAILED:
                continue
            for entry in group.ip_logs or []:
                out.append(
                    HostResult(
                        step_instance_id=step.step_instance_id,
                        host=HostRef(bk_cloud_id=entry.bk_cloud_id or 0, ip=entry.ip),
                        status=group.ip_status,
                        exit_code=entry.exit_code,
                        error_code=entry.error_code,
                        tag=group.tag or "",
                        execute_count=entry.execute_count,
                        log=html.unescape(entry.log_content or ""),
                    )
                )
    return out


# -- v3 batch_get_job_instance_ip_log (EsbIpLogsV3DTO) -----------------------------------------------------------


class _IpV3(_Wire):
    bk_cloud_id: int | None = 0
    ip: str | None = None


class _FileLogV3(_Wire):
    mode: int | None = None
    src_ip: _IpV3 | None = None
    src_path: str | None = None
    dest_ip: _IpV3 | None = None
    dest_path: str | None = None
    status: int | None = None
    log_content: str | None = None


class _ScriptHostLogV3(_Wire):
    bk_host_id: int | None = None
    bk_cloud_id: int | None = 0
    ip: str | None = None
    log_content: str | None = None


class _FileHostLogV3(_Wire):
    bk_host_id: int | None = None
    bk_cloud_id: int | None = 0
    ip: str | None = None
    file_logs: list[_FileLogV3] | None = None


class IpLogsV3(_Wire):
    log_type: int | None = None
    script_task_logs: list[_ScriptHostLogV3] | None = None
    file_task_logs: list[_FileHostLogV3] | None = None

    def entries(self) -> list[HostLogEntry]:
        out = [
            HostLogEntry(host=HostRef(h.bk_cloud_id or 0, h.ip, h.bk_host_id), log=h.log_content or "")
            for h in self.script_task_logs or []
        ]
        for h in self.file_task_logs or []:
            files = tuple(_file_log(f) for f in h.file_logs or [])
            text = "\n".join(f.text for f in files if f.text)
            out.append(HostLogEntry(host=HostRef(h.bk_cloud_id or 0, h.ip, h.bk_host_id), log=text, files=files))
        return out


def _address(ip: _IpV3 | None) -> str | None:
    if ip is None or not ip.ip:
        return None
    return HostRef(ip.bk_cloud_id or 0, ip.ip).address


def _file_log(f: _FileLogV3) -> FileLog:
    return FileLog(
        mode=f.mode,
        src=_address(f.src_ip),
        src_path=f.src_path,
        dest=_address(f.dest_ip),
        dest_path=f.dest_path,
        status=f.status,
        text=f.log_content or "",
    )


def batch_log_body(step_instance_id: int, job_instance_id: int, hosts: Sequence[HostRef]) -> dict[str, Any]:
    """The business part of a batch log read: by host ID when every host has one, else by cloud area and IP
    (callers batch hosts known by ID apart from the others)."""
    body: dict[str, Any] = {"job_instance_id": job_instance_id, "step_instance_id": step_instance_id}
    if hosts and all(h.bk_host_id is not None for h in hosts):
        body["host_id_list"] = [h.bk_host_id for h in hosts]
    else:
        body["ip_list"] = [{"bk_cloud_id": h.bk_cloud_id, "ip": h.ip} for h in hosts if h.ip]
    return body


# -- per-host results from get_job_instance_status (v3 carries exit and error codes there) ---------------------


def host_results_from_status(steps: Iterable[StepInstance]) -> list[HostResult]:
    """The failed hosts as a status answer tells them: with codes from v3, without (status only) from v2."""
    return [
        HostResult(
            step_instance_id=step.step_instance_id,
            host=HostRef(bk_cloud_id=h.bk_cloud_id or 0, ip=h.ip, bk_host_id=h.bk_host_id),
            status=h.status,
            exit_code=h.exit_code,
            error_code=h.error_code,
            tag=h.tag or "",
            execute_count=step.execute_count,
        )
        for step in steps
        for h in step.step_ip_status or []
        if h.status not in _NOT_FAILED
    ]
