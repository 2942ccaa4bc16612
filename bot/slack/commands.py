"""Parsing of `/bkjob ...` slash-command text into typed requests; no Slack or HTTP here."""

from __future__ import annotations

import re
import shlex
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from bot.slack.errors import CommandError

__all__ = [
    "LogsCommand",
    "MAX_NAME",
    "MAX_OVERRIDES",
    "MAX_TEXT",
    "MAX_VALUE",
    "USAGE",
    "Command",
    "HelpCommand",
    "HistoryCommand",
    "PendingCommand",
    "PlansCommand",
    "RunCommand",
    "StatusCommand",
    "StopCommand",
    "RetryCommand",
    "parse_command",
]

MAX_TEXT = 8000
"""Longest command text we parse; Slack allows more, but nobody types that much on purpose."""
MAX_OVERRIDES = 100
MAX_NAME = 128
MAX_VALUE = 4000
MAX_ID = 2**63 - 1
"""BK-JOB ids are Java `long`s."""
MAX_WORDS = 8
MAX_HISTORY = 50
DEFAULT_HISTORY = 10


@dataclass(frozen=True)
class RunCommand:
    """`/bkjob run`: launch job plan `job_id`, overriding the named global variables.

    Without a job id, `words` are what the person typed instead: a preset's name, or words to find a plan by
    (`/bkjob run deploy web`); none at all opens the plan picker. Which of the two is for the policy to say.
    """

    job_id: int | None = None
    biz_id: int | None = None
    confirm: bool = False
    overrides: Mapping[str, str] = field(default_factory=dict, hash=False)
    words: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A read-only copy keeps the command immutable even if the caller's dict changes later.
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))


@dataclass(frozen=True)
class HelpCommand:
    """Show the usage; `unknown` is the subcommand we did not recognise, so the reply can say so."""

    unknown: str | None = None


@dataclass(frozen=True)
class PendingCommand:
    """`/bkjob pending`: launches waiting for approval."""


@dataclass(frozen=True)
class HistoryCommand:
    """`/bkjob history [n]`: the last `limit` launches."""

    limit: int = DEFAULT_HISTORY


@dataclass(frozen=True)
class PlansCommand:
    """`/bkjob plans [words]`: plans and presets whose name has every word, each with a Run button."""

    words: tuple[str, ...] = ()
    biz_id: int | None = None


@dataclass(frozen=True)
class StatusCommand:
    """`/bkjob status <id>`: the state of one job instance."""

    job_instance_id: int
    biz_id: int | None = None


@dataclass(frozen=True)
class StopCommand:
    """`/bkjob stop <id>`: stop a job instance launched from this channel."""

    job_instance_id: int


@dataclass(frozen=True)
class RetryCommand:
    """`/bkjob retry <id>`: retry the failed hosts of the failed step of an instance launched from this channel."""

    job_instance_id: int


@dataclass(frozen=True)
class LogsCommand:
    """`/bkjob logs <id> [host]`: attach the failed hosts' logs (or one host's) of a launch made here."""

    job_instance_id: int
    host: str | None = None


Command = (
    RunCommand
    | HelpCommand
    | PendingCommand
    | HistoryCommand
    | StatusCommand
    | PlansCommand
    | StopCommand
    | RetryCommand
    | LogsCommand
)

USAGE = """\
*Usage*
• `/bkjob run <job_id> [--biz <biz_id>] [--yes] [name=value ...]`: launch a job plan. \
A form lets you check the variables first, unless you add `--yes`.
  e.g. `/bkjob run 1024 --biz 3 "msg=hello world" hosts=10.0.0.1,2:10.0.0.2`
• `/bkjob run [words]`: find the plan by name in the form, e.g. `/bkjob run deploy web`
• `/bkjob run <preset> [--yes] [name=value ...]`: a launch saved by your team, e.g. `/bkjob run deploy-web version=2.1`
• `/bkjob plans [words]`: plans and presets whose name has those words, each with a *Run* button
• `/bkjob status <job_instance_id> [--biz <biz_id>]`: the state of a launched job, e.g. `/bkjob status 20001`
• `/bkjob stop <job_instance_id>`: stop a job launched here; `/bkjob retry <job_instance_id>`: retry its \
failed hosts (the launch message has these as buttons)
• `/bkjob history [n]`: the last n launches (1 to 50, default 10), e.g. `/bkjob history 5`
• `/bkjob pending`: launches waiting for approval
• `/bkjob logs <job_instance_id> [host]`: attach the failed hosts' logs of a launch made here as a file in its \
thread, where the channel allows it, e.g. `/bkjob logs 20001 10.0.0.7`
• `/bkjob help`: this message
Host variables take IPs (`10.0.0.1`, or `2:10.0.0.1` in cloud area 2), dynamic groups (`group:<id>`) \
and topology nodes (`module:12`, `set:3`), separated by commas, spaces or new lines; \
quote a value that contains spaces."""

_SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
_SMART_DASHES = ("\u2014", "\u2013")  # macOS turns a typed "--" into an em or en dash
_DIGITS = re.compile(r"[0-9]+")
_NUMBERISH = re.compile(r"[-+]?[\d.,]+")
"""A word meant as a job id (`-5`, `4.2`, `４２`): told it is not a valid one rather than searched for."""
_NEGATIVE = re.compile(r"-[0-9]+")
_ALIASES = {"-y": "--yes"}
_TAKES_VALUE = {"--biz": "--biz 3"}
_OPTION_HELP = {"--biz": "--biz <biz_id>", "--yes": "--yes (or -y)"}
_SHOWN_MAX = 40


@dataclass(frozen=True)
class _Option:
    name: str
    value: str | None = None


@dataclass(frozen=True)
class _Assign:
    name: str
    value: str


@dataclass(frozen=True)
class _Word:
    text: str


def parse_command(text: str) -> Command:
    """Turn slash-command text into a Command; every failure is a CommandError worded for a person."""
    if len(text) > MAX_TEXT:
        raise CommandError(f"the command is too long ({len(text)} characters): at most {MAX_TEXT} characters")
    tokens = _split(text) if text.strip() else []
    if not tokens:
        return HelpCommand()
    parse = _SUBCOMMANDS.get(tokens[0].lower())
    if parse is None:
        return HelpCommand(unknown=tokens[0])
    return parse(tokens[1:])


