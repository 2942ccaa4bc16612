"""The policy file: parsing, validation messages, merge of channels over [defaults], and refusals."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from bot.app import _announce_policy
from bot.core.policy import ChannelPolicy, Policy, load_policy, parse_duration
from bot.core.presets import PresetRefused, check_locks
from bot.errors import ConfigError
from bot.slack.words import words

EXAMPLE = Path(__file__).resolve().parent.parent / "bkjob.example.toml"


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    """The ConfigError's lines, with the file name checked and stripped."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    lines = str(caught.value).splitlines()
    for line in lines:
        assert line.startswith(f"{path}: "), line
        assert "pydantic" not in line and "https://" not in line, line
    return [line.removeprefix(f"{path}: ") for line in lines]


# -- the example and finding the file --------------------------------------------------------------------------


def test_example_file_validates() -> None:
    policy = load_policy(str(EXAMPLE))
    ops = policy.for_channel("C0OPS")
    assert ops.approval is True
    assert ops.approvers == ("U0AAA", "S0ONCALL")
    assert ops.approval_ttl == timedelta(minutes=30)
    assert ops.allowed_jobs == frozenset({100, 101})
    assert policy.users["U0123ABC"] == "alice"
    staging = policy.for_channel("C0STAGING")
    assert staging.approval is False
    assert staging.approval_ttl == timedelta(hours=1)  # not set in the channel: from [defaults]
    assert policy.for_channel("C0UNLISTED") == policy.defaults
    assert policy.identity.email_domains == ("example.com",)
    assert policy.identity.service_account_fallback is False


def test_example_file_is_deny_by_default() -> None:
    """The shipped example refuses channels it does not name, and DMs, before anything reaches BK-JOB."""
    policy = load_policy(str(EXAMPLE))
    assert policy is not None
    for channel in ("C0UNLISTED", "D0DIRECT", "G0PRIVATE"):
        refused = policy.for_channel(channel).refusal(channel=channel, bk_biz_id=3, bk_job_id=100)
        assert refused is not None and "allows nothing here" in words(refused)
        assert policy.for_channel(channel).read_refusal(channel=channel, bk_biz_id=3) is not None
    dm = policy.for_channel("D0DIRECT").refusal(channel="D0DIRECT", bk_biz_id=3, bk_job_id=1)
    assert dm is not None and words(dm).startswith("Direct messages")


