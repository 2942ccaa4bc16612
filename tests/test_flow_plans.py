"""End to end: finding a plan by name (the form's picker and Slack's options requests), presets with locked
variables, and `/bkjob plans`, over HTTP against the real app and the fakes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.slack.blocks.finder import PLAN_PICKER_ACTION, PLAN_PICKER_BLOCK, RUN_PLAN_ACTION
from tests.conftest import BIZ, CHANNEL, PLAN, PLAN_VARS, USER, Bot
from tests.fakes import FakeBkJob, FakeSlack

OTHER_CHANNEL = "C0LOCKED"
POLICY = f"""
[users]
{USER} = "alice"
U0SOMEONE = "someone"

[channels.{OTHER_CHANNEL}]
bk_biz_id = {BIZ}
allowed_jobs = [{PLAN}, 201]

[presets.deploy-web]
plan = {PLAN}
bk_biz_id = {BIZ}
description = "Deploy the web tier to production"
values = {{ version = "2.0", env = "prod" }}
locked = ["env"]

[presets.nightly-report]
plan = 202
bk_biz_id = {BIZ}
channels = ["{CHANNEL}"]
"""


@pytest.fixture
async def pbot(slack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[Bot]:
    """The bot with a policy file of presets, and a business with a handful of plans."""
    for job_id, name in {201: "Deploy API", 202: "Nightly report", 203: "Rollback web", 204: "Clean temp"}.items():
        bk.add_plan(BIZ, job_id, name, steps=[{"name": "one"}])
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    instance = Bot(slack=slack, bk=bk, db_path=tmp_path / "plans.sqlite3", BKJOB_CONFIG=str(policy))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


async def post_payload(bot: Bot, payload: Mapping[str, Any]) -> tuple[int, Any]:
    """A signed interactivity request, as Slack sends it to the Request URL (or the Options Load URL)."""
    body = urlencode({"payload": json.dumps(payload)})
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": bot.signer.generate_signature(timestamp=ts, body=body),
    }
    assert bot.http is not None
    async with bot.http.post(f"{bot.url}/slack/events", data=body.encode(), headers=headers) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None)


async def suggest(bot: Bot, view: Mapping[str, Any], typed: str, *, user: str = USER) -> dict[str, Any]:
    """Slack's block_suggestion for the picker in `view`: what the bot offers for `typed`."""
    payload = {
        "type": "block_suggestion",
        "user": {"id": user, "username": user.lower(), "team_id": "T0TEAM"},
        "team": {"id": "T0TEAM", "domain": "example"},
        "api_app_id": "A0BKJOB",
        "token": "legacy-verification-token",
        "container": {"type": "view", "view_id": view["id"]},
        "action_id": PLAN_PICKER_ACTION,
        "block_id": PLAN_PICKER_BLOCK,
        "value": typed,
        "view": view,
    }
    status, answer = await post_payload(bot, payload)
    assert status == 200 and isinstance(answer, dict), (status, answer)
    return answer


def offered(answer: Mapping[str, Any]) -> list[str]:
    """Option values in the order Slack would show them, across groups."""
    groups = answer.get("option_groups") or [{"options": answer.get("options", [])}]
    return [option["value"] for group in groups for option in group["options"]]


async def pick(bot: Bot, view: Mapping[str, Any], value: str, *, user: str = USER) -> dict[str, Any]:
    """Choose `value` in the picker (block_actions from a modal: no response_url); returns the updated form."""
    before = len(bot.slack.calls("views.update"))
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0TEAM"},
        "team": {"id": "T0TEAM", "domain": "example"},
        "api_app_id": "A0BKJOB",
        "token": "legacy-verification-token",
        "container": {"type": "view", "view_id": view["id"]},
        "trigger_id": bot.slack.new_trigger_id(),
        "view": view,
        "actions": [
            {
                "type": "external_select",
                "action_id": PLAN_PICKER_ACTION,
                "block_id": PLAN_PICKER_BLOCK,
                "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value},
                "action_ts": str(time.time()),
            }
        ],
    }
    status, _ = await post_payload(bot, payload)
    assert status == 200
    calls = await bot.slack.wait_for_call("views.update", count=before + 1)
    updated = bot.slack.view(calls[-1].args["view_id"])
    assert updated is not None
    return updated


def inputs(view: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["element"]["action_id"]: b for b in view["blocks"] if b["type"] == "input"}


def has_picker(view: Mapping[str, Any]) -> bool:
    return any(b.get("block_id") == PLAN_PICKER_BLOCK for b in view["blocks"])


# -- the picker ---------------------------------------------------------------------------------------------


