"""The failure digest as mrkdwn sections that fit Slack whatever the size of the failure.

Everything is bounded: a job with 50 steps and 100,000 failed hosts gives the same few sections as one with one
failed host, with "n more" where it was cut.
"""

from __future__ import annotations

from bot.bkjob.hostlogs import FILE_STEP, HostResult
from bot.core.digest import MAX_GROUPS, MAX_STEPS, FailedStep, FailureReport, Group, group_hosts
from bot.slack.blocks.text import status_emoji, untrusted

__all__ = ["MAX_SECTION", "sections"]

MAX_ADDRESSES = 5
MAX_LOG_LINES = 8
MAX_LINE = 150
MAX_FILES = 3
MAX_SECTION = 1500
"""Well under Slack's 3,000 per section, so that every section of the digest together stays small."""


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
    head = f"{status_emoji(step.status)} *{name}*: {len(step.hosts):,} of {step.total_hosts:,} hosts failed"
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
    """Host output, step names and BK-JOB's words are untrusted: escaped, backticks swapped ."""
    return untrusted(text)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