def test_no_path_and_no_file_is_no_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No policy at all is not an empty (allow-all) policy: the app decides whether open mode was asked for."""
    monkeypatch.chdir(tmp_path)
    assert load_policy(None) is None


def test_no_path_reads_bkjob_toml_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, '[users]\nU0ALICE = "alice"\n', name="bkjob.toml")
    monkeypatch.chdir(tmp_path)
    assert load_policy(None).users == {"U0ALICE": "alice"}


def test_no_path_and_a_broken_bkjob_toml_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "[defaults]\napproval = 1\n", name="bkjob.toml")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^bkjob\.toml: defaults\.approval: must be true or false, not 1$"):
        load_policy(None)


def test_a_named_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="nope.toml: policy file not found"):
        load_policy(str(missing))


def test_a_directory_is_not_a_policy_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the policy file"):
        load_policy(str(tmp_path))


def test_identity_keys_are_checked(tmp_path: Path) -> None:
    assert problems(tmp_path, '[identity]\nemail_domains = ["example.com", "not a domain"]\nfallback = true\n') == [
        "identity.email_domains: 'not a domain': not an e-mail domain (write it like \"example.com\")",
        "identity.fallback: is not a known key (known keys: email_domains, service_account_fallback)",
    ]


def test_empty_file_is_an_empty_policy(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "")) == Policy()


# -- bad files ---------------------------------------------------------------------------------------------------


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[users]\nU0ALICE = alice\n")
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 2" in message


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[users]\nU0ALICE = "al\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_policy(str(path))


def test_every_problem_is_one_line_naming_its_key(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        """
        [channels.C0OPS]
        approval_ttl = "45x"
        bk_biz_id = 0
        allowed_jobs = [100, "101"]
        approval = "yes"
        """,
    )
    assert lines == [
        "channels.C0OPS.bk_biz_id: must be at least 1, not 0",
        'channels.C0OPS.allowed_jobs: item 2: must be a whole number, not "101"',
        'channels.C0OPS.approval: must be true or false, not "yes"',
        'channels.C0OPS.approval_ttl: \'45x\' is not a duration; write it like "90s", "30m", "2h", "1h30m" or "1d"',
    ]


def test_unknown_keys_are_errors_with_a_suggestion(tmp_path: Path) -> None:
    assert problems(tmp_path, "[channels.C0OPS]\napprover = ['U0AAA']\n") == [
        "channels.C0OPS.approver: is not a known key (did you mean approvers?)"
    ]
    assert problems(tmp_path, "[default]\napproval = true\n") == [
        "default: is not a known key (did you mean defaults?)"
    ]


def test_approval_without_approvers_is_an_error(tmp_path: Path) -> None:
    assert problems(tmp_path, "[channels.C0OPS]\napproval = true\n") == [
        "channels.C0OPS.approvers: must list at least one approver (user or user-group ID) when approval = true"
    ]
    assert problems(tmp_path, "[defaults]\napproval = true\napprovers = []\n") == [
        "defaults.approvers: must list at least one approver (user or user-group ID) when approval = true"
    ]


def test_approver_ids_must_look_like_slack_ids(tmp_path: Path) -> None:
    assert problems(tmp_path, "[defaults]\napprovers = ['U0AAA', 'alice', '@oncall', 'S0OK', 'W0ENT']\n") == [
        "defaults.approvers: 'alice', '@oncall': not a Slack user ID (U…/W…) or user-group ID (S…)"
    ]
    assert problems(tmp_path, "[defaults]\napprovers = 'U0AAA'\n") == [
        'defaults.approvers: must be a list, not "U0AAA"'
    ]


@pytest.mark.parametrize(
    ("ttl", "wrong"),
    [
        ('"0m"', "must be longer than zero"),
        ('"8d"', 'may be at most 7 days ("7d")'),
        ('"7d1s"', 'may be at most 7 days ("7d")'),
        ('""', "'' is not a duration"),
        ('"30 minutes"', "'30 minutes' is not a duration"),
        ('"PT30M"', "'PT30M' is not a duration"),
        ("30", "must be a duration string"),
    ],
)
def test_bad_approval_ttl(tmp_path: Path, ttl: str, wrong: str) -> None:
    [line] = problems(tmp_path, f"[defaults]\napproval_ttl = {ttl}\n")
    assert line.startswith(f"defaults.approval_ttl: {wrong}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d", timedelta(days=1)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert ChannelPolicy.model_validate({"approval_ttl": text}).approval_ttl == expected


def test_approval_ttl_of_exactly_seven_days_is_allowed() -> None:
    assert ChannelPolicy.model_validate({"approval_ttl": "7d"}).approval_ttl == timedelta(days=7)


def test_min_approvals_rules(tmp_path: Path) -> None:
    assert problems(tmp_path, "[defaults]\nmin_approvals = 0\n") == [
        "defaults.min_approvals: must be at least 1, not 0"
    ]
    assert problems(tmp_path, "[defaults]\napprovers = ['U0A', 'U0B']\nmin_approvals = 3\n") == [
        "defaults.min_approvals: is 3 but only 2 approvers are listed"
    ]
    assert problems(tmp_path, "[defaults]\napprovers = ['U0A']\nmin_approvals = 2\n") == [
        "defaults.min_approvals: is 2 but only 1 approver is listed"
    ]
    # A group may hold any number of people, so this cannot be checked up front.
    ok = ChannelPolicy.model_validate({"approval": True, "approvers": ["U0A", "S0G"], "min_approvals": 3})
    assert ok.min_approvals == 3
    # Without approvers nothing is counted; approval is off.
    assert ChannelPolicy.model_validate({"min_approvals": 2}).min_approvals == 2


def test_duplicate_approvers_count_once(tmp_path: Path) -> None:
    policy = ChannelPolicy.model_validate({"approvers": ["U0A", "U0A", "S0G"]})
    assert policy.approvers == ("U0A", "S0G")
    assert problems(tmp_path, "[defaults]\napprovers = ['U0A', 'U0A']\nmin_approvals = 2\n") == [
        "defaults.min_approvals: is 2 but only 1 approver is listed"
    ]


def test_empty_allowed_lists_deny_and_a_list_must_hold_the_default_business(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "[defaults]\nallowed_biz = []\n[channels.C0JOBS]\nallowed_jobs = []\n"))
    assert policy is not None
    assert policy.for_channel("C0ANY").closed and policy.for_channel("C0JOBS").closed
    assert not ChannelPolicy().closed
    assert problems(tmp_path, "[channels.C0OPS]\nbk_biz_id = 5\nallowed_biz = [3, 4]\n") == [
        "channels.C0OPS.allowed_biz: does not include the channel's default business (bk_biz_id = 5)"
    ]


def test_integers_are_strict(tmp_path: Path) -> None:
    assert problems(tmp_path, "[defaults]\nbk_biz_id = 3.0\n") == [
        "defaults.bk_biz_id: must be a whole number, not 3.0"
    ]
    assert problems(tmp_path, "[defaults]\nbk_biz_id = true\n") == [
        "defaults.bk_biz_id: must be a whole number, not true"
    ]
    assert problems(tmp_path, "[defaults]\nbk_biz_id = '3'\n") == [
        'defaults.bk_biz_id: must be a whole number, not "3"'
    ]


def test_users_keys_and_values_are_checked(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        """
        [users]
        alice = "alice"
        U0BOB = 7
        U0CAROL = "carol smith"
        """,
    )
    assert lines == [
        "users.alice: 'alice' is not a Slack user ID (U… or W…; a person's profile has it under ⋮ → Copy member ID)",
        "users.U0BOB: must be a string, not 7",
        "users.U0CAROL: 'carol smith' is not a BK-JOB username (it must be non-empty, without spaces)",
    ]


def test_channel_keys_and_tables_are_checked(tmp_path: Path) -> None:
    lines = problems(tmp_path, '[channels]\n"#ops" = { approval = false }\nC0OPS = 3\n')
    assert lines == [
        "channels.#ops: '#ops' is not a Slack channel ID (C… or G…; the channel's details show it at the bottom)",
        "channels.C0OPS: must be a table, not 3",
    ]


# -- merge of channels over [defaults] ---------------------------------------------------------------------------


def test_channel_keys_override_defaults_key_by_key(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """
            [channels.C0OPS]
            allowed_jobs = [100]

            [channels.C0QUIET]
            approval = false

            [defaults]
            approval = true
            approvers = ["S0ONCALL"]
            approval_ttl = "2h"
            bk_biz_id = 3
            """,
        )
    )
    ops = policy.for_channel("C0OPS")
    assert (ops.approval, ops.approvers, ops.approval_ttl, ops.bk_biz_id) == (
        True,
        ("S0ONCALL",),
        timedelta(hours=2),
        3,
    )
    assert ops.allowed_jobs == frozenset({100})
    # Set to the built-in default value, yet it still overrides [defaults]: the merge sees the raw tables.
    quiet = policy.for_channel("C0QUIET")
    assert quiet.approval is False
    assert quiet.approval_ttl == timedelta(hours=2)
    assert policy.for_channel("C0OTHER") == policy.defaults
    assert policy.for_channel("C0OTHER").approval is True


def test_channel_without_defaults_table_gets_built_in_defaults(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "[channels.C0OPS]\nbk_biz_id = 9\n"))
    assert policy.for_channel("C0OPS") == ChannelPolicy(bk_biz_id=9)


def test_a_bad_default_is_reported_once_not_per_channel(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        """
        [channels.C0A]
        bk_biz_id = 1
        [channels.C0B]
        bk_biz_id = 2
        [defaults]
        approval_ttl = "soon"
        aproval = true
        """,
    )
    assert lines == [
        'defaults.approval_ttl: \'soon\' is not a duration; write it like "90s", "30m", "2h", "1h30m" or "1d"',
        "defaults.aproval: is not a known key (did you mean approval?)",
    ]


def test_a_problem_only_the_merge_creates_names_the_channel(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        """
        [channels.C0OPS]
        approvers = ["U0A"]
        [defaults]
        min_approvals = 2
        """,
    )
    assert lines == ["channels.C0OPS.min_approvals: is 2 but only 1 approver is listed (taken from [defaults])"]


def test_channel_approval_with_no_approvers_anywhere(tmp_path: Path) -> None:
    lines = problems(tmp_path, "[channels.C0OPS]\napproval = true\n[defaults]\napproval = false\n")
    assert lines == [
        "channels.C0OPS.approvers: must list at least one approver (user or user-group ID) when approval = true"
    ]


def test_policy_built_from_models_keeps_channel_models_as_given() -> None:
    defaults = ChannelPolicy(approval=True, approvers=("U0A",))
    policy = Policy(channels={"C0OPS": ChannelPolicy(bk_biz_id=3)}, defaults=defaults)
    assert policy.for_channel("C0OPS") == ChannelPolicy(bk_biz_id=3)
    merged = Policy.model_validate({"channels": {"C0OPS": {"bk_biz_id": 3}}, "defaults": defaults})
    assert merged.for_channel("C0OPS") == ChannelPolicy(bk_biz_id=3, approval=True, approvers=("U0A",))


def test_models_are_frozen() -> None:
    policy = ChannelPolicy()
    with pytest.raises(ValueError, match="frozen"):
        policy.approval = True  # type: ignore[misc]


# -- refusals ----------------------------------------------------------------------------------------------------


def test_refusal_none_when_allowed() -> None:
    assert ChannelPolicy().refusal(channel="C0OPS", bk_biz_id=7, bk_job_id=1) is None
    policy = ChannelPolicy(allowed_biz=frozenset({3}), allowed_jobs=frozenset({100}))
    assert policy.refusal(channel="C0OPS", bk_biz_id=3, bk_job_id=100) is None


def test_refusal_for_a_business() -> None:
    policy = ChannelPolicy(allowed_biz=frozenset({4, 3}))
    assert words(policy.refusal(channel="C0OPS", bk_biz_id=7, bk_job_id=100)) == (
        "This channel (<#C0OPS>) may launch only in businesses 3, 4; business 7 is not allowed by its policy."
    )
    single = ChannelPolicy(allowed_biz=frozenset({3}))
    assert words(single.refusal(channel="C0OPS", bk_biz_id=7, bk_job_id=100)) == (
        "This channel (<#C0OPS>) may launch only in business 3; business 7 is not allowed by its policy."
    )


def test_refusal_for_a_plan() -> None:
    policy = ChannelPolicy(allowed_jobs=frozenset({101, 100}))
    assert words(policy.refusal(channel="C0OPS", bk_biz_id=3, bk_job_id=102)) == (
        "This channel (<#C0OPS>) may launch only plans 100, 101; plan 102 is not allowed by its policy."
    )
    single = ChannelPolicy(allowed_jobs=frozenset({100}))
    assert words(single.refusal(channel="C0DEV", bk_biz_id=3, bk_job_id=102)) == (
        "This channel (<#C0DEV>) may launch only plan 100; plan 102 is not allowed by its policy."
    )


def test_refusal_from_the_example_channels() -> None:
    policy = load_policy(str(EXAMPLE))
    assert policy.for_channel("C0OPS").refusal(channel="C0OPS", bk_biz_id=3, bk_job_id=100) is None
    refused = policy.for_channel("C0STAGING").refusal(channel="C0STAGING", bk_biz_id=3, bk_job_id=100)
    assert refused is not None and "<#C0STAGING>" in words(refused) and "businesses 4, 5" in words(refused)


# -- [operators]: who may control a launch's run (issue 15) -------------------------------------------------------


def test_operators_default_to_the_requester_and_the_approvers_and_the_example_names_them() -> None:
    assert ChannelPolicy().operators.stop == ("requester", "approvers")
    assert ChannelPolicy(approval=True, approvers=("U0AAA",)).rerun_needs_approval is True
    ops = load_policy(str(EXAMPLE)).for_channel("C0OPS")  # type: ignore[union-attr]
    assert ops.operators.retry == ("requester", "approvers", "S0ONCALL")
    assert ops.operators.ignore == ("approvers",)


def test_operators_are_checked(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        """
[channels.C0OPS.operators]
stop = ["alice", "requester"]
rerun_approval = true
""",
    )
    assert any("channels.C0OPS.operators.stop" in line and "'alice'" in line for line in lines), lines
    typo = problems(tmp_path, "[defaults.operators]\nretyr = []\n")
    assert typo == ["defaults.operators.retyr: is not a known key (did you mean retry?)"], typo


def test_the_bot_warns_when_a_channels_operators_leave_out_a_key_the_defaults_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A channel's own [operators] table replaces [defaults]'s (keys it leaves out take the built-in defaults, not
    [defaults]'s): kept as it is, and said at start wherever [defaults.operators] sets a key the channel leaves out."""
    policy = load_policy(
        write(
            tmp_path,
            """
[channels.C0OPS]
approvers = ["U0BOB"]

[channels.C0OPS.operators]
retry = ["approvers"]

[channels.C0DEV]
approvers = ["U0BOB"]

[defaults.operators]
confirm = ["S0ONCALL"]
stop = ["approvers"]
""",
        )
    )
    assert policy is not None
    ops, dev = policy.for_channel("C0OPS").operators, policy.for_channel("C0DEV").operators
    assert ops.confirm == ("requester", "approvers") and ops.stop == ("requester", "approvers")
    assert dev.confirm == ("S0ONCALL",) and dev.stop == ("approvers",)  # no table of its own: [defaults]'s
    assert policy.operators_left_out() == {"C0OPS": ("confirm", "stop")}
    with caplog.at_level(logging.WARNING, logger="bot.app"):
        _announce_policy(policy)
    (line,) = [r.getMessage() for r in caplog.records if "[channels.C0OPS.operators]" in r.getMessage()]
    assert "leaves out confirm, stop" in line and "C0DEV" not in caplog.text
    assert Policy().operators_left_out() == {} and load_policy(str(EXAMPLE)).operators_left_out() == {}  # type: ignore[union-attr]