def _split(text: str) -> list[str]:
    """Split like a POSIX shell so people can quote values with spaces; shlex's errors become messages."""
    lexer = shlex.shlex(text.translate(_SMART_QUOTES), posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # `#` is ordinary text in values (channel names, shell snippets)
    try:
        return list(lexer)
    except ValueError as exc:
        raise CommandError(_lexer_problem(lexer)) from exc


def _lexer_problem(lexer: shlex.shlex) -> str:
    """shlex fails only on an open quote or a trailing backslash; say which, and where."""
    state: str | None = getattr(lexer, "state", None)  # shlex's parser state: the open quote, if any
    quote = state if state in ("'", '"') else None
    if quote is None:
        return "the command ends with a lone backslash (\\): remove it, or write \\\\ for a backslash"
    hint = ' (an apostrophe counts as a quote: put the value in "double quotes")' if quote == "'" else ""
    return f"unclosed quote: a {quote} opened near {_show(lexer.token or '')} is never closed{hint}"


def _parse_help(args: Sequence[str]) -> HelpCommand:
    return HelpCommand()


def _parse_pending(args: Sequence[str]) -> PendingCommand:
    if args:
        raise CommandError(f"pending takes no arguments, but got {_show(args[0])}")
    return PendingCommand()


def _parse_history(args: Sequence[str]) -> HistoryCommand:
    if not args:
        return HistoryCommand()
    if len(args) > 1:
        raise CommandError(f"history takes at most one number, but got {_show(args[1])} as well")
    token = args[0]
    if not (_DIGITS.fullmatch(token) and len(token) <= 3 and 1 <= int(token) <= MAX_HISTORY):
        raise CommandError(f"history takes a number from 1 to {MAX_HISTORY}, but got {_show(token)}")
    return HistoryCommand(limit=int(token))


def _parse_status(args: Sequence[str]) -> StatusCommand:
    instance_id: int | None = None
    biz_id: int | None = None
    for item in _read_args(args, allowed=("--biz",)):
        match item:
            case _Option(value=value):
                biz_id = _set_biz(biz_id, value or "")
            case _Word(text) if instance_id is None:
                instance_id = _parse_id(text, "job instance id", "/bkjob status 20001")
            case _Word(text):
                raise _unexpected_in_status(text)
            case _Assign(name, value):
                raise _unexpected_in_status(f"{name}={value}")
    if instance_id is None:
        raise CommandError("missing job instance id: write /bkjob status <job_instance_id>, e.g. /bkjob status 20001")
    return StatusCommand(job_instance_id=instance_id, biz_id=biz_id)


def _unexpected_in_status(token: str) -> CommandError:
    return CommandError(f"unexpected {_show(token)}: write /bkjob status <job_instance_id> [--biz <biz_id>]")


def _parse_run(args: Sequence[str]) -> RunCommand:
    job_id: int | None = None
    biz_id: int | None = None
    confirm = False
    overrides: dict[str, str] = {}
    words: list[str] = []
    for item in _read_args(args, allowed=("--biz", "--yes")):
        match item:
            case _Option(name="--yes"):
                confirm = True
            case _Option(value=value):
                biz_id = _set_biz(biz_id, value or "")
            case _Assign(name, value):
                _add_override(overrides, name, value)
            case _Word(text) if job_id is None and (words or not _NUMBERISH.fullmatch(text)):
                _add_word(words, text)
            case _Word(text) if job_id is None:
                job_id = _parse_id(text, "job id", "/bkjob run 1024")
            case _Word(text):
                raise CommandError(
                    f"{_show(text)} is not a variable: write name=value, and quote values with spaces "
                    '("msg=hello world")'
                )
    if job_id is None and not words and (confirm or overrides):
        raise CommandError(
            "missing job id: --yes and name=value need a plan, write /bkjob run <job_id> or /bkjob run <preset>, "
            "e.g. /bkjob run 1024 --yes"
        )
    return RunCommand(job_id=job_id, biz_id=biz_id, confirm=confirm, overrides=overrides, words=tuple(words))


def _parse_plans(args: Sequence[str]) -> PlansCommand:
    biz_id: int | None = None
    words: list[str] = []
    for item in _read_args(args, allowed=("--biz",)):
        match item:
            case _Option(value=value):
                biz_id = _set_biz(biz_id, value or "")
            case _Word(text):
                _add_word(words, text)
            case _Assign(name, value):
                _add_word(words, f"{name}={value}")
    return PlansCommand(words=tuple(words), biz_id=biz_id)


def _add_word(words: list[str], text: str) -> None:
    """Words to find a plan by: a name is what people search, a screenful of words is not."""
    if any(_is_forbidden_control(ch) for ch in text):
        raise CommandError(f"{_show(text)} contains a control character")
    if len(words) >= MAX_WORDS or sum(len(w) + 1 for w in words) + len(text) > MAX_NAME:
        raise CommandError(
            f"too many words to search for at {_show(text)}: at most {MAX_WORDS} words and {MAX_NAME} characters"
        )
    words.append(text)


def _parse_control(verb: str) -> Callable[[Sequence[str]], Command]:
    """`stop` and `retry` take exactly one job instance id."""

    def parse(args: Sequence[str]) -> Command:
        example = f"/bkjob {verb} 20001"
        if not args:
            raise CommandError(f"missing job instance id: write /bkjob {verb} <job_instance_id>, e.g. {example}")
        if len(args) > 1:
            raise CommandError(f"{verb} takes one job instance id, but got {_show(args[1])} as well")
        instance_id = _parse_id(args[0], "job instance id", example)
        return StopCommand(instance_id) if verb == "stop" else RetryCommand(instance_id)

    return parse


def _parse_logs(args: Sequence[str]) -> LogsCommand:
    if not args:
        raise CommandError("missing job instance id: write /bkjob logs <job_instance_id> [host], e.g. /bkjob logs 201")
    if len(args) > 2:
        raise CommandError(f"unexpected {_show(args[2])}: write /bkjob logs <job_instance_id> [host]")
    instance_id = _parse_id(args[0], "job instance id", "/bkjob logs 20001")
    host = args[1] if len(args) == 2 else None
    if host is not None and not _HOST.fullmatch(host):
        raise CommandError(f"{_show(host)} is not a host: write an IP (10.0.0.7), cloud:IP (2:10.0.0.7) or a host ID")
    return LogsCommand(job_instance_id=instance_id, host=host)


_HOST = re.compile(r"(?:\d+:)?[0-9A-Fa-f.:]{1,45}|\d{1,19}")

_SUBCOMMANDS: dict[str, Callable[[Sequence[str]], Command]] = {
    "stop": _parse_control("stop"),
    "retry": _parse_control("retry"),
    "help": _parse_help,
    "logs": _parse_logs,
    "run": _parse_run,
    "status": _parse_status,
    "history": _parse_history,
    "pending": _parse_pending,
    "plans": _parse_plans,
}


def _read_args(args: Sequence[str], *, allowed: Sequence[str]) -> Iterator[_Option | _Assign | _Word]:
    """Classify tokens as options, name=value pairs or bare words, so options may appear anywhere."""
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if not _is_option(token):
            name, equals, value = token.partition("=")
            yield _Assign(name, value) if equals else _Word(token)
            continue
        option = _read_option(_undash(token), allowed)
        if option.name in _TAKES_VALUE and option.value is None:
            following = args[index] if index < len(args) else None
            if following is not None and not _is_option(following):
                option = _Option(option.name, following)
                index += 1
        if option.name in _TAKES_VALUE and not option.value:
            raise CommandError(f"{option.name} needs a value, e.g. {_TAKES_VALUE[option.name]}")
        yield option


def _is_option(token: str) -> bool:
    """`--x` or `-x`; but `-5` is a (bad) number and `-x=1` a (strange) variable, not options."""
    token = _undash(token)
    if token.startswith("--"):
        return True
    return token.startswith("-") and len(token) > 1 and "=" not in token and not _NEGATIVE.fullmatch(token)


def _undash(token: str) -> str:
    """Read a leading em/en dash as `--`: Slack on macOS substitutes one when people type two hyphens."""
    return "--" + token[1:] if token.startswith(_SMART_DASHES) else token


def _read_option(token: str, allowed: Sequence[str]) -> _Option:
    spelled, equals, value = token.partition("=")
    name = _ALIASES.get(spelled.lower(), spelled.lower())
    if name not in allowed:
        valid = ", ".join(_OPTION_HELP[option] for option in allowed)
        raise CommandError(f"unknown option {_show(spelled)}: valid options are {valid}")
    if equals and name not in _TAKES_VALUE:
        raise CommandError(f"{name} takes no value: write just {name}")
    return _Option(name, value if equals else None)


def _set_biz(current: int | None, value: str) -> int:
    if current is not None:
        raise CommandError("--biz is given more than once: give the business id once")
    return _parse_id(value, "business id", "--biz 3")


def _add_override(overrides: dict[str, str], name: str, value: str) -> None:
    """Check one name=value pair against the limits that keep a hostile command cheap and clear."""
    if not name:
        raise CommandError(f"{_show('=' + value)} has no variable name before the =: write name=value")
    if any(_is_forbidden_control(ch) for ch in name):
        raise CommandError(f"variable name {_show(name)} contains a control character")
    if len(name) > MAX_NAME:
        raise CommandError(f"variable name {_show(name)} is too long: at most {MAX_NAME} characters")
    if name in overrides:
        raise CommandError(f"variable {_show(name)} is given more than once: give each variable once")
    if len(value) > MAX_VALUE:
        raise CommandError(
            f"the value of {_show(name)} is too long ({len(value)} characters): at most {MAX_VALUE} characters"
        )
    if len(overrides) >= MAX_OVERRIDES:
        raise CommandError(f"too many variables: at most {MAX_OVERRIDES} name=value pairs in one command")
    overrides[name] = value


def _is_forbidden_control(ch: str) -> bool:
    return ch not in "\t\n" and unicodedata.category(ch) == "Cc"


def _parse_id(token: str, what: str, example: str) -> int:
    """A BK-JOB id: digits only (no sign, no spaces), 1 ..= 2**63-1, checked before int() sees huge input."""
    if not _DIGITS.fullmatch(token):
        raise CommandError(f"{_show(token)} is not a valid {what}: expected a positive whole number, e.g. {example}")
    digits = token.lstrip("0")
    if not digits:
        raise CommandError(f"{what} must be a positive whole number, not {_show(token)}")
    if len(digits) > len(str(MAX_ID)) or int(digits) > MAX_ID:
        raise CommandError(f"{what} {_show(token)} is too large: at most {MAX_ID}")
    return int(digits)


def _show(token: str) -> str:
    """Quote a token for a message: escape what a person cannot see, and cut what would flood Slack."""
    shown = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in token)
    if len(shown) > _SHOWN_MAX:
        shown = shown[: _SHOWN_MAX - 1] + "…"
    return f'"{shown}"'