async def test_run_without_a_plan_opens_the_picker_and_offers_plans_as_the_person_types(pbot: Bot) -> None:
    view = await pbot.open_form("run")
    assert has_picker(view) and view.get("submit") is None  # nothing to launch until a plan is chosen
    (picker,) = [b for b in view["blocks"] if b.get("block_id") == PLAN_PICKER_BLOCK]
    assert picker["elements"][0]["type"] == "external_select"
    assert picker["elements"][0]["min_query_length"] == 0

    everything = await suggest(pbot, view, "")
    assert set(offered(everything)) >= {"plan:100", "plan:201", "plan:202", "plan:203", "plan:204"}
    assert "preset:deploy-web" in offered(everything)

    deploy = await suggest(pbot, view, "DEPLOY")
    assert offered(deploy) == ["preset:deploy-web", "plan:201", "plan:100"]  # presets first, then newest plans
    assert [g["label"]["text"] for g in deploy["option_groups"]] == ["Presets", "Plans"]
    two_words = await suggest(pbot, view, "web deploy")
    assert offered(two_words) == ["preset:deploy-web", "plan:100"]
    assert offered(await suggest(pbot, view, "203")) == ["plan:203"]  # an ID finds its plan
    assert offered(await suggest(pbot, view, "no such plan")) == []
    # One read of the plan list served every keystroke (a page, then the empty page that ends it).
    assert [r.body["start"] for r in pbot.bk.requests("get_job_list")] == [0, 1000]


async def test_the_picker_offers_only_what_the_channels_policy_allows(pbot: Bot) -> None:
    await pbot.command("run", channel=OTHER_CHANNEL)
    (update,) = await pbot.slack.wait_for_call("views.update")
    view = pbot.slack.view(update.args["view_id"])
    assert view is not None
    answer = await suggest(pbot, view, "")
    # allowed_jobs = [100, 201]; the preset of plan 202 is for another channel.
    assert sorted(offered(answer)) == ["plan:100", "plan:201", "preset:deploy-web"]


async def test_the_persons_recent_plans_come_first(pbot: Bot) -> None:
    for plan_id in (203, 201):
        await pbot.command(f"run {plan_id} --yes")
        await pbot.bk.wait_for_request("execute_job", predicate=lambda r, p=plan_id: r.body["bk_job_id"] == p)
        await pbot.idle()
    await pbot.command("run 204 --yes", user="U0SOMEONE")  # someone else's launch is not Alice's recent plan
    await pbot.idle()
    view = await pbot.open_form("run")
    answer = await suggest(pbot, view, "")
    groups = {g["label"]["text"]: [o["value"] for o in g["options"]] for g in answer["option_groups"]}
    assert groups["Your recent plans"] == ["plan:201", "plan:203"]
    assert list(groups) == ["Presets", "Your recent plans", "Plans"]
    assert "plan:201" not in groups["Plans"] and "plan:204" in groups["Plans"]


async def test_a_slow_bk_job_never_makes_slack_wait_past_its_deadline(
    slack: FakeSlack, bk: FakeBkJob, tmp_path: Path
) -> None:
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    bot = Bot(slack=slack, bk=bk, db_path=tmp_path / "slow.sqlite3", BKJOB_CONFIG=str(policy), BK_TIMEOUT="10")
    await bot.start()
    try:
        bk.delay_next("get_job_list", 3)  # longer than Slack waits for options, shorter than the bot's time-out
        view = await bot.open_form("run")  # opening the picker starts reading the list; BK-JOB sits on it
        answer = await suggest(bot, view, "deploy")
        # Answered within the options budget, from what is known (presets) and a notice, not silence.
        assert offered(answer) == ["preset:deploy-web", "none:"]
        assert "Still reading the plans from BK-JOB" in json.dumps(answer)
        await bot.idle()  # the load went on in the background
        assert offered(await suggest(bot, view, "deploy")) == ["preset:deploy-web", "plan:100"]
        # Keystrokes never started a second load (a page, then the empty page that ends it).
        assert [r.body["start"] for r in bk.requests("get_job_list")] == [0, 1000]
    finally:
        await bot.close()


async def test_a_person_bk_job_does_not_let_list_plans_is_told_why(pbot: Bot) -> None:
    pbot.bk.deny_user("alice", "access_business")
    await pbot.command("plans")
    (post,) = await pbot.slack.wait_for_response()
    assert "9900403" in json.dumps(post.body)
    view = await pbot.open_form("run")
    answer = await suggest(pbot, view, "")
    assert offered(answer)[-1] == "none:" and "9900403" in json.dumps(answer)
    # Refused once, not asked again for every keystroke.
    await suggest(pbot, view, "dep")
    assert len(pbot.bk.requests("get_job_list")) == 1