def test_a_rerun_approval_needs_approvers(tmp_path: Path) -> None:
    lines = problems(tmp_path, "[channels.C0OPS.operators]\nrerun_approval = true\n")
    assert any("rerun_approval = true needs the channel's approvers" in line for line in lines), lines
    policy = Policy.model_validate(
        {"channels": {"C0OPS": {"approvers": ["U0BOB"], "operators": {"rerun_approval": True}}}}
    )
    assert policy.for_channel("C0OPS").rerun_needs_approval is True


def test_log_keys_are_checked(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '[channels.C0OPS]\nlogs = "everything"\nlog_viewers = ["alice"]\n\n[defaults]\nsecret_vars = "token"\n',
    )
    assert any(p.startswith("channels.C0OPS.logs:") and "'none', 'digest' or 'full'" in p for p in found)
    assert any(p.startswith("channels.C0OPS.log_viewers:") and "'alice'" in p for p in found)
    assert any(p.startswith("defaults.secret_vars:") for p in found)


def test_logs_default_to_a_digest_for_anyone_who_may_launch(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, '[channels.C0OPS]\nlogs = "full"\n\n[defaults]\nlog_viewers = ["S0ONCALL"]\n'))
    assert policy.for_channel("C0OTHER").logs == "digest" and policy.for_channel("C0OTHER").log_viewers == ("S0ONCALL",)
    assert policy.for_channel("C0OPS").logs == "full" and policy.for_channel("C0OPS").log_viewers == ("S0ONCALL",)
    assert Policy().for_channel("C0X").log_viewers is None


