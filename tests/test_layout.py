"""The house's rules, read from each module's own imports (direct imports only, as the issue states them).

The wings form a one-way street: bot/slack and bot/web -> bot/core -> bot/bkjob. The core speaks neither Slack
nor HTTP; BK-JOB's wing knows nothing of the core or the other wings; Slack and the web routes reach BK-JOB only
through the core (they may use BK-JOB's types and parsers, never its clients).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "bot"

# BK-JOB's client modules: only the core (and the composition root) may call BK-JOB.
BK_CLIENTS = ("bot.bkjob.client", "bot.bkjob.esb", "bot.bkjob.gateway")
# bot/'s shared modules: any wing may import them, and they import no wing.
SHARED = ("bot.errors", "bot.config", "bot.logs", "bot.proxy", "bot.bodies", "bot.metrics")

RULES: dict[str, tuple[str, ...]] = {
    "bot.core": ("bot.slack", "bot.web", "bot.app", "bot.demo", "bot.fakes", "slack_sdk", "slack_bolt", "aiohttp"),
    "bot.bkjob": ("bot.core", "bot.slack", "bot.web", "bot.app", "bot.demo", "bot.fakes", "slack_sdk", "slack_bolt"),
    "bot.slack": ("bot.web", "bot.app", "bot.demo", "bot.fakes", *BK_CLIENTS),
    "bot.web": ("bot.slack", "bot.app", "bot.demo", "bot.fakes", "slack_sdk", "slack_bolt", *BK_CLIENTS),
    "bot.store": ("bot.core", "bot.slack", "bot.web", "bot.bkjob", "bot.app", "slack_sdk", "slack_bolt", "aiohttp"),
    **{shared: ("bot.core", "bot.slack", "bot.web", "bot.bkjob", "bot.store", "bot.app") for shared in SHARED},
}
MAX_TOP_LEVEL = 8
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(module: str, source: str, *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """Every module a file imports itself, with its line: `from a.b import c` counts as a.b and a.b.c."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def sources() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    found = []
    for wing, forbidden in RULES.items():
        if not within(module, wing):
            continue
        for line, imported in imports(module, source, is_package=is_package):
            for banned in forbidden:
                if within(imported, banned):
                    found.append(f"{module}:{line} imports {imported}")
    return sorted(set(found))


def test_wings_import_one_way() -> None:
    found = [
        v
        for path in sources()
        for v in violations(module_name(path), path.read_text(encoding="utf-8"), is_package=path.name == "__init__.py")
    ]
    assert found == []


def test_the_rule_catches_a_core_module_that_speaks_slack() -> None:
    """The check itself: a core module importing Slack's wing, the web wing (relatively) or aiohttp, BK-JOB's wing
    importing the core, and Slack's wing calling BK-JOB's client are reported (so a green run above means
    something)."""
    core = violations("bot.core.probe", "from bot.slack.blocks import x\nimport aiohttp\nfrom ..web import callback\n")
    assert core == [
        "bot.core.probe:1 imports bot.slack.blocks",
        "bot.core.probe:1 imports bot.slack.blocks.x",
        "bot.core.probe:2 imports aiohttp",
        "bot.core.probe:3 imports bot.web",
        "bot.core.probe:3 imports bot.web.callback",
    ]
    assert violations("bot.bkjob.probe", "from bot.core.launches import Launches\n") == [
        "bot.bkjob.probe:1 imports bot.core.launches",
        "bot.bkjob.probe:1 imports bot.core.launches.Launches",
    ]
    assert violations("bot.slack.probe", "from bot.bkjob import esb\n") == ["bot.slack.probe:1 imports bot.bkjob.esb"]
    assert violations("bot.slack.probe", "from bot.bkjob.models import JobDetail\n") == []


def test_at_most_eight_modules_at_the_top() -> None:
    top = sorted(p.name for p in ROOT.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP_LEVEL, top


@pytest.mark.parametrize(
    "path", [p for p in sources() if "fakes" not in p.parts], ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_module_is_too_long(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT.parent)} has {lines} lines (at most {MAX_LINES})"
