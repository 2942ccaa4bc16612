"""The failure digest: failed hosts grouped by what went wrong, as mrkdwn sections that fit Slack whatever the size.

For each failed step: one group per reason (exit code, BK-JOB error code, time-out, agent missing, other per-host
status), largest first, with a count, a few host addresses and the last lines of one representative host's log;
for file steps the failing transfers (source and destination). Everything is bounded: a job with 50 steps and
100,000 failed hosts gives the same few sections as one with one failed host, with "n more" where it was cut.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from bot.bkjob import status
from bot.bkjob.hostlogs import FILE_STEP, HostResult
from bot.slack.blocks import untrusted

__all__ = [
    "MAX_GROUPS",
    "MAX_SECTION",
    "MAX_STEPS",
    "FailedStep",
    "FailureReport",
    "Group",
    "group_hosts",
    "host_status",
    "reason",
    "sections",
]

MAX_STEPS = 3
"""Failed steps shown in full; the rest are counted in one line."""
MAX_GROUPS = 3
"""Reasons shown per step; the rest are counted in one line."""
MAX_ADDRESSES = 5
MAX_LOG_LINES = 8
MAX_LINE = 150
MAX_FILES = 3
MAX_SECTION = 1500
"""Well under Slack's 3,000 per section, so that every section of the digest together stays small."""

# ExecuteObjectTaskStatusEnum (reference §3.5): how each per-host code reads.
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


def sections(report: FailureReport) -> list[str]:
    """mrkdwn texts, one per (step, reason), each within MAX_SECTION; at most MAX_STEPS x MAX_GROUPS + 2."""
    out: list[str] = []
    shown = [s for s in report.steps if s.hosts][:MAX_STEPS]
    for step in shown:
        out.extend(_step_sections(step))
    hidden = [s for s in report.steps if s.hosts][MAX_STEPS:]
    if hidden:
        hosts = sum(len(s.hosts) for s in hidden)
        out.append(_cut(f"… and {_n(len(hidden), 'more failed step')} with {_n(hosts, 'failed host')}", MAX_SECTION))
    if report.problem:
        out.append(_cut(f":warning: _{_esc(report.problem)}_", MAX_SECTION))
    return out


def _step_sections(step: FailedStep) -> list[str]:
    groups = group_hosts(step.hosts)
    name = _esc(_cut(step.name, 100))
    head = f"{status.emoji(step.status)} *{name}*: {len(step.hosts):,} of {step.total_hosts:,} hosts failed"
    out: list[str] = []
    for i, group in enumerate(groups[:MAX_GROUPS]):
        text = _group_text(group, step)
        out.append(_cut(f"{head}\n{text}" if i == 0 else text, MAX_SECTION))
    rest = groups[MAX_GROUPS:]
    if rest:
        hosts = sum(len(g.hosts) for g in rest)
        out.append(f"• … {_n(len(rest), 'other reason')} on {_n(hosts, 'host')}")
    return out


def _group_text(group: Group, step: FailedStep) -> str:
    count = len(group.hosts)
    addresses = ", ".join(f"`{_esc(h.host.address)}`" for h in group.hosts[:MAX_ADDRESSES])
    more = f" and {count - MAX_ADDRESSES:,} more" if count > MAX_ADDRESSES else ""
    line = f"• *{_esc(group.label)}*: {_n(count, 'host')}: {addresses}{more}"
    sample = group.sample
    if step.type == FILE_STEP and sample.files:
        line += "\n" + _files_text(sample)
    if sample.log is None:
        return line + "\n_(log not read)_"
    excerpt = _tail(sample.log)
    if not excerpt:
        return line + f"\n_(`{_esc(sample.host.address)}` logged nothing)_"
    budget = MAX_SECTION - len(line) - 300  # room for the step head and the fence
    return f"{line}\nLast lines on `{_esc(sample.host.address)}`:\n```{_cut_head(excerpt, budget)}```"


def _files_text(host: HostResult) -> str:
    failed = [f for f in host.files if f.failed] or list(host.files)
    lines = []
    for f in failed[:MAX_FILES]:
        src = f"{f.src or '?'}:{f.src_path or '?'}"
        dest = f"{f.dest or host.host.address}:{f.dest_path or '?'}"
        lines.append(_cut(f"   ↳ `{_esc(src)}` → `{_esc(dest)}`", 300))
    if len(failed) > MAX_FILES:
        lines.append(f"   ↳ … {_n(len(failed) - MAX_FILES, 'more transfer')}")
    return "\n".join(lines)


def _tail(log: str) -> str:
    lines = [line for line in log.splitlines() if line.strip()]
    return "\n".join(_esc(_cut(line, MAX_LINE)) for line in lines[-MAX_LOG_LINES:])


def _cut_head(text: str, limit: int) -> str:
    """Keep the end of a log: the last lines say why it failed."""
    limit = max(limit, 20)
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def _esc(text: str) -> str:
    """Host output, step names and BK-JOB's words are untrusted: escaped, backticks swapped (bot.slack.blocks)."""
    return untrusted(text)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