def test_a_presets_locks_bind_its_plan_where_it_may_be_used_and_name_every_preset() -> None:
    policy = Policy.model_validate(
        {
            "channels": {"C0DEV": {"allowed_jobs": [7]}},
            "presets": {
                "web": {"plan": 7, "bk_biz_id": 3, "values": {"env": "prod"}, "locked": ["env"]},
                "web-eu": {"plan": 7, "bk_biz_id": 3, "values": {"env": "prod", "region": "eu"}, "locked": ["env"]},
                "ops-only": {"plan": 7, "bk_biz_id": 3, "values": {"x": "1"}, "locked": ["x"], "channels": ["C0OPS"]},
                "open": {"plan": 7, "bk_biz_id": 3, "values": {"env": "dev"}},
            },
        }
    )
    applying = policy.presets_locking("C0DEV", 3, 7)
    assert [name for name, _ in applying] == ["web", "web-eu"]  # ops-only is not offered here; open locks nothing
    assert [name for name, _ in policy.presets_locking("C0OPS", 3, 7)] == ["ops-only", "web", "web-eu"]
    assert policy.presets_locking("C0DEV", 3, 8) == [] and policy.presets_locking("C0DEV", 4, 7) == []
    check_locks(7, applying, {"env": "prod", "x": "2"})  # kept: nothing to refuse
    with pytest.raises(PresetRefused) as refused:
        check_locks(7, applying, {"env": "dev"})
    text = words(refused.value.reason)
    assert "`env` (always `prod`, locked by preset `web`, `web-eu`)" in text and "plan 7" in text
