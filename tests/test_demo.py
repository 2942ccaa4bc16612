"""The demo simulator driven through its JSON endpoints exactly as its page drives them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bot.demo import DemoOptions, Simulator

ALICE, BOB = "U0ALICE", "U0BOB"
DEPLOYS, PROD = "C0DEPLOY", "C0PROD"  # launches at once / needs an approval

Snapshot = dict[str, Any]


class Page:
    """What page.html does: POST what a person does, long-poll `/api/state` for what changed."""

    def __init__(self, sim: Simulator, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.http = http

    async def post(self, path: str, **body: Any) -> dict[str, Any]:
        async with self.http.post(f"{self.sim.url}{path}", json=body) as resp:
            assert resp.status == 200, await resp.text()
            result: dict[str, Any] = await resp.json()
            return result

    async def command(self, text: str, *, user: str = ALICE, channel: str = DEPLOYS) -> None:
        assert (await self.post("/api/command", user=user, channel=channel, text=text))["ok"]

    async def state(self, user: str, channel: str, *, since: int = -1, wait: float = 0) -> Snapshot:
        params = {"user": user, "channel": channel, "since": str(since), "wait": str(wait)}
        async with self.http.get(f"{self.sim.url}/api/state", params=params) as resp:
            assert resp.status == 200, await resp.text()
            snap: Snapshot = await resp.json()
            return snap

    async def wait_for(
        self,
        predicate: Callable[[Snapshot], bool],
        *,
        user: str = ALICE,
        channel: str = DEPLOYS,
        timeout: float = 10,  # noqa: ASYNC109 - an assertion deadline, not a cancellation scope
    ) -> Snapshot:
        """Each round long-polls until the next change, so this waits on events, never on a clock."""
        since = -1
        snap: Snapshot = {}
        try:
            async with asyncio.timeout(timeout):
                while True:
                    snap = await self.state(user, channel, since=since, wait=timeout)
                    if predicate(snap):
                        return snap
                    since = snap["version"]
        except TimeoutError:
            raise AssertionError(f"the page never showed it; last snapshot:\n{json.dumps(snap, indent=1)}") from None


def messages(snap: Snapshot) -> list[dict[str, Any]]:
    return [item for item in snap["timeline"] if item["kind"] == "message"]


def text_of(item: dict[str, Any]) -> str:
    """Everything a person reads in a message: the fallback text and every text object in its blocks."""
    return json.dumps(item["blocks"]) + item["text"]


def run_modal(snap: Snapshot) -> bool:
    return snap["modal"] is not None and snap["modal"]["view"].get("callback_id") == "bkjob_run"


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with Simulator(DemoOptions(port=0, step_seconds=0.05, log_level="WARNING")) as sim:
        async with aiohttp.ClientSession() as http:
            yield Page(sim, http)


async def test_the_page_is_served(page: Page) -> None:
    async with page.http.get(page.sim.url + "/") as resp:
        assert resp.status == 200
        assert "bkjob-bot demo" in await resp.text()


async def test_run_modal_launch_and_result_in_the_thread(page: Page) -> None:
    await page.command("/bkjob run 100")
    snap = await page.wait_for(run_modal)
    view = snap["modal"]["view"]
    assert view["title"]["text"] == "Deploy web"
    inputs = {b["element"]["action_id"]: b["block_id"] for b in view["blocks"] if b["type"] == "input"}
    assert set(inputs) == {"servers", "version", "env", "ports"}  # the password is never an input

    # A host list that does not parse comes back as an inline error under its field; the modal stays open.
    answer = await page.post(
        "/api/submit", user=ALICE, view_id=view["id"], values={inputs["servers"]: {"servers": "not a host"}}
    )
    assert answer["answer"]["response_action"] == "errors"
    snap = await page.state(ALICE, DEPLOYS)
    assert inputs["servers"] in snap["modal"]["errors"]

    await page.post("/api/submit", user=ALICE, view_id=view["id"], values={inputs["version"]: {"version": "2.5.0"}})
    snap = await page.wait_for(lambda s: s["modal"] is None and any("Deploy web" in text_of(m) for m in messages(s)))
    snap = await page.wait_for(lambda s: any(r for m in messages(s) for r in m["replies"]))
    launch = next(m for m in messages(snap) if "Deploy web" in text_of(m))
    assert "2.5.0" in text_of(launch)  # the variable sent is on the launch message
    assert "Succeeded" in text_of(launch["replies"][0])
    snap = await page.wait_for(lambda s: "Succeeded" in text_of(messages(s)[0]) and messages(s)[0]["edited"])

    # Every call the bot made is in the log, and the app secret never is.
    titles = [entry["title"] for entry in snap["log"]]
    for call in ("views.open", "views.update", "get_job_detail", "execute_job", "chat.postMessage", "chat.update"):
        assert call in titles
    assert any(entry["direction"] == "BK-JOB → bot" for entry in snap["log"])
    assert page.sim.bk.app_secret not in json.dumps(snap)


async def test_a_failing_plan_mentions_the_requester(page: Page) -> None:
    await page.command("/bkjob run 102 --yes")
    snap = await page.wait_for(lambda s: any(r for m in messages(s) for r in m["replies"]))
    reply = messages(snap)[0]["replies"][0]
    assert "Failed" in text_of(reply) and f"<@{ALICE}>" in text_of(reply)
    # The failure digest: hosts grouped by what went wrong, the last lines of one log, the password masked.
    digest = text_of(reply)
    assert "Apply migrations" in digest and "exit code 3" in digest and "Duplicate entry" in digest
    assert "agent not installed" in digest and "timed out" in digest
    assert "plan-secret" not in json.dumps(reply)

    # #deploys offers full logs: the Logs button attaches them to the thread as a file.
    (actions,) = [b for b in reply["blocks"] if b["type"] == "actions"]
    (button,) = actions["elements"]
    await page.post(
        "/api/action",
        user=ALICE,
        channel=DEPLOYS,
        ts=reply["ts"],
        action_id=button["action_id"],
        block_id=actions.get("block_id", ""),
        value=button["value"],
        ephemeral=False,
    )
    snap = await page.wait_for(lambda s: any(r["files"] for m in messages(s) for r in m["replies"]))
    (shared,) = [f for r in messages(snap)[0]["replies"] for f in r["files"]]
    assert "===== 10.0.1.5" in shared["preview"] and "Duplicate entry" in shared["preview"]
    assert "plan-secret" not in shared["preview"] and "\x1b" not in shared["preview"]


async def test_ephemeral_answers_are_shown_only_to_whoever_asked(page: Page) -> None:
    await page.command("/bkjob help")
    snap = await page.wait_for(lambda s: any(i["kind"] == "ephemeral" for i in s["timeline"]))
    assert "/bkjob run" in next(i for i in snap["timeline"] if i["kind"] == "ephemeral")["text"]
    assert not [i for i in (await page.state(BOB, DEPLOYS))["timeline"] if i["kind"] == "ephemeral"]

    # Not a command the bot owns: Slackbot answers, and nothing reaches the bot.
    answer = await page.post("/api/command", user=ALICE, channel=DEPLOYS, text="hello everyone")
    assert answer == {"ok": False, "error": "not_a_bot_command"}
    await page.wait_for(lambda s: any(i.get("source") == "Slackbot" for i in s["timeline"]))


async def test_approval_channel_approve_as_someone_else(page: Page) -> None:
    await page.command("/bkjob run 101 --yes service=redis", channel=PROD)
    snap = await page.wait_for(
        lambda s: any("Approval needed" in text_of(m) for m in messages(s)), user=BOB, channel=PROD
    )
    request = next(m for m in messages(snap) if "Approval needed" in text_of(m))
    actions = next(b for b in request["blocks"] if b["type"] == "actions")
    approve = next(e for e in actions["elements"] if e["action_id"] == "bkjob_approve")

    def click(user: str) -> dict[str, Any]:
        return {
            "user": user,
            "channel": PROD,
            "ts": request["ts"],
            "action_id": approve["action_id"],
            "block_id": actions["block_id"],
            "value": approve["value"],
        }

    # The requester cannot approve their own launch: they are told so, and only they see it.
    await page.post("/api/action", **click(ALICE))
    await page.wait_for(lambda s: any(i["kind"] == "ephemeral" for i in s["timeline"]), channel=PROD)
    assert not [i for i in (await page.state(BOB, PROD))["timeline"] if i["kind"] == "ephemeral"]

    await page.post("/api/action", **click(BOB))
    snap = await page.wait_for(
        lambda s: any("Succeeded" in text_of(r) for m in messages(s) for r in m["replies"]), user=BOB, channel=PROD
    )
    assert any("Approved" in text_of(m) for m in messages(snap))
    assert "redis" in json.dumps(snap["timeline"])


def picker(snap: Snapshot) -> dict[str, Any] | None:
    """The plan picker in the open modal (an external_select in an actions block), if there is one."""
    if snap["modal"] is None:
        return None
    for block in snap["modal"]["view"]["blocks"]:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if element["type"] == "external_select":
                return {"block_id": block["block_id"], "action_id": element["action_id"]}
    return None


async def test_the_picker_finds_a_plan_as_you_type_and_fills_the_form(page: Page) -> None:
    await page.command("/bkjob run")
    snap = await page.wait_for(lambda s: picker(s) is not None)
    menu = picker(snap)
    assert menu is not None
    view_id = snap["modal"]["view"]["id"]
    answer = await page.post("/api/options", user=ALICE, view_id=view_id, value="deploy", **menu)
    groups = answer["answer"]["option_groups"]
    values = [o["value"] for g in groups for o in g["options"]]
    assert values[0] == "preset:deploy-web" and {"plan:100", "plan:104", "plan:105"} <= set(values)
    assert "plan:106" not in values  # "Rollback web" has no "deploy" in its name

    await page.post("/api/pick", user=ALICE, view_id=view_id, value="plan:100", text="Deploy web (100)", **menu)
    snap = await page.wait_for(lambda s: run_modal(s) and s["modal"]["view"]["title"]["text"] == "Deploy web")
    assert picker(snap) is not None  # still there: another plan can be chosen in the same form
    titles = [entry["title"] for entry in snap["log"]]
    assert any(t.startswith("block_suggestion") for t in titles) and "get_job_list" in titles


async def test_plans_lists_run_buttons_that_open_the_form(page: Page) -> None:
    await page.command("/bkjob plans rollback")
    snap = await page.wait_for(
        lambda s: any(i["kind"] == "ephemeral" and "Rollback web" in text_of(i) for i in s["timeline"])
    )
    item = next(i for i in snap["timeline"] if i["kind"] == "ephemeral" and "Rollback web" in text_of(i))
    button = next(b["accessory"] for b in item["blocks"] if "accessory" in b)
    await page.post(
        "/api/action", user=ALICE, channel=DEPLOYS, action_id=button["action_id"], value=button["value"], ephemeral=True
    )
    await page.wait_for(lambda s: run_modal(s) and s["modal"]["view"]["title"]["text"] == "Rollback web")


def button(item: dict[str, Any], action_id: str) -> tuple[str, dict[str, Any]]:
    """(block_id, element) of a button on a message or reply."""
    for block in item["blocks"]:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if element["action_id"] == action_id:
                return block["block_id"], element
    raise AssertionError(f"no {action_id} button on {text_of(item)}")


async def press(page: Page, item: dict[str, Any], action_id: str, *, user: str = ALICE) -> None:
    block_id, element = button(item, action_id)
    await page.post(
        "/api/action",
        user=user,
        channel=DEPLOYS,
        ts=item["ts"],
        action_id=action_id,
        block_id=block_id,
        value=element["value"],
    )


async def test_a_confirmation_step_is_answered_from_the_thread(page: Page) -> None:
    await page.command("/bkjob run 112 --yes")
    snap = await page.wait_for(
        lambda s: any("Waiting for confirmation" in text_of(r) for m in messages(s) for r in m["replies"])
    )
    launch = messages(snap)[0]
    waiting = next(r for r in launch["replies"] if "Waiting for confirmation" in text_of(r))
    assert "Is the canary healthy?" in text_of(waiting)
    await press(page, waiting, "bkjob_confirm")  # Alice launched it: the trigger user may confirm
    await page.wait_for(lambda s: any("Succeeded" in text_of(r) for m in messages(s) for r in m["replies"]))


async def test_a_failed_step_is_retried_from_the_launch_message(page: Page) -> None:
    await page.command("/bkjob run 102 --yes")
    snap = await page.wait_for(lambda s: any("bkjob_retry_failed" in text_of(m) for m in messages(s)))
    await press(page, messages(snap)[0], "bkjob_retry_failed")
    await page.wait_for(lambda s: any("after retry of step 2" in text_of(r) for m in messages(s) for r in m["replies"]))