async def test_a_foreign_picker_gets_no_options(pbot: Bot) -> None:
    view = await pbot.open_form("run")
    assert offered(await suggest(pbot, view, "", user="U0MALLORY")) == []
    tampered = {**view, "private_metadata": view["private_metadata"][:-1] + "0"}
    assert offered(await suggest(pbot, tampered, "")) == []


async def test_choosing_a_plan_fills_the_same_form_and_launches_it(pbot: Bot) -> None:
    view = await pbot.open_form("run")
    form = await pick(pbot, view, "plan:100")
    assert form["id"] == view["id"] and has_picker(form)  # the same modal, updated in place
    (update,) = [c for c in pbot.slack.calls("views.update") if c.args["view_id"] == view["id"]][-1:]
    assert update.args.get("hash") == view["hash"]  # views.update with the hash the pick was made on
    assert form["title"]["text"] == "Deploy web" and form["submit"]["text"] == "Launch"
    assert list(inputs(form)) == ["servers", "version", "env", "ports"]
    status, answer = await pbot.submit(form, {"version": "9.9"})
    assert (status, answer) == (200, None)
    (req,) = await pbot.bk.wait_for_request("execute_job")
    assert req.body["bk_job_id"] == PLAN and req.body["bk_biz_id"] == BIZ
    assert req.body["global_vars"] == [{"id": 437, "value": "9.9"}]


async def test_choosing_a_plan_the_channel_may_not_run_is_refused_in_the_form(pbot: Bot) -> None:
    await pbot.command("run", channel=OTHER_CHANNEL)
    (update,) = await pbot.slack.wait_for_call("views.update")
    view = pbot.slack.view(update.args["view_id"])
    assert view is not None
    form = await pick(pbot, view, "plan:204")  # not offered here, but a crafted pick must not pass either
    shown = json.dumps(form)
    assert "may launch only" in shown and has_picker(form) and form.get("submit") is None
    assert pbot.bk.requests("get_job_detail") == []


async def test_words_on_the_command_line_fill_the_form_when_one_plan_matches(pbot: Bot) -> None:
    form = await pbot.open_form("run rollback")
    assert form["title"]["text"] == "Rollback web" and has_picker(form)
    await pbot.command("run deploy")
    calls = await pbot.slack.wait_for_call("views.update", count=2)
    many = pbot.slack.view(calls[-1].args["view_id"])
    assert many is not None
    assert many.get("submit") is None and "match *deploy*" in json.dumps(many)
    # The menu starts from the words typed on the command line.
    assert offered(await suggest(pbot, many, "")) == ["preset:deploy-web", "plan:201", "plan:100"]


# -- presets --------------------------------------------------------------------------------------------------


async def test_a_preset_opens_its_plan_with_its_values_and_locked_variables_read_only(pbot: Bot) -> None:
    form = await pbot.open_form("run deploy-web")
    fields = inputs(form)
    assert "env" not in fields  # locked: shown, not editable
    assert fields["version"]["element"]["initial_value"] == "2.0"  # the preset's value, still editable
    shown = json.dumps(form)
    assert "Preset *deploy-web*" in shown and ":lock: *env*" in shown and "`prod`" in shown
    status, answer = await pbot.submit(form, {"version": "2.1"})
    assert (status, answer) == (200, None)
    (req,) = await pbot.bk.wait_for_request("execute_job")
    sent = {v["id"]: v["value"] for v in req.body["global_vars"]}
    assert sent == {437: "2.1"}  # env = prod is the plan's own default, so it is not sent


async def test_a_locked_variable_cannot_be_overridden_on_the_command_line(pbot: Bot) -> None:
    await pbot.command("run deploy-web --yes env=dev")
    (post,) = await pbot.slack.wait_for_response()
    assert "locks `env` (always `prod`)" in post.body["text"]
    assert pbot.bk.requests() == []


async def test_a_preset_launches_at_once_with_yes_and_an_override(pbot: Bot) -> None:
    await pbot.command("run deploy-web --yes version=2.1")
    (req,) = await pbot.bk.wait_for_request("execute_job")
    assert req.body["bk_job_id"] == PLAN and req.body["global_vars"] == [{"id": 437, "value": "2.1"}]


