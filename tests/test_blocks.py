"""Block Kit builders: what people see, within Slack's limits, and never a secret."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.bkjob import status
from bot.bkjob.models import JobDetail, JobInstanceStatus
from bot.slack.blocks.launch import (
    RUN_VIEW,
    error_modal,
    launch_message,
    loading_modal,
    parse_var_block_id,
    run_modal,
    var_block_id,
)
from bot.slack.blocks.results import result_reply
from bot.slack.blocks.text import job_url
from bot.store.records import LaunchRecord, LaunchState, SentVariable
from tests.conftest import PLAN_VARS

PASSWORD = "hunter2-plan-secret"
WEB = "https://job.example.com"


def plan(global_vars: list[dict[str, Any]] | None = None, name: str = "Deploy web") -> JobDetail:
    return JobDetail.model_validate(
        {"bk_job_id": 100, "name": name, "global_vars": PLAN_VARS if global_vars is None else global_vars}
    )


def launch(**changes: Any) -> LaunchRecord:
    base = LaunchRecord(
        id="L1",
        created_at=1.0,
        updated_at=1.0,
        requester="U0ALICE",
        channel="C0OPS",
        bk_biz_id=3,
        bk_job_id=100,
        plan_name="Deploy web",
        bk_username="ops-bot",
        job_instance_id=20001,
        state=LaunchState.RUNNING,
    )
    return base.model_copy(update=changes)


def instance_status(job_status: int, steps: list[tuple[str, int]]) -> JobInstanceStatus:
    return JobInstanceStatus.model_validate(
        {
            "is_finished": status.is_finished(job_status),
            "job_instance": {"job_instance_id": 20001, "status": job_status, "total_time": 75.0},
            "blocks": [
                {"step_instances": [{"step_instance_id": 500 + i, "name": name, "status": code, "total_time": 1.0}]}
                for i, (name, code) in enumerate(steps)
            ],
        }
    )


def section_texts(blocks: list[dict[str, Any]]) -> list[str]:
    out = []
    for block in blocks:
        if block["type"] == "section":
            out.append(block["text"]["text"])
        elif block["type"] == "context":
            out.extend(e["text"] for e in block["elements"])
    return out


# -- the modal ---------------------------------------------------------------------------------------------------


def test_run_modal_has_one_input_per_editable_variable_prefilled() -> None:
    view = run_modal(plan(), bk_biz_id=3, prefill={"version": "3.0"}, metadata="m.sig")
    assert view["type"] == "modal" and view["callback_id"] == RUN_VIEW and view["private_metadata"] == "m.sig"
    assert view["title"]["text"] == "Deploy web" and view["submit"]["text"] == "Launch"
    inputs = {b["element"]["action_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert {k: v["element"].get("initial_value") for k, v in inputs.items()} == {
        "servers": "10.0.0.1",
        "version": "3.0",
        "env": "prod",
        "ports": "80 443",
    }
    assert inputs["servers"]["block_id"] == "var:3:id:436" and inputs["servers"]["optional"] is False
    assert inputs["version"]["optional"] is True
    assert inputs["servers"]["element"]["multiline"] and not inputs["version"]["element"].get("multiline")


def test_run_form_is_built_once_per_plan_and_values_but_signed_per_person() -> None:
    """The checked form is kept between people opening the same plan; what it shows still follows its inputs."""
    alice = run_modal(plan(), bk_biz_id=3, prefill={}, metadata="alice.sig")
    bob = run_modal(plan(), bk_biz_id=3, prefill={}, metadata="bob.sig")
    assert alice["private_metadata"] == "alice.sig" and bob["private_metadata"] == "bob.sig"
    assert {**alice, "private_metadata": ""} == {**bob, "private_metadata": ""}

    def initial(view: dict[str, Any], name: str) -> str | None:
        block = next(b for b in view["blocks"] if b.get("element", {}).get("action_id") == name)
        return block["element"].get("initial_value")

    assert initial(run_modal(plan(), bk_biz_id=3, prefill={"version": "9"}, metadata="m"), "version") == "9"
    changed = plan().model_copy(update={"global_vars": [v for v in plan().global_vars or [] if v.name != "env"]})
    assert all(
        b.get("element", {}).get("action_id") != "env"
        for b in run_modal(changed, bk_biz_id=3, prefill={}, metadata="m")["blocks"]
    )
    assert "business *4*" in section_texts(run_modal(plan(), bk_biz_id=4, prefill={}, metadata="m")["blocks"])[0]
    asked = run_modal(plan(), bk_biz_id=3, prefill={}, metadata="m", approval=(["U1"], 1))
    assert asked["submit"]["text"] == "Request approval" and alice["submit"]["text"] == "Launch"


def test_password_is_shown_as_set_or_not_set_never_prefilled() -> None:
    view = run_modal(plan(), bk_biz_id=3, prefill={"db_password": "typed"}, metadata="m")
    shown = json.dumps(view)
    assert PASSWORD not in shown and "typed" not in shown
    assert "*db_password* (password): set, keeps the plan's value" in shown
    assert not any(b.get("block_id", "").startswith("var:4:") for b in view["blocks"])
    unset = run_modal(
        plan([{"id": 1, "name": "pw", "category": 4, "value": ""}]), bk_biz_id=3, prefill={}, metadata="m"
    )
    assert "*pw* (password): not set" in json.dumps(unset)


def test_modal_respects_slacks_limits() -> None:
    many = [{"id": i, "name": f"v{i}", "category": 1, "value": "x"} for i in range(1, 151)]
    huge = [{"id": 999, "name": "big", "category": 1, "value": "y" * 3001}]
    view = run_modal(
        plan(huge + many, name="A plan with a very long name indeed"), bk_biz_id=3, prefill={}, metadata="m"
    )
    assert len(view["title"]["text"]) <= 24
    assert len(view["blocks"]) <= 100
    assert "keep the plan's values" in json.dumps(view["blocks"][-1])
    big = view["blocks"][1]
    assert big["type"] == "context" and "longer than Slack can edit" in json.dumps(big)
    for block in view["blocks"]:
        if block["type"] == "input":
            assert len(block["label"]["text"]) <= 2000 and len(block["block_id"]) <= 255
            assert len(block["element"]["action_id"]) <= 255
            assert len(block["element"].get("initial_value") or "") <= 3000


def test_plan_without_variables_says_so() -> None:
    view = run_modal(plan([]), bk_biz_id=3, prefill={}, metadata="m")
    assert "no global variables" in json.dumps(view)


@pytest.mark.parametrize(
    "var",
    [
        {"id": 437, "name": "version", "category": 1},
        {"name": "a:b:c", "category": 3},
        {"name": "x" * 300, "category": 6},
    ],
)
def test_block_ids_round_trip(var: dict[str, Any]) -> None:
    (parsed,) = plan([var]).variables
    block_id = var_block_id(parsed)
    assert len(block_id) <= 255
    ref = parse_var_block_id(block_id)
    assert ref is not None and ref.category == var["category"]
    if "id" in var:
        assert (ref.id, ref.name) == (437, None)
    else:
        assert ref.id is None and ref.name is not None and var["name"].startswith(ref.name)


@pytest.mark.parametrize("block_id", ["", "var", "var:x:id:1", "var:1:id:x", "var:1:name:", "other:1:id:1"])
def test_foreign_block_ids_are_ignored(block_id: str) -> None:
    assert parse_var_block_id(block_id) is None


def test_loading_and_error_modals() -> None:
    assert "Reading plan *100*" in json.dumps(loading_modal(100))
    long = error_modal("x" * 5000)
    (block,) = long["blocks"]
    assert len(block["text"]["text"]) <= 3000 and "submit" not in long


# -- the launch message --------------------------------------------------------------------------------------


def test_launch_message_shows_who_what_where_and_links_the_instance() -> None:
    sent = [SentVariable(id=437, name="version", category=1, shown="2.0")]
    msg = launch_message(launch(variables=sent), web_root=WEB)
    text = "\n".join(section_texts(msg.blocks))
    assert "<@U0ALICE>" in text and "`ops-bot`" in text and "Deploy web (ID 100)" in text and "*Business:* 3" in text
    assert f"<{WEB}/api_execute/20001|20001>" in text
    assert "`version` = `2.0`" in text
    assert msg.text == "Running: Deploy web (plan 100) by <@U0ALICE>"


def test_launch_message_without_web_root_has_no_link() -> None:
    text = "\n".join(section_texts(launch_message(launch(), web_root=None).blocks))
    assert "*Instance:* 20001" in text and "http" not in text
    assert job_url(None, 1) is None and job_url(WEB, None) is None


def test_passwords_are_masked_in_the_launch_message_whatever_was_stored() -> None:
    sent = [SentVariable(id=438, name="db_password", category=4, shown=PASSWORD)]
    msg = launch_message(launch(variables=sent), web_root=WEB)
    assert PASSWORD not in json.dumps(msg.blocks) + msg.text
    assert "`db_password` = `••••••`" in json.dumps(msg.blocks, ensure_ascii=False)


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        ({"state": LaunchState.STARTING, "job_instance_id": None}, "Launching"),
        ({"state": LaunchState.NOT_STARTED, "error": "[9900403] denied"}, "Not launched*: [9900403] denied"),
        ({"state": LaunchState.UNKNOWN, "error": "lost"}, "Unknown: check BK-JOB*. lost"),
        ({"state": LaunchState.FINISHED, "job_status": 4}, ":x: *Failed*"),
        ({"state": LaunchState.FINISHED, "job_status": 3}, ":white_check_mark: *Succeeded*"),
        ({"state": LaunchState.FINISHED, "job_status": 42}, "*Status 42*"),
    ],
)
def test_status_line(changes: dict[str, Any], line: str) -> None:
    msg = launch_message(launch(**changes), web_root=None)
    assert line in section_texts(msg.blocks)[0]


def test_people_typed_text_is_escaped() -> None:
    msg = launch_message(launch(plan_name="<!channel> & co"), web_root=None)
    text = json.dumps(msg.blocks)
    assert "<!channel>" not in text and "&lt;!channel&gt; &amp; co" in text


def test_launch_message_stays_within_limits() -> None:
    sent = [SentVariable(id=i, name=f"v{i}", category=1, shown="z" * 500) for i in range(100)]
    msg = launch_message(launch(variables=sent, plan_name="p" * 5000), web_root=WEB)
    assert len(msg.text) <= 3000
    for block in msg.blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        else:
            assert all(len(e["text"]) <= 3000 for e in block["elements"])


# -- the result reply ----------------------------------------------------------------------------------------


def test_success_reply() -> None:
    reply = result_reply(launch(), job_status=3, detail=instance_status(3, [("build", 3), ("ship", 3)]), web_root=WEB)
    (body,) = section_texts(reply.blocks)
    assert body.startswith(":white_check_mark: *Succeeded*: Deploy web, instance <")
    assert "Ran for 1 min 15 s" in body and "<@U0ALICE>" not in body
    assert reply.text == "Succeeded: Deploy web, instance 20001"


def test_failure_reply_names_the_failed_step_and_mentions_the_requester() -> None:
    detail = instance_status(4, [("build", 3), ("ship", 4), ("notify", 1)])
    (body,) = section_texts(result_reply(launch(), job_status=4, detail=detail, web_root=None).blocks)
    lines = body.splitlines()
    assert lines[0].startswith(":x: *Failed*")
    (ship,) = [line for line in lines if "ship" in line]
    assert "failed" in ship
    assert not any("build" in line and "failed" in line for line in lines)
    assert "<@U0ALICE>" in body


def test_unknown_status_codes_are_shown_as_numbers() -> None:
    detail = instance_status(42, [("odd", 77)])
    reply = result_reply(launch(), job_status=42, detail=detail, web_root=None)
    (body,) = section_texts(reply.blocks)
    assert "*Status 42*" in body and ":grey_question:" in body
    (odd,) = [line for line in body.splitlines() if "odd" in line]
    assert "status 77" in odd
    assert reply.text.startswith("Status 42")
    assert status.describe(99) == "status 99"


def test_reply_with_many_steps_stays_within_slacks_limit() -> None:
    detail = instance_status(4, [(f"step number {i} " + "n" * 40, 4) for i in range(500)])
    reply = result_reply(launch(), job_status=4, detail=detail, web_root=WEB)
    (body,) = section_texts(reply.blocks)
    assert len(body) <= 3000
    assert "more" in body.splitlines()[-1]
    assert "<@U0ALICE>" in body  # the essentials are never cut
