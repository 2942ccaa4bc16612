"""Turning a plan's global variables plus a person's overrides into `global_vars` for execute_job."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.bk_models import GlobalVar, JobDetail, PlanVariable, VariableType
from bot.errors import TargetError, UserInputError
from bot.store.records import SentVariable
from bot.targets import format_targets, parse_targets

__all__ = [
    "MASK",
    "Overrides",
    "VariableProblems",
    "build_overrides",
    "check_names",
    "default_text",
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


def build_overrides(plan: JobDetail, values: Mapping[str, str]) -> Overrides:
    """Only variables whose value differs from the plan's default are sent, by `id` when there is one."""
    check_names(plan, list(values))
    problems: dict[str, str] = {}
    global_vars: list[GlobalVar] = []
    shown: list[SentVariable] = []
    for var in plan.variables:
        if var.name not in values:
            continue
        try:
            item = _override(var, values[var.name])
        except UserInputError as exc:
            problems[var.name] = str(exc)
            continue
        if item is not None:
            global_vars.append(item)
            shown.append(SentVariable(id=var.id, name=var.name, category=var.category, shown=_shown(item)))
    if problems:
        raise VariableProblems(problems)
    return Overrides(global_vars=global_vars, shown=shown)


def _override(var: PlanVariable, text: str) -> GlobalVar | None:
    ident = {"id": var.id} if var.id is not None else {"name": var.name}
    if var.is_host:
        targets = parse_targets(text)
        if targets == var.default_targets():
            return None
        if targets.is_empty():
            raise TargetError(["give at least one host, dynamic group or topology node (or keep the default)"])
        return GlobalVar(**ident, target_server=targets)
    if text == (var.value or ""):
        return None
    return GlobalVar(**ident, value=text)


def _shown(item: GlobalVar) -> str:
    """A host variable leads with what it runs on ("2 IPs, 1 topology node: …"): the list may be cut for Slack."""
    if item.target_server is not None:
        return f"{item.target_server.counts()}: {format_targets(item.target_server)}"
    return item.value or ""


def _listing(plan: JobDetail) -> str:
    names = [f"`{v.name}` ({type_name(v.category)})" for v in plan.variables]
    return ", ".join(names) if names else "no global variables"