async def test_a_forged_locked_field_in_a_preset_form_is_refused(pbot: Bot) -> None:
    form = await pbot.open_form("run deploy-web")
    env = next(v for v in PLAN_VARS if v["name"] == "env")
    block = {
        "type": "input",
        "block_id": f"var:2:id:{env['id']}",
        "element": {"type": "plain_text_input", "action_id": "env"},
    }
    status, answer = await pbot.submit({**form, "blocks": [*form["blocks"], block]}, {"env": "dev"})
    assert status == 200 and answer["response_action"] == "update"
    assert "locks `env`" in json.dumps(answer["view"])
    assert pbot.bk.requests("execute_job") == []


async def test_a_preset_cannot_widen_what_the_channel_allows(pbot: Bot) -> None:
    await pbot.command("run nightly-report", channel=OTHER_CHANNEL)  # named for another channel
    (post,) = await pbot.slack.wait_for_response()
    assert "not offered in" in post.body["text"]
    assert pbot.slack.calls("views.open") == [] and pbot.bk.requests() == []


async def test_a_preset_naming_a_channel_that_forbids_its_plan_stops_the_bot(tmp_path: Path) -> None:
    from bot.core.policy import load_policy
    from bot.errors import ConfigError

    policy = tmp_path / "bad.toml"
    policy.write_text(POLICY + f'\n[presets.sneaky]\nplan = 204\nbk_biz_id = {BIZ}\nchannels = ["{OTHER_CHANNEL}"]\n')
    with pytest.raises(ConfigError) as caught:
        load_policy(str(policy))
    assert "presets.sneaky" in str(caught.value) and OTHER_CHANNEL in str(caught.value)


# -- /bkjob plans ---------------------------------------------------------------------------------------------


async def test_plans_lists_matching_presets_and_plans_with_a_run_button_each(pbot: Bot) -> None:
    await pbot.command("plans deploy")
    (post,) = await pbot.slack.wait_for_response()
    assert post.body["response_type"] == "ephemeral"
    buttons = [
        b["accessory"] for b in post.body["blocks"] if b.get("accessory", {}).get("action_id") == RUN_PLAN_ACTION
    ]
    assert [b["value"] for b in buttons] == ["preset:deploy-web", f"plan:201@{BIZ}", f"plan:100@{BIZ}"]
    assert all(b["text"]["text"] == "Run" for b in buttons)

    # Run opens the same form as `/bkjob run 201`.
    await pbot.click(RUN_PLAN_ACTION, f"plan:201@{BIZ}", user=USER)
    (update,) = await pbot.slack.wait_for_call("views.update")
    assert update.args["view"]["title"]["text"] == "Deploy API"
    await pbot.click(RUN_PLAN_ACTION, "preset:deploy-web", user=USER)
    calls = await pbot.slack.wait_for_call("views.update", count=2)
    assert "Preset *deploy-web*" in json.dumps(calls[-1].args["view"])


async def test_plans_respects_the_channels_policy(pbot: Bot) -> None:
    await pbot.command("plans", channel=OTHER_CHANNEL)
    (post,) = await pbot.slack.wait_for_response()
    values = [b["accessory"]["value"] for b in post.body["blocks"] if "accessory" in b]
    assert sorted(values) == [f"plan:100@{BIZ}", f"plan:201@{BIZ}", "preset:deploy-web"]
    await pbot.command("plans zzz")
    posts = await pbot.slack.wait_for_response(count=2)
    assert "No plans or presets matching *zzz*" in posts[-1].body["text"] + json.dumps(posts[-1].body["blocks"])


async def test_words_people_type_are_shown_as_typed_not_as_slack_markup(pbot: Bot) -> None:
    await pbot.command("run <!channel> --yes")
    await pbot.command("plans <!channel> ```")
    posts = await pbot.slack.wait_for_response(count=2)
    shown = json.dumps([p.body for p in posts])
    assert "<!channel>" not in shown and "```" not in shown
    assert "&lt;!channel&gt;" in shown


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "block_suggestion", "action_id": PLAN_PICKER_ACTION, "value": "x"},  # no user
        {"type": "block_suggestion", "user": {"id": USER}, "action_id": PLAN_PICKER_ACTION, "value": 5},
        {"type": "block_suggestion", "user": {"id": USER}, "action_id": [], "value": "x"},
        {"type": "block_suggestion", "user": {"id": USER}, "action_id": PLAN_PICKER_ACTION, "view": "x"},
    ],
)
async def test_a_malformed_options_request_is_refused_with_400(pbot: Bot, payload: dict[str, Any]) -> None:
    status, _ = await post_payload(pbot, payload)
    assert status == 400
    assert pbot.bk.requests() == []


