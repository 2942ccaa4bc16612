"""Governance that cannot be sidestepped (issue 12): each attack reproduced over HTTP against the real app, refused."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.app import create_app
from bot.config import load_settings
from bot.core.approvals import plan_changes
from bot.errors import ConfigError
from tests.conftest import APP_CODE, APP_SECRET, BIZ, PLAN, PLAN_VARS, Bot
from tests.fakes import FakeBkJob, FakeSlack

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "bkjob.example.toml"

OPS, DEV = "C0OPS", "C0DEV"
ALICE, BOB, CAROL, GUEST, OUTSIDER, NOMAIL = "U0ALICE", "U0BOB", "U0CAROL", "U0GUEST", "U0OUT", "U0NOMAIL"

POLICY = f"""
[users]
{ALICE} = "alice"

[identity]
email_domains = ["example.com"]

[channels.{DEV}]
bk_biz_id = {BIZ}
allowed_biz = [{BIZ}]

[defaults]
allowed_biz = []
"""

PROFILES = {
    BOB: {"email": "bob@example.com"},
    CAROL: {"email": "carol@example.com"},
    GUEST: {"email": "admin@attacker.example", "is_restricted": True},
    OUTSIDER: {"email": "admin@attacker.example"},
    NOMAIL: {},
}

Start = Callable[..., Awaitable[Bot]]


@pytest.fixture
async def people() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(token="xoxb-test", users=PROFILES) as fake:
        yield fake


@pytest.fixture
async def start(people: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[Start]:
    """Start the bot with a policy text (or file); every bot started is closed at the end."""
    started: list[Bot] = []

    async def _start(policy: str | Path = POLICY, **overrides: str) -> Bot:
        path = policy if isinstance(policy, Path) else tmp_path / f"policy-{len(started)}.toml"
        if not isinstance(policy, Path):
            path.write_text(policy)
        bot = Bot(slack=people, bk=bk, db_path=tmp_path / f"gov-{len(started)}.sqlite3", BKJOB_CONFIG=str(path))
        bot.overrides.update(overrides)
        await bot.start()
        started.append(bot)
        return bot

    yield _start
    for bot in started:
        await bot.close()


def rewrite(bot: Bot, policy: str) -> None:
    """Change the bot's policy file; it takes effect at the next (re)start."""
    Path(bot.overrides["BKJOB_CONFIG"]).write_text(policy)


async def refused(bot: Bot, needle: str, count: int = 1) -> str:
    """The `count`th ephemeral answer containing `needle`; nothing reached BK-JOB."""
    posts = await bot.slack.wait_for_response(lambda r: needle in str(r.body.get("text")), count=count)
    post = posts[count - 1]
    assert post.body.get("response_type") == "ephemeral"
    await bot.idle()
    assert bot.bk.requests("execute_job") == []
    return str(post.body["text"])


# -- 1. fail closed -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["D0DIRECT", "G0NEWPRIVATE", "C0UNLISTED"])
async def test_the_shipped_example_refuses_dms_and_unlisted_channels(start: Start, channel: str) -> None:
    bot = await start(EXAMPLE)
    texts = (f"run {PLAN} --yes --biz {BIZ}", f"run {PLAN} --biz {BIZ}", "status 20001 --biz 3", "history", "pending")
    for count, text in enumerate(texts, start=1):
        await bot.command(text, user="U0123ABC", channel=channel)
        await refused(bot, "allows nothing here", count)
    assert bot.bk.requests() == [] and bot.slack.calls("views.open") == []


async def test_deny_by_default_still_lets_a_listed_channel_launch(start: Start) -> None:
    bot = await start()
    await bot.command(f"run {PLAN} --yes", user=ALICE, channel=DEV)
    (req,) = await bot.bk.wait_for_request("execute_job")
    assert req.body["bk_username"] == "alice"
    await bot.idle()


