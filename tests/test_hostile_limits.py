"""Limits and tampering, one input each: what is refused, with which answer, and that nothing changed."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.app import STORE
from bot.core.tokens import Signer
from bot.slack.blocks.approvals import APPROVE_ACTION
from bot.web.callback import MAX_CALLBACK_BYTES
from tests.conftest import PLAN, SIGNING_SECRET, USER, Bot
from tests.fakes import FakeBkJob, FakeSlack
from tests.test_hostile_harness import POLICY, leaks

APPROVALS = "C0APPR"


@pytest.fixture
async def gov(slack: FakeSlack, bk: FakeBkJob, tmp_path: Path) -> AsyncIterator[Bot]:
    policy = tmp_path / "bkjob.toml"
    policy.write_text(POLICY)
    instance = Bot(
        slack=slack, bk=bk, db_path=tmp_path / "gov.sqlite3", BKJOB_CONFIG=str(policy), REQUEST_TIMEOUT="0.3"
    )
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


async def _post(bot: Bot, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    assert bot.http is not None
    async with bot.http.post(f"{bot.url}{path}", data=body, headers=headers or {}) as resp:
        return resp.status, await resp.text()


async def test_slack_body_over_one_mib_is_413(bot: Bot) -> None:
    assert bot.http is not None
    body = io.BytesIO(b"text=" + b"x" * (1024 * 1024 + 1))
    async with bot.http.post(f"{bot.url}/slack/events", data=body) as resp:
        assert resp.status == 413
    assert bot.slack.responses() == []


@pytest.mark.parametrize(
    "body",
    ["{not json", "payload=not-json", "payload=[1,2]", "payload=null", 'payload={"type":"view_submission","user":"U"}'],
)
async def test_unreadable_signed_slack_bodies_are_400_not_500(bot: Bot, body: str) -> None:
    """Bolt parsed these before checking anything and raised: aiohttp answered 500 and logged a traceback."""
    assert (await bot.post_signed(body)).status == 400


async def test_callback_body_over_256_kib_is_413_with_or_without_a_length(bot: Bot) -> None:
    await bot.command(f"run {PLAN} --yes version=2.0")
    await bot.slack.wait_for_call("chat.update")
    (instance,) = bot.bk.instances.values()
    assert instance.callback_url is not None
    path = instance.callback_url.removeprefix(bot.url)
    big = json.dumps({**instance.callback_body(), "pad": "x" * MAX_CALLBACK_BYTES}).encode()
    assert (await _post(bot, path, big))[0] == 413

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    assert bot.http is not None
    async with bot.http.post(f"{bot.url}{path}", data=chunked()) as resp:
        assert resp.status == 413
    # Just under the limit, sent in small chunks, is read whole (content.read(n) may return less than n).
    fits = json.dumps({**instance.callback_body(), "pad": "x" * (MAX_CALLBACK_BYTES - 1000)}).encode()
    small = [fits[i : i + 1000] for i in range(0, len(fits), 1000)]

    async def trickle() -> AsyncIterator[bytes]:
        for piece in small:
            yield piece
            await asyncio.sleep(0)

    async with bot.http.post(f"{bot.url}{path}", data=trickle()) as resp:
        assert resp.status == 200


async def test_callback_naming_an_instance_id_beyond_a_long_is_400(bot: Bot) -> None:
    """Input: a lost execute_job answer, then a callback with job_instance_id 2**64: it used to be a 500."""
    bot.bk.lose_answer_next("execute_job")
    await bot.command(f"run {PLAN} --yes version=2.0")
    await bot.bk.wait_for_request("execute_job")
    await bot.idle()
    (instance_id,) = bot.bk.instances
    assert await bot.bk.send_callback(instance_id, {"job_instance_id": 2**64, "status": 3}) == 400


async def test_a_slow_store_makes_healthz_and_callbacks_answer_503_json(gov: Bot) -> None:
    assert gov.runner is not None
    store = gov.runner.app[STORE]

    async def stuck(*args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()

    store.ping = stuck  # type: ignore[method-assign]
    store.find_launch_by_token = stuck  # type: ignore[method-assign]
    assert gov.http is not None
    # The store never answers: a 503 at all proves the deadline (REQUEST_TIMEOUT) answered for it. The bound here
    # only keeps a hang from hanging the suite; how fast a loaded machine gets there is not the point.
    async with asyncio.timeout(60):
        async with gov.http.get(f"{gov.url}/healthz") as resp:
            assert resp.status == 503 and (await resp.json())["ok"] is False
        status, text = await _post(gov, "/bkjob/callback/" + "a" * 43, b"{}")
    assert status == 503 and "no answer within" in json.loads(text)["message"]


async def test_too_many_variables_and_too_long_values_are_explained(bot: Bot) -> None:
    texts = [
        await bot.answered("run 100 " + " ".join(f"v{i}=1" for i in range(101))),
        await bot.answered(f"run 100 version={'x' * 4001}"),
    ]
    assert "too many variables: at most 100" in texts[0]
    assert "too long (4001 characters): at most 4000" in texts[1]
    assert bot.bk.requests("execute_job") == []


async def test_a_form_value_longer_than_slack_allows_is_refused_inline(bot: Bot) -> None:
    view = await bot.open_form()
    status, answer = await bot.submit(view, {"version": "x" * 3001})
    assert status == 200 and answer["response_action"] == "errors"
    assert "At most 3000 characters" in json.dumps(answer["errors"])
    await bot.idle()
    assert bot.bk.requests("execute_job") == []


async def test_run_form_metadata_for_another_user_or_form_is_refused_with_a_message(bot: Bot) -> None:
    view = await bot.open_form()
    signer = Signer(secret=SIGNING_SECRET)
    forged = [
        signer.sign({"p": "run", "c": "C0OTHER", "b": 3, "j": PLAN, "u": "U0SOMEONE"}),  # another person's form
        signer.sign({"p": "reject", "a": "x", "u": USER, "c": "C0OPS"}),  # a reject form's metadata
        view["private_metadata"][:-2] + "00",  # tampered
    ]
    for metadata in forged:
        status, answer = await bot.submit({**view, "private_metadata": metadata}, {})
        assert status == 200 and answer["response_action"] == "update"
        assert "not issued to you" in json.dumps(answer["view"])
    await bot.idle()
    assert bot.bk.requests("execute_job") == []


async def test_approve_with_a_forged_or_transplanted_value_changes_nothing(gov: Bot) -> None:
    await gov.command(f"run {PLAN} --yes version=2.0", channel=APPROVALS)
    await gov.idle()
    message = gov.slack.messages(APPROVALS)[-1]
    approval_id = next(b["elements"][0]["value"] for b in message["blocks"] if b.get("type") == "actions")
    # A forged value, then the real one clicked from another message (as if pasted into another button).
    await gov.click(APPROVE_ACTION, "f" * 32, user="U0BOB", channel=APPROVALS, message_ts=message["ts"])
    await gov.click(APPROVE_ACTION, approval_id, user="U0BOB", channel="C0OPS", message_ts="1.0")
    await gov.idle()
    texts = [str(r.body.get("text")) for r in gov.slack.responses()]
    assert any("unknown to me" in t for t in texts) and any("does not belong" in t for t in texts)
    assert gov.bk.requests("execute_job") == []
    assert not leaks(texts)


async def test_unknown_buttons_and_forms_are_answered_not_404(bot: Bot) -> None:
    resp = await bot.click("someone_elses_button", "x", user=USER)
    assert resp.status == 200
    (post,) = await bot.slack.wait_for_response()
    assert "not one I know" in str(post.body["text"]) and post.body["response_type"] == "ephemeral"
    payload = {"type": "view_submission", "user": {"id": USER}, "view": {"type": "modal", "callback_id": "x"}}
    status = (await bot.post_signed(urlencode({"payload": json.dumps(payload)}))).status
    assert status == 200
