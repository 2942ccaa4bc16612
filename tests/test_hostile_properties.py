"""Property-based: whatever arrives at the bot's doors, it answers 2xx/4xx, says something clear, leaks no Python,
and changes no stored launch it should not.

The approach (see `tests/test_hostile_harness.py`): one real bot per module on a background loop; each
`@given` example is a synchronous function that submits one request over HTTP to that loop and then inspects
the new Slack calls, response_url posts, log records and database rows. A few hundred examples run in the normal
suite; `HYPOTHESIS_PROFILE=nightly` runs 10,000 per property.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.core.tokens import Signer
from bot.slack.blocks.approvals import APPROVE_ACTION, REJECT_ACTION, REJECT_VIEW
from bot.slack.blocks.launch import RUN_VIEW
from tests.conftest import CHANNEL, PLAN, SIGNING_SECRET, USER
from tests.test_hostile_harness import APPROVAL_CHANNEL, APPROVER, MARKERS, LiveBot, examples, leaks, stored_decisions


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBot]:
    base = tmp_path_factory.mktemp("hostile")
    instance = LiveBot(base / "bot.sqlite3", base / "bkjob.toml", BK_TIMEOUT="0.5")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def pending(live: LiveBot) -> dict[str, str]:
    """One approval request waiting in APPROVAL_CHANNEL: its ID and message, targets for forged clicks."""

    async def request() -> dict[str, str]:
        bot = live.bot
        await bot.command(f"run {PLAN} --yes version=9.9", channel=APPROVAL_CHANNEL)
        await bot.idle()
        message = bot.slack.messages(APPROVAL_CHANNEL)[-1]
        value = next(b["elements"][0]["value"] for b in message["blocks"] if b.get("type") == "actions")
        return {"id": str(value), "ts": str(message["ts"])}

    return live.run(request())


@pytest.fixture(scope="module")
def callback_token(live: LiveBot) -> str:
    """The callback token of a running launch (the token is only ever in BK-JOB's hands)."""

    async def launch() -> str:
        bot = live.bot
        await bot.command(f"run {PLAN} --yes version=7.7", channel="C0CALLBACK")
        await bot.idle()
        instance = next(i for i in bot.bk.instances.values() if i.callback_url)
        assert instance.callback_url is not None
        return instance.callback_url.rsplit("/", 1)[1]

    return live.run(launch())


# -- strategies ---------------------------------------------------------------------------------------------------

_clean = st.text().filter(lambda t: not any(m in t for m in MARKERS))
_words = st.one_of(
    st.sampled_from(["run", "RUN", "status", "history", "pending", "help", "--biz", "--yes", "-y", "—yes", "--b"]),
    st.from_regex(r"-?[0-9]{1,25}", fullmatch=True),
    st.builds(lambda k, v: f"{k}={v}", _clean, _clean),
    st.sampled_from(['"', "'", "\\", "\u201c", "\u2018", "=", "==", "\x00", "\x1b[31m", "\r\n", "\t"]),
    _clean,
)
command_texts = st.one_of(
    _clean,
    st.builds(" ".join, st.lists(_words, max_size=12)),
    st.builds(lambda ws: "run 100 " + " ".join(ws), st.lists(_words, max_size=8)),
)

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _clean,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_clean, inner, max_size=4),
    max_leaves=12,
)
_MISSING = object()


