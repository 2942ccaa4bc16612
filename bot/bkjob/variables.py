"""Turning a plan's global variables plus a person's overrides into `global_vars` for execute_job."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.bkjob.errors import TargetError
from bot.bkjob.models import GlobalVar, HostId, JobDetail, PlanVariable, TargetServer, VariableType
from bot.bkjob.targets import format_targets, parse_targets
from bot.errors import UserInputError
from bot.store.records import SentVariable

__all__ = [
    "MASK",
    "Overrides",
    "VariableProblems",
    "build_overrides",
    "check_names",
    "default_text",
    "host_hint",
    "type_name",
]

MASK = "••••••"

_TYPE_NAMES: dict[int, str] = {
    VariableType.STRING: "string",
    VariableType.NAMESPACE: "namespace",
    VariableType.HOST_LIST: "host list",
    VariableType.PASSWORD: "password",
    VariableType.ASSOCIATIVE_ARRAY: "associative array",
    VariableType.INDEX_ARRAY: "index array",
}


@dataclass(frozen=True)
class Overrides:
    """What will be sent (`global_vars`) and what may be shown and stored (`shown`)."""

    global_vars: list[GlobalVar]
    shown: list[SentVariable]


class VariableProblems(UserInputError):
    """One or more overrides cannot be used; `problems` maps variable name to the reason."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        # A backtick in a typed name would close the code span early (Slack has no escape for it).
        super().__init__("\n".join(f"• `{name.replace('`', 'ˋ')}`: {why}" for name, why in self.problems.items()))


def type_name(category: int) -> str:
    return _TYPE_NAMES.get(category, f"type {category}")


def default_text(var: PlanVariable) -> str:
    """The plan's default as a person edits it: hosts one per line, other types as their string."""
    if var.is_host:
        return format_targets(var.default_targets())
    return var.value or ""


def host_hint(var: PlanVariable) -> str:
    """The default's IPv6-only hosts, pre-filled as host:<id>, by the address people know them by."""
    hosts = [h for h in var.default_targets().host_id_list if h.ipv6]
    if not hosts:
        return ""
    shown = ", ".join(f"host:{h.bk_host_id} is {h.ipv6}" for h in hosts[:10])
    return f"; IPv6-only hosts go by host ID: {shown}" + (", …" if len(hosts) > 10 else "")


def check_names(plan: JobDetail, names: list[str]) -> None:
    """Unknown names and password overrides are refused before anything is shown or sent."""
    known = {v.name: v for v in plan.variables}
    problems: dict[str, str] = {}
    for name in names:
        var = known.get(name)
        if var is None:
            problems[name] = "the plan has no such variable; it has " + _listing(plan)
        elif var.is_password:
            problems[name] = "is a password variable: it keeps the plan's value (secrets do not belong in chat)"
    if problems:
        raise VariableProblems(problems)


def build_overrides(plan: JobDetail, values: Mapping[str, str], *, host_ids: bool = False) -> Overrides:
    """Only variables whose value differs from the plan's default are sent, by `id` when there is one.

    `host_ids`: whether the API can name hosts by host ID (v3's `host_id_list`; ESB v2 cannot), the only way to
    send an IPv6-only host.
    """
    check_names(plan, list(values))
    problems: dict[str, str] = {}
    global_vars: list[GlobalVar] = []
    shown: list[SentVariable] = []
    for var in plan.variables:
        if var.name not in values:
            continue
        try:
            override = _override(var, values[var.name], host_ids=host_ids)
        except UserInputError as exc:
            problems[var.name] = str(exc)
            continue
        if override is not None:
            item, text = override
            global_vars.append(item)
            shown.append(SentVariable(id=var.id, name=var.name, category=var.category, shown=text))
    if problems:
        raise VariableProblems(problems)
    return Overrides(global_vars=global_vars, shown=shown)


def _override(var: PlanVariable, text: str, *, host_ids: bool) -> tuple[GlobalVar, str] | None:
    """The item to send and how it is shown, or None when it equals the plan's default (then nothing is sent)."""
    ident = {"id": var.id} if var.id is not None else {"name": var.name}
    if var.is_host:
        if text == default_text(var):
            # The field as the form showed it: nothing was edited, so nothing is parsed (a third of a launch's
            # work for a long host list) and nothing is sent.
            return None
        targets = _labelled(parse_targets(text), var)
        if targets == var.default_targets():
            return None
        if targets.is_empty():
            raise TargetError(["give at least one host, dynamic group or topology node (or keep the default)"])
        # A host variable leads with what it runs on ("2 IPs, 1 topology node: …"): the list may be cut for Slack.
        shown = f"{targets.counts()}: {format_targets(targets, labels=True)}"
        return GlobalVar(**ident, target_server=_sendable(targets, var, host_ids=host_ids)), shown
    if text == (var.value or ""):
        return None
    return GlobalVar(**ident, value=text), text


def _labelled(targets: TargetServer, var: PlanVariable) -> TargetServer:
    """Hosts named by ID get the IPv6 address the plan's default knows them by, to be shown (and compared)."""
    if not targets.host_id_list:
        return targets
    known = {h.bk_host_id: h.ipv6 for h in var.default_targets().host_id_list}
    hosts = [HostId(bk_host_id=h.bk_host_id, ipv6=known.get(h.bk_host_id)) for h in targets.host_id_list]
    return targets.model_copy(update={"host_id_list": hosts})


def _sendable(targets: TargetServer, var: PlanVariable, *, host_ids: bool) -> TargetServer:
    """Targets as the API can take them, or a TargetError saying why not; never a silently shorter list.

    v3 uses `host_id_list` instead of `ip_list` when both are given (JobExecuteCommonV3Processor), so once one host
    is named by ID, every IP must be too: from the plan's default, which knows their host IDs.
    """
    if not targets.host_id_list:
        return targets
    named = ", ".join(f"host:{h.bk_host_id}" for h in targets.host_id_list[:5])
    if not host_ids:
        raise TargetError(
            [
                f"{named}: hosts named by host ID (IPv6-only hosts) can be sent only through BK-JOB's v3 API "
                "(BK_API_VERSION=v3); leave the field as the plan has it to run on them"
            ]
        )
    by_ip = var.host_ids()
    unknown = [ip for ip in targets.ip_list if (ip.bk_cloud_id, ip.ip) not in by_ip]
    if unknown:
        shown = ", ".join(ip.ip if ip.bk_cloud_id == 0 else f"{ip.bk_cloud_id}:{ip.ip}" for ip in unknown[:5])
        raise TargetError(
            [
                f"{shown}: with hosts named by host ID in the list, BK-JOB takes every host by ID; "
                "write these as host:<bk_host_id>"
            ]
        )
    hosts = [HostId(bk_host_id=by_ip[(ip.bk_cloud_id, ip.ip)]) for ip in targets.ip_list] + targets.host_id_list
    return targets.model_copy(update={"ip_list": [], "host_id_list": hosts})


def _listing(plan: JobDetail) -> str:
    names = [f"`{v.name}` ({type_name(v.category)})" for v in plan.variables]
    return ", ".join(names) if names else "no global variables"
