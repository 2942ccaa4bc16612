"""Tests for parsing `/bkjob ...` text into commands."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.slack.commands import (
    MAX_NAME,
    MAX_OVERRIDES,
    MAX_TEXT,
    MAX_VALUE,
    USAGE,
    Command,
    HelpCommand,
    HistoryCommand,
    PendingCommand,
    PlansCommand,
    RetryCommand,
    RunCommand,
    StatusCommand,
    StopCommand,
    parse_command,
)
from bot.slack.errors import CommandError

MAX_LONG = 2**63 - 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", HelpCommand()),
        ("   \n\t ", HelpCommand()),
        ("help", HelpCommand()),
        ("HELP", HelpCommand()),
        ("help run", HelpCommand()),
        ("launch 5", HelpCommand(unknown="launch")),
        ("Launch", HelpCommand(unknown="Launch")),
        ("pending", PendingCommand()),
        ("Pending", PendingCommand()),
        ("history", HistoryCommand(limit=10)),
        ("history 1", HistoryCommand(limit=1)),
        ("history 50", HistoryCommand(limit=50)),
        ("status 20001", StatusCommand(job_instance_id=20001, biz_id=None)),
        ("status 20001 --biz 3", StatusCommand(job_instance_id=20001, biz_id=3)),
        ("status --biz=3 20001", StatusCommand(job_instance_id=20001, biz_id=3)),
        ("run 42", RunCommand(job_id=42, biz_id=None, confirm=False, overrides={})),
        ("RUN 42", RunCommand(job_id=42)),
        ("run 42 --yes", RunCommand(job_id=42, confirm=True)),
        ("run 42 -y", RunCommand(job_id=42, confirm=True)),
        ("run --yes 42 --yes", RunCommand(job_id=42, confirm=True)),
        ("run 42 --biz 3", RunCommand(job_id=42, biz_id=3)),
        ("run 42 --biz=3", RunCommand(job_id=42, biz_id=3)),
        ("run --biz 3 42", RunCommand(job_id=42, biz_id=3)),
        ("run 42 --BIZ 3", RunCommand(job_id=42, biz_id=3)),
        ("run 007", RunCommand(job_id=7)),
        (f"run {MAX_LONG} --biz {MAX_LONG}", RunCommand(job_id=MAX_LONG, biz_id=MAX_LONG)),
        ("run 42 msg=hi", RunCommand(job_id=42, overrides={"msg": "hi"})),
        ('run 42 "msg=hello world"', RunCommand(job_id=42, overrides={"msg": "hello world"})),
        ("run 42 msg='a b'", RunCommand(job_id=42, overrides={"msg": "a b"})),
        ('run 42 msg="a b"', RunCommand(job_id=42, overrides={"msg": "a b"})),
        ("run 42 msg=", RunCommand(job_id=42, overrides={"msg": ""})),
        ("run 42 q=a=b==", RunCommand(job_id=42, overrides={"q": "a=b=="})),
        ("run 42 msg=#not-a-comment", RunCommand(job_id=42, overrides={"msg": "#not-a-comment"})),
        ("run 42 变量=值", RunCommand(job_id=42, overrides={"变量": "值"})),
        # Smart quotes from Slack on macOS/iOS, and the em dash it makes of "--".
        ("run 42 “msg=hello world”", RunCommand(job_id=42, overrides={"msg": "hello world"})),
        ("run 42 msg=‘a b’", RunCommand(job_id=42, overrides={"msg": "a b"})),
        ('run 42 "msg=don’t"', RunCommand(job_id=42, overrides={"msg": "don't"})),
        ("run 42 —yes —biz 3", RunCommand(job_id=42, biz_id=3, confirm=True)),
        # Values keep their characters: newlines separate hosts, tabs and control chars pass through.
        (
            'run 42 "hosts=10.0.0.1\n10.0.0.2" "t=a\tb\x01"',
            RunCommand(job_id=42, overrides={"hosts": "10.0.0.1\n10.0.0.2", "t": "a\tb\x01"}),
        ),
        ("run 42 -x=1", RunCommand(job_id=42, overrides={"-x": "1"})),
        # Without a job id: the plan picker, a search, or a preset's name (the policy tells which).
        ("run", RunCommand()),
        ("run --biz 3", RunCommand(biz_id=3)),
        ("run deploy web", RunCommand(words=("deploy", "web"))),
        ("run abc", RunCommand(words=("abc",))),
        ("run deploy 42", RunCommand(words=("deploy", "42"))),
        (
            "run deploy-web --yes version=2.1",
            RunCommand(words=("deploy-web",), confirm=True, overrides={"version": "2.1"}),
        ),
        ("plans", PlansCommand()),
        ("plans deploy web --biz 3", PlansCommand(words=("deploy", "web"), biz_id=3)),
        ('run 42 "a\tb=1"', RunCommand(job_id=42, overrides={"a\tb": "1"})),
    ],
)
def test_parses(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


def test_overrides_keep_their_order_and_are_read_only() -> None:
    command = parse_command("run 42 b=2 --yes a=1 c=3")
    assert isinstance(command, RunCommand)
    assert list(command.overrides.items()) == [("b", "2"), ("a", "1"), ("c", "3")]
    with pytest.raises(TypeError):
        command.overrides["d"] = "4"  # type: ignore[index]


def test_run_command_copies_the_callers_dict() -> None:
    overrides = {"a": "1"}
    command = RunCommand(job_id=1, overrides=overrides)
    overrides["b"] = "2"
    assert dict(command.overrides) == {"a": "1"}
    assert hash(command) == hash(RunCommand(job_id=1, overrides={"a": "1"}))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('run 42 "msg=hello', 'unclosed quote: a " opened near "msg=hello" is never closed'),
        ("run 42 msg='hello", 'unclosed quote: a \' opened near "msg=hello" is never closed'),
        ("run 42 msg=don’t", "an apostrophe counts as a quote"),
        ("run 42 “msg=hello", "unclosed quote"),
        ("run 42 msg=a\\", "ends with a lone backslash"),
        ("run --yes msg=x", "missing job id: --yes and name=value need a plan"),
        ("run --yes", "missing job id"),
        ("run msg=x", "missing job id"),
        ("run 42 --yes web", '"web" is not a variable'),
        ("run " + " ".join(["w"] * 9), "too many words to search for"),
        ('run "ab"', "contains a control character"),
        ("run -5", '"-5" is not a valid job id: expected a positive whole number'),
        ("run +5", '"+5" is not a valid job id'),
        ("run 4.2", '"4.2" is not a valid job id'),
        ("run ４２", '"４２" is not a valid job id'),
        ("run 0", 'job id must be a positive whole number, not "0"'),
        ("run 000", 'job id must be a positive whole number, not "000"'),
        (f"run {MAX_LONG + 1}", f'job id "{MAX_LONG + 1}" is too large: at most {MAX_LONG}'),
        ("run " + "9" * 5000, "is too large: at most"),
        ("run 42 --biz", "--biz needs a value, e.g. --biz 3"),
        ("run 42 --biz=", "--biz needs a value"),
        ("run 42 --biz --yes", "--biz needs a value"),
        ("run 42 --biz -y", "--biz needs a value"),
        ("run 42 --biz x", '"x" is not a valid business id: expected a positive whole number'),
        ("run 42 --biz 0", 'business id must be a positive whole number, not "0"'),
        ("run 42 --biz -3", '"-3" is not a valid business id'),
        (f"run 42 --biz {MAX_LONG + 1}", "business id"),
        ("run 42 --biz 3 --biz 3", "--biz is given more than once: give the business id once"),
        ("run 42 --biz=3 --biz 4", "--biz is given more than once"),
        ("run 42 --force", 'unknown option "--force": valid options are --biz <biz_id>, --yes (or -y)'),
        ("run 42 -f", 'unknown option "-f": valid options are'),
        ("run 42 --", 'unknown option "--"'),
        ("run 42 --yes=1", "--yes takes no value: write just --yes"),
        ("run 42 =x", '"=x" has no variable name before the =: write name=value'),
        ("run 42 =", '"=" has no variable name'),
        ("run 42 a=1 b=2 a=3", 'variable "a" is given more than once: give each variable once'),
        ("run 42 msg", '"msg" is not a variable: write name=value, and quote values with spaces'),
        ("run 42 msg=hello world", '"world" is not a variable: write name=value'),
        ('run 42 "a\x01b=1"', 'variable name "a\\x01b" contains a control character'),
        ('run 42 "a\rb=1"', 'variable name "a\\rb" contains a control character'),
        ('run 42 "a\x00=1"', "contains a control character"),
        ("history 0", 'history takes a number from 1 to 50, but got "0"'),
        ("history 51", 'history takes a number from 1 to 50, but got "51"'),
        ("history -1", "history takes a number from 1 to 50"),
        ("history ten", 'history takes a number from 1 to 50, but got "ten"'),
        ("history 5 6", 'history takes at most one number, but got "6" as well'),
        ("pending now", 'pending takes no arguments, but got "now"'),
        ("status", "missing job instance id: write /bkjob status <job_instance_id>"),
        ("status --biz 3", "missing job instance id"),
        ("status x", '"x" is not a valid job instance id'),
        ("status 5 6", 'unexpected "6": write /bkjob status <job_instance_id> [--biz <biz_id>]'),
        ("status 5 a=1", 'unexpected "a=1"'),
        ("status 5 --yes", 'unknown option "--yes": valid options are --biz <biz_id>'),
        ("status 5 --biz 1 --biz 2", "--biz is given more than once"),
    ],
)
def test_rejects(text: str, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    assert message in str(caught.value)


def test_messages_cut_long_tokens() -> None:
    with pytest.raises(CommandError) as caught:
        parse_command("run " + "x" * 5000)
    assert len(str(caught.value)) < 200
    assert "…" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "run 1 " + "x" * MAX_TEXT,
            f"the command is too long ({MAX_TEXT + 6} characters): at most {MAX_TEXT}",
        ),
        (" " * (MAX_TEXT + 1), "the command is too long"),
        ("run 1 " + "n" * (MAX_NAME + 1) + "=v", f"is too long: at most {MAX_NAME} characters"),
        ("run 1 a=" + "v" * (MAX_VALUE + 1), f'the value of "a" is too long ({MAX_VALUE + 1} characters)'),
        (
            "run 1 " + " ".join(f"v{i}=" for i in range(MAX_OVERRIDES + 1)),
            f"too many variables: at most {MAX_OVERRIDES} name=value pairs",
        ),
    ],
)
def test_limits(text: str, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    assert message in str(caught.value)


def test_limits_are_inclusive() -> None:
    name, value = "n" * MAX_NAME, "v" * MAX_VALUE
    command = parse_command(f"run 1 {name}={value}")
    assert command == RunCommand(job_id=1, overrides={name: value})
    many = parse_command("run 1 " + " ".join(f"v{i}=" for i in range(MAX_OVERRIDES)))
    assert isinstance(many, RunCommand) and len(many.overrides) == MAX_OVERRIDES
    padded = "run 1" + " " * (MAX_TEXT - 5)
    assert parse_command(padded) == RunCommand(job_id=1)


def test_usage_lists_every_form() -> None:
    for form in ("/bkjob run", "--biz", "--yes", "name=value", "/bkjob status", "/bkjob history", "pending"):
        assert form in USAGE
    assert "2:10.0.0.1" in USAGE and "group:" in USAGE and "module:" in USAGE


@settings(deadline=None)
@given(st.text() | st.text(min_size=MAX_TEXT - 10, max_size=MAX_TEXT + 10))
def test_any_text_parses_or_raises_command_error(text: str) -> None:
    try:
        result = parse_command(text)
    except CommandError as exc:
        assert str(exc)
    else:
        assert isinstance(result, RunCommand | HelpCommand | PendingCommand | HistoryCommand | StatusCommand)


@settings(deadline=None)
@given(st.lists(st.sampled_from(["run", "1", "--biz", "--biz=2", "-y", "a=", "=", "'", '"', "“", "x"]), max_size=8))
def test_shaped_text_parses_or_raises_command_error(words: list[str]) -> None:
    try:
        parse_command(" ".join(words))
    except CommandError:
        pass


_names = st.text(min_size=1, max_size=20).filter(
    lambda name: (
        "=" not in name
        and not name.startswith("--")
        and name not in ("-y", "-Y")
        and not name.startswith(("\u2014", "\u2013"))
        and not any(ch not in "\t\n" and (ord(ch) < 32 or 127 <= ord(ch) < 160) for ch in name)
    )
)
# Smart quotes are always read as ASCII quotes, so a value holding one cannot survive the trip.
_values = st.text(max_size=40).filter(lambda value: not set(value) & set("“”‘’"))
_names = _names.filter(lambda name: not set(name) & set("“”‘’"))


@settings(deadline=None)
@given(
    job_id=st.integers(1, MAX_LONG),
    biz_id=st.none() | st.integers(1, MAX_LONG),
    confirm=st.booleans(),
    overrides=st.dictionaries(_names, _values, max_size=8),
    biz_first=st.booleans(),
)
def test_round_trip(job_id: int, biz_id: int | None, confirm: bool, overrides: dict[str, str], biz_first: bool) -> None:
    command = RunCommand(job_id=job_id, biz_id=biz_id, confirm=confirm, overrides=overrides)
    options = (["--biz", str(biz_id)] if biz_id is not None else []) + (["--yes"] if confirm else [])
    pairs = [f"{name}={value}" for name, value in overrides.items()]
    words = ["run", *options, str(job_id), *pairs] if biz_first else ["run", str(job_id), *pairs, *options]
    parsed = parse_command(shlex.join(words))
    assert parsed == command
    assert isinstance(parsed, RunCommand)
    assert list(parsed.overrides.items()) == list(overrides.items())


# -- stop and retry (run control, issue 15) -------------------------------------------------------------------------


def test_stop_and_retry_take_one_instance_id() -> None:
    assert parse_command("stop 20001") == StopCommand(20001)
    assert parse_command("RETRY 20001") == RetryCommand(20001)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("stop", "missing job instance id: write /bkjob stop <job_instance_id>"),
        ("retry abc", '"abc" is not a valid job instance id'),
        ("stop 1 2", 'stop takes one job instance id, but got "2" as well'),
        ("retry 0", "job instance id must be a positive whole number"),
    ],
)
def test_stop_and_retry_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    assert problem in str(caught.value)