def _field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually the right value; sometimes missing, sometimes any JSON at all (a wrong type)."""
    return st.one_of(good, good, good, st.just(_MISSING), _json)


def _drop_missing(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not _MISSING}


_signer = Signer(secret=SIGNING_SECRET)
# Metadata this bot could have signed, but never for this submitter or this form.
_foreign_metadata = st.one_of(
    st.builds(lambda c, u: _signer.sign({"p": "run", "c": c, "b": 3, "j": PLAN, "u": u}), _clean, st.just("U0OTHER")),
    st.builds(lambda u: _signer.sign({"p": "reject", "a": "x", "u": u, "c": CHANNEL}), st.just(USER)),
    st.builds(lambda: _signer.sign({"c": CHANNEL, "b": 3, "j": PLAN, "u": USER})),  # before purposes existed
    st.builds(lambda: _signer.sign({"p": "run", "c": CHANNEL, "b": "3", "j": PLAN, "u": USER})),
    st.builds(lambda: _signer.sign({"p": "run", "c": CHANNEL, "b": 3, "j": PLAN, "u": USER})[:-1] + "0"),
    st.builds(lambda d: _signer.sign(d), st.dictionaries(st.sampled_from("pcbjua"), _json)),
    _clean,
)


def _block_actions(pending: dict[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    action = st.builds(
        _drop_missing,
        st.fixed_dictionaries(
            {
                "action_id": _field(st.sampled_from([APPROVE_ACTION, REJECT_ACTION, "other_app_button"]) | _clean),
                "value": _field(st.sampled_from([pending["id"], secrets.token_hex(16)]) | _clean),
                "type": st.just("button"),
            }
        ),
    )
    return st.builds(
        _drop_missing,
        st.fixed_dictionaries(
            {
                "type": st.just("block_actions"),
                "user": _field(st.fixed_dictionaries({"id": st.sampled_from([USER, APPROVER, "U0MAL"])})),
                "actions": _field(st.lists(action, min_size=1, max_size=2)),
                "trigger_id": _field(st.just("1.2.abc")),
                # Never the request's own message: a click there by the approver would rightly approve it.
                "container": _field(
                    st.fixed_dictionaries(
                        {
                            "channel_id": st.sampled_from([CHANNEL, APPROVAL_CHANNEL]),
                            "message_ts": st.just("1.0") | _clean.filter(lambda t: t != pending["ts"]),
                        }
                    )
                ),
                "response_url": st.just("RESPONSE_URL"),
            }
        ),
    )


_view_submission = st.builds(
    _drop_missing,
    st.fixed_dictionaries(
        {
            "type": st.just("view_submission"),
            "user": _field(st.fixed_dictionaries({"id": st.sampled_from([USER, APPROVER])})),
            "view": _field(
                st.builds(
                    _drop_missing,
                    st.fixed_dictionaries(
                        {
                            "type": _field(st.just("modal")),
                            "id": _field(st.just("V1")),
                            "callback_id": _field(st.sampled_from([RUN_VIEW, REJECT_VIEW, "another_apps_form"])),
                            "private_metadata": _field(_foreign_metadata),
                            "state": _field(
                                st.fixed_dictionaries(
                                    {
                                        "values": st.dictionaries(
                                            st.sampled_from(["var:1:id:437", "var:3:id:436", "reason"]) | _clean,
                                            st.dictionaries(
                                                _clean,
                                                st.builds(
                                                    _drop_missing, st.fixed_dictionaries({"value": _field(_clean)})
                                                ),
                                            ),
                                            max_size=3,
                                        )
                                    }
                                )
                            ),
                        }
                    ),
                )
            ),
        }
    ),
)


def _interactivity(pending: dict[str, str]) -> st.SearchStrategy[Any]:
    other_types = st.builds(
        lambda t, extra: {"type": t, **extra},
        st.sampled_from(["view_closed", "shortcut", "message_action", "block_suggestion", "interactive_message"]),
        st.dictionaries(_clean, _json, max_size=3),
    )
    return st.one_of(_block_actions(pending), _view_submission, other_types, _json)


# -- properties ---------------------------------------------------------------------------------------------------


@examples(120)
@given(text=command_texts)
@example(text=" ".join(f"k{i}=v" for i in range(10_000)))  # far over the text limit
@example(text="run 100 " + " ".join(f"k{i}=v" for i in range(101)))  # just over the variable limit
@example(text=f"run 100 version={'x' * 4001}")  # just over the value limit
@example(text='run 100 "msg=never closed')
@example(text="run 100 msg=\x00\x07\x1b[2J\u202e")
@example(text="status 99999999999999999999999999")
@example(text="\u200b" * 7000)
def test_any_command_text_gets_a_clear_ephemeral_answer(live: LiveBot, text: str) -> None:
    async def send() -> tuple[int, str, str, dict[str, Any] | None]:
        bot = live.bot
        trigger = bot.slack.new_trigger_id()
        body = bot.command_body(text, trigger_id=trigger)
        url = next(v for k, v in _form(body) if k == "response_url")
        resp = await bot.post_signed(body)
        # What the bot can answer without reading anything comes in the ack's body.
        acked = await resp.json() if resp.content_type == "application/json" else None
        await bot.idle()
        return resp.status, url, trigger, acked

    mark = live.mark()
    status, url, trigger, acked = live.run(send())
    seen = live.since(mark)
    assert status == 200
    answers = [r.body for r in seen.responses if r.url == url] + ([acked] if acked else [])
    opened = [c for c in seen.calls if c.method == "views.open" and c.args.get("trigger_id") == trigger]
    launched = [c for c in seen.calls if c.method in ("chat.postMessage", "chat.postEphemeral")]
    assert answers or opened or launched, "the person heard nothing back"
    assert all(a.get("response_type") == "ephemeral" and a.get("text") for a in answers)
    assert not leaks([*seen.texts(), *(str(a.get("text")) for a in answers)])
    assert not seen.bot_errors()


@examples(150)
@given(data=st.data())
def test_any_interactivity_payload_is_refused_or_answered_and_launches_nothing(
    live: LiveBot, pending: dict[str, str], data: st.DataObject
) -> None:
    payload = data.draw(_interactivity(pending))
    before = stored_decisions(live.db_path)
    executions = len(live.bot.bk.requests("execute_job"))

    async def send() -> int:
        bot = live.bot
        raw = json.dumps(payload).replace('"RESPONSE_URL"', json.dumps(bot.slack.response_url()))
        resp = await bot.post_signed(urlencode({"payload": raw}))
        await bot.idle()
        return resp.status

    mark = live.mark()
    status = live.run(send())
    seen = live.since(mark)
    assert 200 <= status < 500
    assert not leaks(seen.texts())
    assert not seen.bot_errors()
    assert len(live.bot.bk.requests("execute_job")) == executions
    assert stored_decisions(live.db_path) == before


_content_types = st.sampled_from(
    ["application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x", ""]
)
_callback_bodies = st.one_of(
    st.binary(max_size=512),
    st.builds(lambda v: json.dumps(v).encode(), _json),
    st.builds(
        lambda i, s, steps: json.dumps({"job_instance_id": i, "status": s, "step_instances": steps}).encode(),
        st.integers(min_value=-(2**70), max_value=2**70) | _json,
        st.integers() | _json,
        st.lists(st.fixed_dictionaries({"step_instance_id": st.integers() | _json, "status": st.integers()})),
    ),
)
_bad_tokens = st.one_of(
    st.builds(lambda: secrets.token_urlsafe(32)),
    st.from_regex(r"[A-Za-z0-9_-]{1,80}", fullmatch=True),
    st.sampled_from(["%2e%2e", "..", "a" * 5000, "%00", "x%2Fy"]),
)


@examples(120)
@given(token=st.one_of(_bad_tokens, st.just("VALID")), body=_callback_bodies, content_type=_content_types)
def test_any_callback_is_answered_without_5xx_and_bad_tokens_change_nothing(
    live: LiveBot, callback_token: str, token: str, body: bytes, content_type: str
) -> None:
    valid = token == "VALID"
    before = stored_decisions(live.db_path)

    async def send() -> int:
        bot = live.bot
        assert bot.http is not None
        headers = {"Content-Type": content_type} if content_type else {}
        path = callback_token if valid else token
        async with bot.http.post(f"{bot.url}/bkjob/callback/{path}", data=body, headers=headers) as resp:
            await resp.read()
            status = resp.status
        await bot.idle()
        return status

    mark = live.mark()
    status = live.run(send())
    seen = live.since(mark)
    assert status < 500
    assert not seen.bot_errors()
    if not valid:
        assert status == 404
        assert stored_decisions(live.db_path) == before
    else:
        assert status in (200, 400, 409, 429)  # 429: the token's replay limit
        assert len(stored_decisions(live.db_path)["launches"]) == len(before["launches"])


_plan_data = st.one_of(
    _json,
    st.fixed_dictionaries(
        {
            "bk_job_id": st.integers() | _json,
            "name": _clean | _json,
            "global_vars": st.lists(
                st.fixed_dictionaries(
                    {"name": _clean | _json, "category": st.integers(-3, 9) | _json, "value": _clean | _json}
                ),
                max_size=5,
            )
            | _json,
        }
    ),
)
_bk_answers = st.one_of(
    st.builds(lambda d: ("json", json.dumps({"result": True, "code": 0, "data": d}).encode()), _plan_data),
    st.builds(lambda b: ("raw", b), st.binary(max_size=300)),
    st.builds(
        lambda d, cut: ("raw", json.dumps({"result": True, "code": 0, "data": d}).encode()[:cut]),
        _plan_data,
        st.integers(1, 200),
    ),
    st.builds(lambda c, m: ("json", json.dumps({"result": False, "code": c, "message": m}).encode()), _json, _json),
)


@examples(60)
@given(answer=_bk_answers, with_form=st.booleans())
def test_any_bk_job_answer_to_a_plan_read_becomes_a_clear_message(
    live: LiveBot, answer: tuple[str, bytes], with_form: bool
) -> None:
    _, raw = answer
    executions = len(live.bot.bk.requests("execute_job"))

    async def send() -> tuple[str, str]:
        bot = live.bot
        bot.bk.garbage_next("get_job_detail", body=raw)
        trigger = bot.slack.new_trigger_id()
        body = bot.command_body(
            f"run {PLAN}" if with_form else f"run {PLAN} --yes version=bad-plan", trigger_id=trigger
        )
        await bot.post_signed(body)
        await bot.idle()
        return next(v for k, v in _form(body) if k == "response_url"), trigger

    mark = live.mark()
    url, trigger = live.run(send())
    seen = live.since(mark)
    heard = [r.body.get("text") for r in seen.responses if r.url == url]
    heard += [json.dumps(c.args.get("view")) for c in seen.calls if c.method == "views.update"]
    heard += [str(c.args.get("text")) for c in seen.calls if c.method in ("chat.postMessage", "chat.postEphemeral")]
    assert heard, "the person heard nothing back"
    assert not leaks(seen.texts())
    assert not seen.bot_errors()
    assert len(live.bot.bk.requests("execute_job")) - executions <= 1
    live.run(_drain_injections(live))


_execute_data = st.one_of(
    _json,
    st.fixed_dictionaries({"job_instance_id": st.integers() | _json, "job_instance_name": _clean | _json}),
)
_execute_answers = st.one_of(
    st.builds(lambda d: json.dumps({"result": True, "code": 0, "data": d}).encode(), _execute_data),
    st.binary(max_size=300),
    st.builds(
        lambda d, cut: json.dumps({"result": True, "code": 0, "data": d}).encode()[:cut],
        _execute_data,
        st.integers(1, 120),
    ),
    st.builds(lambda c, m: json.dumps({"result": False, "code": c, "message": m}).encode(), _json, _json),
)


@examples(40)
@given(raw=_execute_answers)
@example(raw=b'{"result": true, "code": 0, "data": {"job_instance_id": 18446744073709551616}}')
@example(raw=b'{"result": true, "code": 0, "data": {"job_instance_id": -1}}')
def test_any_execute_job_answer_is_sent_once_and_told_clearly(live: LiveBot, raw: bytes) -> None:
    """Whatever execute_job answers, it was called once (never retried: that could run the job twice), the person
    hears something clear, and the launch ends up running with an instance, refused, or "unknown"."""
    executions = len(live.bot.bk.requests("execute_job"))

    async def send() -> str:
        bot = live.bot
        bot.bk.garbage_next("execute_job", body=raw)
        body = bot.command_body(f"run {PLAN} --yes version=x{secrets.token_hex(3)}", channel="C0EXEC")
        await bot.post_signed(body)
        await bot.idle()
        return next(v for k, v in _form(body) if k == "response_url")

    mark = live.mark()
    url = live.run(send())
    seen = live.since(mark)
    assert len(live.bot.bk.requests("execute_job")) - executions == 1
    assert not leaks(seen.texts())
    assert not seen.bot_errors()
    posted = [c for c in seen.calls if c.method == "chat.postMessage" and c.args.get("channel") == "C0EXEC"]
    answered = [r for r in seen.responses if r.url == url]
    assert posted, "no launch message"
    with sqlite3.connect(live.db_path) as conn:
        state, instance = conn.execute(
            "SELECT state, job_instance_id FROM launches WHERE channel = 'C0EXEC' ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    assert state in ("running", "finished", "not_started", "unknown")
    assert (instance is not None) == (state in ("running", "finished"))
    if state not in ("running", "finished"):
        assert answered, "a refused or lost launch was not told to the person"
    live.run(_drain_injections(live))


_number = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), _json)
_status_data = st.one_of(
    _json,
    st.fixed_dictionaries(
        {
            "is_finished": st.booleans() | _json,
            "job_instance": st.fixed_dictionaries(
                {"job_instance_id": st.integers() | _json, "status": st.integers(-2, 20) | _json, "total_time": _number}
            )
            | _json,
            "blocks": st.lists(
                st.fixed_dictionaries(
                    {
                        "step_instances": st.lists(
                            st.fixed_dictionaries(
                                {
                                    "step_instance_id": st.integers() | _json,
                                    "status": st.integers(-2, 20) | _json,
                                    "name": _clean | _json,
                                    "total_time": _number,
                                    "step_ip_status": st.lists(
                                        st.fixed_dictionaries({"status": st.integers() | _json}), max_size=3
                                    )
                                    | _json,
                                }
                            ),
                            max_size=3,
                        )
                    }
                ),
                max_size=3,
            )
            | _json,
        }
    ),
)
_status_answers = st.one_of(
    st.builds(lambda d: json.dumps({"result": True, "code": 0, "data": d}).encode(), _status_data),
    st.binary(max_size=200),
    st.builds(lambda c, m: json.dumps({"result": False, "code": c, "message": m}).encode(), _json, _json),
)


@examples(30)
@given(raw=_status_answers, final=st.sampled_from([3, 4, 11]))
@example(
    raw=b'{"result": true, "code": 0, "data": {"is_finished": true, "job_instance": {"job_instance_id": 1,'
    b' "status": 3, "total_time": NaN}, "blocks": [{"step_instances": [{"step_instance_id": 1, "status": 4,'
    b' "total_time": Infinity, "step_ip_status": [{"status": 11}]}]}]}}',
    final=3,
)
def test_any_status_answer_after_a_callback_gives_at_most_one_clear_reply(
    live: LiveBot, raw: bytes, final: int
) -> None:
    """The callback is confirmed with get_job_instance_status: whatever that answers, the callback gets 200, the
    bot logs no error, and the thread gets at most one reply, never Python text."""

    async def send() -> tuple[int, str]:
        bot = live.bot
        await bot.command(f"run {PLAN} --yes version=s{secrets.token_hex(3)}", channel="C0STATUS")
        await bot.idle()
        instance_id = max(bot.bk.instances)
        ts = bot.slack.messages("C0STATUS")[-1]["ts"]
        bot.bk.garbage_next("get_job_instance_status", body=raw)
        statuses = await bot.bk.finish(instance_id, status=final)
        await bot.idle()
        return statuses[0] if statuses else 0, ts

    mark = live.mark()
    status, ts = live.run(send())
    seen = live.since(mark)
    assert status == 200
    assert not seen.bot_errors()
    assert not leaks(seen.texts())
    assert len(live.bot.slack.thread("C0STATUS", ts)) <= 1
    live.run(_drain_injections(live))


async def _drain_injections(live: LiveBot) -> None:
    """A request that never reached get_job_detail (it failed earlier) leaves its injection queued: take it."""
    bk = live.bot.bk
    for queue in bk._injections.values():  # noqa: SLF001 - the fake offers no public reset
        queue.clear()


def _form(body: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(body)


def test_examples_are_reproducible_under_the_nightly_flag() -> None:
    """The flag exists and selects 10,000 examples (guards the documented way to run the nightly)."""
    from hypothesis import settings

    assert settings.get_profile("nightly").max_examples == 10_000
    assert time.time() > 0