async def test_an_options_request_without_a_form_gets_no_options(pbot: Bot) -> None:
    payload = {"type": "block_suggestion", "user": {"id": USER}, "action_id": PLAN_PICKER_ACTION, "value": "dep"}
    status, answer = await post_payload(pbot, payload)
    assert status == 200 and offered(answer) == []
    assert pbot.bk.requests() == []


async def test_one_plan_list_per_business_is_read_for_everyone(pbot: Bot) -> None:
    """BK-JOB lists every plan of a business to whoever may access it (no per-person filter): two people's
    pickers are answered from one read, and the channel's policy still filters what each is offered."""
    view = await pbot.open_form("run")
    assert "plan:201" in offered(await suggest(pbot, view, ""))
    await pbot.command("run", user="U0SOMEONE", channel=OTHER_CHANNEL)
    (update,) = [c for c in await pbot.slack.wait_for_call("views.update", count=2)][-1:]
    other = pbot.slack.view(update.args["view_id"])
    assert other is not None
    answer = offered(await suggest(pbot, other, "", user="U0SOMEONE"))
    assert "plan:201" in answer and "plan:202" not in answer  # the channel's allowed_jobs still apply
    assert [r.body["start"] for r in pbot.bk.requests("get_job_list")] == [0, 1000]  # one load: to the empty page
    assert {r.body["bk_username"] for r in pbot.bk.requests("get_job_list")} == {"alice"}


async def test_a_page_that_comes_back_short_is_not_the_end_of_the_list(pbot: Bot) -> None:
    """BK-JOB cuts a page, then drops the plans whose template is gone: a short page is not the last one.
    The bot reads on until a page comes back empty (v3: until `start` reaches `total`)."""
    for i in range(1200):
        pbot.bk.add_plan(BIZ, 5000 + i, f"batch {i:04d}", steps=[{"name": "one"}])
    pbot.bk.lose_template(BIZ, 5000 + 1199)  # the newest: in the first page, which comes back with 999 rows
    view = await pbot.open_form("run")
    await suggest(pbot, view, "")
    await pbot.idle()
    # Plan 100 ("Deploy web") was changed first, so it is last: on the second page.
    answer = offered(await suggest(pbot, view, "web"))
    assert "plan:100" in answer and "plan:203" in answer
    assert "plan:6199" not in offered(await suggest(pbot, view, "1199"))


async def test_a_100000_character_keystroke_is_read_only_to_the_query_cap(
    pbot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One pasted page in the picker must not hold the event loop: the finder reads a query only to MAX_QUERY
    characters (counted here as what the search is asked for, not timed)."""
    from bot.core.finder import MAX_QUERY, Catalogue

    asked: list[str] = []
    real = Catalogue.containing

    def counting(self: Catalogue, word: str) -> list[int]:
        asked.append(word)
        return real(self, word)

    monkeypatch.setattr(Catalogue, "containing", counting)
    view = await pbot.open_form("run")
    assert offered(await suggest(pbot, view, "d" * 100_000)) == []
    assert offered(await suggest(pbot, view, "deploy " + "x " * 50_000)) == []  # 50,000 words: as many filters
    # What comes after the cap is not read: "web" here, so both deploy plans are offered.
    after_cap = await suggest(pbot, view, "deploy" + " " * 100_000 + "web")
    assert offered(after_cap) == ["preset:deploy-web", "plan:201", "plan:100"]
    assert asked and max(len(word) for word in asked) <= MAX_QUERY


async def test_a_value_a_preset_locks_cannot_be_changed_by_running_its_plan_by_id(pbot: Bot) -> None:
    """Issue 23, 12: where preset `deploy-web` applies, plan 100 run by ID keeps `env` at the locked `prod`, on
    the command line and in the form alike; the refusal names the preset."""
    await pbot.command(f"run {PLAN} --yes env=dev")
    (post,) = await pbot.slack.wait_for_response()
    text = post.body["text"]
    assert "deploy-web" in text and "`env`" in text and "`prod`" in text, text
    form = await pbot.open_form(f"run {PLAN}")
    status, _ = await pbot.submit(form, {"env": "staging"})
    assert status == 200
    await pbot.idle()
    (told,) = [c for c in pbot.slack.calls("chat.postEphemeral") if "deploy-web" in str(c.args.get("text"))]
    assert told.args["user"] == USER and "`env`" in str(told.args["text"])
    assert pbot.bk.requests("execute_job") == []
    # Keeping the locked value (or leaving it to the plan's default, `prod` here) is a run like any other.
    await pbot.command(f"run {PLAN} --yes env=prod version=2.2")
    (req,) = await pbot.bk.wait_for_request("execute_job")
    assert req.body["global_vars"] == [{"id": 437, "value": "2.2"}]
    await pbot.idle()