def test_without_a_policy_file_the_bot_does_not_start_unless_open_mode_is_asked_for(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "s",
        "BK_API_URL": "http://127.0.0.1:9",
        "BK_APP_CODE": APP_CODE,
        "BK_APP_SECRET": APP_SECRET,
        "PUBLIC_URL": "http://127.0.0.1:9",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "no policy file" in done.stderr and "BKJOB_OPEN_MODE=on" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(ConfigError):
        create_app(load_settings({k: v for k, v in env.items() if k != "PATH"}))


async def test_open_mode_is_loud_and_shown_on_healthz(
    people: FakeSlack, bk: FakeBkJob, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)  # no bkjob.toml here
    bot = Bot(slack=people, bk=bk, db_path=tmp_path / "open.sqlite3")  # the harness sets BKJOB_OPEN_MODE=on
    with caplog.at_level(logging.WARNING, logger="bot.app"):
        await bot.start()
    try:
        assert "OPEN MODE" in caplog.text
        assert bot.http is not None
        async with bot.http.get(f"{bot.url}/healthz") as resp:
            assert (await resp.json())["policy"] == "open"
    finally:
        await bot.close()
    governed = await_bot = Bot(slack=people, bk=bk, db_path=tmp_path / "file.sqlite3", BKJOB_CONFIG=str(EXAMPLE))
    await governed.start()
    try:
        assert await_bot.http is not None
        async with await_bot.http.get(f"{governed.url}/healthz") as resp:
            assert (await resp.json())["policy"] == "file"
    finally:
        await governed.close()


# -- 2. identity from e-mail checks the domain ----------------------------------------------------------------------


@pytest.mark.parametrize("user", [GUEST, OUTSIDER])
async def test_an_attacker_domain_email_does_not_run_as_admin(start: Start, user: str) -> None:
    bot = await start(POLICY.replace("[identity]", "[identity]\nservice_account_fallback = false"))
    await bot.command(f"run {PLAN} --yes", user=user, channel=DEV)
    text = await refused(bot, "[users]")
    assert user in text
    assert bot.bk.requests() == []


async def test_a_guest_is_refused_even_with_the_service_account_fallback(start: Start) -> None:
    bot = await start(POLICY.replace("[identity]", "[identity]\nservice_account_fallback = true"))
    await bot.command(f"run {PLAN} --yes", user=GUEST, channel=DEV)
    await refused(bot, "Guest accounts")
    await bot.command(f"run {PLAN} --yes", user=NOMAIL, channel=DEV)  # the opt-in fallback still works for members
    (req,) = await bot.bk.wait_for_request("execute_job")
    assert req.body["bk_username"] == "ops-bot"
    await bot.idle()


async def test_a_failed_profile_read_refuses_never_runs_as_the_service_account(start: Start) -> None:
    bot = await start(POLICY.replace("[identity]", "[identity]\nservice_account_fallback = true"))
    bot.slack.fail_next("users.info", "ratelimited", times=10)
    await bot.command(f"run {PLAN} --yes", user=BOB, channel=DEV)
    text = await refused(bot, "Slack profile")
    assert "ratelimited" in text
    assert bot.bk.requests() == []


# -- 3. no self-approval by a second account ---------------------------------------------------------------------

APPROVALS = f"""
[users]
{ALICE} = "alice"
U0ALICE2 = "alice"
{BOB} = "bob"
U0BOB2 = "bob"
{CAROL} = "carol"

[channels.{OPS}]
bk_biz_id = {BIZ}
allowed_biz = [{BIZ}]
allowed_jobs = [{PLAN}]
approval = true
approvers = ["U0ALICE2", "{BOB}", "U0BOB2", "{CAROL}", "{NOMAIL}"]
min_approvals = 2

[defaults]
allowed_biz = []
"""


async def request_approval(bot: Bot, user: str = ALICE) -> tuple[str, str]:
    """`/bkjob run --yes` in the approval channel; the request's ID and its message's ts."""
    await bot.command(f"run {PLAN} --yes", user=user, channel=OPS)
    await bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("channel") == OPS)
    await bot.idle()
    message = bot.slack.messages(OPS)[-1]
    buttons = next(b for b in message["blocks"] if b.get("type") == "actions")
    return str(buttons["elements"][0]["value"]), str(message["ts"])


async def approve(bot: Bot, approval: tuple[str, str], user: str) -> None:
    from bot.slack.blocks.approvals import APPROVE_ACTION

    resp = await bot.click(APPROVE_ACTION, approval[0], user=user, channel=OPS, message_ts=approval[1])
    assert resp.status == 200


async def test_a_second_account_of_the_requester_cannot_approve(start: Start) -> None:
    bot = await start(APPROVALS)
    approval = await request_approval(bot)
    await approve(bot, approval, "U0ALICE2")
    await refused(bot, "same BK-JOB user as the requester")


async def test_two_accounts_of_one_approver_count_once(start: Start) -> None:
    bot = await start(APPROVALS)
    approval = await request_approval(bot)
    await approve(bot, approval, BOB)
    await bot.idle()
    await approve(bot, approval, "U0BOB2")
    await refused(bot, "counts once")
    await approve(bot, approval, CAROL)
    (req,) = await bot.bk.wait_for_request("execute_job")
    assert req.body["bk_username"] == "alice"
    await bot.idle()


async def test_an_approver_with_no_bk_user_is_refused(start: Start) -> None:
    bot = await start(APPROVALS)
    approval = await request_approval(bot)
    await approve(bot, approval, NOMAIL)
    await refused(bot, "[users]")


# -- 5. policy at every step ---------------------------------------------------------------------------------------


