"""The failure digest: failed hosts grouped by what went wrong (Slack renders it in `bot.slack.blocks.digest`).

For each failed step: one group per reason (exit code, BK-JOB error code, time-out, agent missing, other per-host
status), largest first, with a count, a few host addresses and the last lines of one representative host's log;
for file steps the failing transfers (source and destination). Everything is bounded: a job with 50 steps and
100,000 failed hosts gives the same few sections as one with one failed host, with "n more" where it was cut.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from bot.bkjob.hostlogs import HostResult

__all__ = [
    "MAX_GROUPS",
    "MAX_STEPS",
    "FailedStep",
    "FailureReport",
    "Group",
    "group_hosts",
    "host_status",
    "reason",
]

MAX_STEPS = 3
"""Failed steps shown in full; the rest are counted in one line."""
MAX_GROUPS = 3
"""Reasons shown per step; the rest are counted in one line."""

# ExecuteObjectTaskStatusEnum (docs/bkjob.md §host-status): how each per-host code reads.
_HOST_STATUS: dict[int, str] = {
    0: "unknown error",
    1: "agent error",
    2: "invalid host",
    3: "succeeded last time",
    5: "waiting",
    7: "running",
    9: "succeeded",
    11: "failed",
    12: "submit failed",
    13: "task timed out",
    15: "log error",
    16: "script log timed out",
    17: "file log timed out",
    18: "agent not installed",
    101: "script failed",
    102: "script timed out",
    103: "script terminated",
    104: "script exit code not zero",
    202: "file copy failed",
    203: "source file missing",
    301: "file task failed",
    303: "file task timed out",
    310: "agent error",
    311: "user does not exist",
    312: "wrong user password",
    320: "file fetch failed",
    321: "file too large",
    329: "file transfer error",
    399: "task error",
    403: "terminated",
    404: "terminate failed",
    500: "unknown error",
}
_AGENT = frozenset({1, 18, 310})
_TIMEOUT = frozenset({13, 16, 17, 102, 303})


def host_status(code: int) -> str:
    return _HOST_STATUS.get(code, f"host status {code}")


def reason(host: HostResult) -> tuple[str, str]:
    """(grouping key, what a person reads): agent and time-outs first, then the exit code, then JOB's error code."""
    if host.status in _AGENT:
        return "agent", "agent missing or not running" if host.status != 18 else "agent not installed"
    if host.status in _TIMEOUT:
        return "timeout", f"timed out ({host_status(host.status)})"
    if host.exit_code not in (None, 0):
        return f"exit:{host.exit_code}", f"exit code {host.exit_code}"
    if host.error_code not in (None, 0):
        return f"error:{host.error_code}", f"BK-JOB error code {host.error_code} ({host_status(host.status)})"
    return f"status:{host.status}", host_status(host.status)


@dataclass(frozen=True)
class Group:
    """Hosts of one step that failed the same way; `sample` is the one whose log is shown."""

    key: str
    label: str
    hosts: tuple[HostResult, ...]

    @property
    def sample(self) -> HostResult:
        """The first host whose log was read, else the first host."""
        return next((h for h in self.hosts if h.log is not None), self.hosts[0])


def group_hosts(hosts: Iterable[HostResult]) -> list[Group]:
    """Largest group first; ties by label so that the order is stable."""
    by_key: dict[str, list[HostResult]] = defaultdict(list)
    labels: dict[str, str] = {}
    for host in hosts:
        key, label = reason(host)
        by_key[key].append(host)
        labels.setdefault(key, label)
    groups = [Group(key=k, label=labels[k], hosts=tuple(v)) for k, v in by_key.items()]
    return sorted(groups, key=lambda g: (-len(g.hosts), g.label))


@dataclass(frozen=True)
class FailedStep:
    """A step that did not succeed, its host counts and its failed hosts (logs cleaned and masked)."""

    step_instance_id: int
    name: str
    type: int | None
    status: int
    total_hosts: int
    hosts: tuple[HostResult, ...]


@dataclass(frozen=True)
class FailureReport:
    """What could be learnt about a failed job's hosts; `problem` says what could not (shown to people)."""

    steps: tuple[FailedStep, ...]
    problem: str | None = None