async def test_a_form_opened_before_the_policy_tightened_does_not_launch(start: Start) -> None:
    allowing = POLICY.replace(f"[channels.{DEV}]", f"[channels.{OPS}]")
    bot = await start(allowing)
    view = await bot.open_form()  # `/bkjob run 100` in C0OPS as alice: allowed now
    rewrite(bot, allowing.replace(f"allowed_biz = [{BIZ}]", f"allowed_biz = [{BIZ}]\nallowed_jobs = [101]"))
    await bot.restart()
    status, _ = await bot.submit(view, {})
    assert status == 200
    (told,) = await bot.slack.wait_for_call("chat.postEphemeral")
    assert f"plan {PLAN} is not allowed" in str(told.args.get("text"))
    await bot.idle()
    assert bot.bk.requests("execute_job") == []


async def test_a_request_approved_after_the_plan_was_forbidden_does_not_launch(start: Start, tmp_path: Path) -> None:
    bot = await start(APPROVALS)
    approval = await request_approval(bot)
    rewrite(bot, APPROVALS.replace(f"allowed_jobs = [{PLAN}]", "allowed_jobs = [101]"))
    await bot.restart()
    await approve(bot, approval, BOB)
    await refused(bot, "plan 100 is not allowed")


# -- 6. caps on open approval requests ------------------------------------------------------------------------------

CAPPED = f"""
[users]
{ALICE} = "alice"
{BOB} = "bob"
{CAROL} = "carol"

[channels.{OPS}]
bk_biz_id = {BIZ}
allowed_biz = [{BIZ}]
approval = true
approvers = ["S0ONCALL"]
max_pending_per_person = 3
max_pending = 5

[defaults]
allowed_biz = []
"""


async def test_a_flood_of_approval_requests_is_refused_after_the_caps(start: Start) -> None:
    bot = await start(CAPPED)
    flood = 300
    answers = await asyncio.gather(*(bot.command(f"run {PLAN} --yes", user=ALICE, channel=OPS) for _ in range(flood)))
    assert {resp.status for resp in answers} == {200}
    refusals = await bot.slack.wait_for_response(
        lambda r: "approval requests waiting here" in str(r.body.get("text")), count=flood - 3, timeout=60
    )
    await bot.idle()
    assert "at most 3" in str(refusals[0].body["text"])
    assert len([m for m in bot.slack.messages(OPS) if not m.get("thread_ts")]) == 3  # three requests, three mentions
    # The channel's own cap: two more people, five requests in all.
    for user in (BOB, CAROL):
        for _ in range(2):
            await bot.command(f"run {PLAN} --yes", user=user, channel=OPS)
            await bot.idle()
    full = await bot.slack.wait_for_response(lambda r: "This channel already has" in str(r.body.get("text")), count=2)
    assert len(full) == 2 and "at most 5" in str(full[0].body["text"])  # carol's two: alice 3 + bob 2 fill it
    assert len([m for m in bot.slack.messages(OPS) if not m.get("thread_ts")]) == 5
    assert bot.bk.requests("execute_job") == []


# -- 4. the approval is for the plan as it was requested --------------------------------------------------------------


async def test_a_plan_changed_before_approval_needs_a_fresh_request(start: Start) -> None:
    bot = await start(APPROVALS)
    approval = await request_approval(bot)
    await approve(bot, approval, BOB)  # one of two approvals, for the plan as requested
    await bot.idle()
    changed = [dict(v, value="9.9") if v["name"] == "version" else v for v in PLAN_VARS]
    bot.bk.add_plan(BIZ, PLAN, "Deploy web", changed, [{"name": "step 1"}, {"name": "step 2"}, {"name": "rm -rf"}])
    await approve(bot, approval, CAROL)
    text = await refused(bot, "plan changed in BK-JOB")
    assert "variable `version` changed" in text and "steps" in text
    (note,) = bot.slack.thread(OPS, approval[1])
    assert f"<@{ALICE}>" in note["text"] and "Run the command again" in note["text"]
    await approve(bot, approval, "U0BOB2")  # the request is closed: no approval revives it
    await refused(bot, "already rejected")
    assert bot.bk.requests("execute_job") == []


def test_plan_changes_name_what_changed() -> None:
    before = {"modified": "2026-01-01 00:00:00", "steps": "a", "variables": {"x": "1", "y": "2"}}
    assert plan_changes(before, before) == []
    after = {"modified": "2026-01-02 00:00:00", "steps": "b", "variables": {"x": "1", "z": "3"}}
    assert plan_changes(before, after) == [
        "its steps or their targets changed",
        "variable `y` was removed",
        "variable `z` was added",
        "last changed 2026-01-02 00:00:00",
    ]
