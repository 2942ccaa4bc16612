"""Finding plans by name over HTTP: the fake BK-JOB's plan list (v2 `get_job_list`, v3 `get_job_plan_list`)
as BK-JOB filters and pages it, the client's `list_plans`, and the plan finder's cache (each test runs as
`[v2]` and `[v3]`, see conftest)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.bkjob.client import BkClient
from bot.bkjob.errors import BkApiError
from bot.bkjob.esb import EsbV2Client
from bot.bkjob.gateway import ApigwV3Client
from bot.bkjob.models import PlanSummary
from bot.core.background import Background
from bot.core.finder import Catalogue, PlanFinder
from tests.conftest import APP_CODE, APP_SECRET, BIZ
from tests.fakes import FakeBkJob

USER = "alice"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def bkc(session: aiohttp.ClientSession, bk: FakeBkJob) -> BkClient:
    cls: type[BkClient] = ApigwV3Client if bk.api_version == "v3" else EsbV2Client
    return cls(
        session=session, api_root=bk.base_url, app_code=APP_CODE, app_secret=APP_SECRET, timeout=2, plan_cache_ttl=60
    )


def add_plans(bk: FakeBkJob, names: dict[int, str], biz: int = BIZ) -> None:
    for job_id, name in names.items():
        bk.add_plan(biz, job_id, name, steps=[{"name": "one"}])


# -- the fake, on the wire ----------------------------------------------------------------------------------


async def raw_list(session: aiohttp.ClientSession, bk: FakeBkJob, **params: str | int) -> dict[str, Any]:
    """Call the plan list as a third party would, to check the fake's wire shapes."""
    auth = json.dumps({"bk_app_code": APP_CODE, "bk_app_secret": APP_SECRET, "bk_username": USER})
    # v3: the app-state resource (`/api/v3/system/...`), the user in X-Bk-Username.
    headers = {"X-Bkapi-Authorization": auth, "X-Bk-Username": USER}
    if bk.api_version == "v3":
        query = {"bk_scope_type": "biz", "bk_scope_id": str(BIZ), **{k: str(v) for k, v in params.items()}}
        async with session.get(bk.url("get_job_plan_list"), params=query, headers=headers) as resp:
            return dict(await resp.json())
    async with session.post(bk.url("get_job_list"), json={"bk_biz_id": BIZ, **params}, headers=headers) as resp:
        return dict(await resp.json())


async def test_fake_filters_with_like_and_pages_in_each_wire_shape(
    session: aiohttp.ClientSession, bk: FakeBkJob
) -> None:
    add_plans(bk, {201: "Deploy API", 202: "deploy_web", 203: "Rollback web", 204: "deployXweb"})
    answer = await raw_list(session, bk, name="DEPLOY", start=0, length=2)
    assert answer["result"] is True
    data: Any = answer["data"]
    if bk.api_version == "v3":
        assert isinstance(data, dict) and data["total"] == 4 and data["start"] == 0 and data["length"] == 2
        ids = [row["id"] for row in data["data"]]
        assert "bk_job_id" not in data["data"][0]
    else:
        assert isinstance(data, list)  # v2: a bare list of rows, no total
        ids = [row["bk_job_id"] for row in data]
    assert len(ids) == 2 and set(ids) <= {100, 201, 202, 204}  # "Deploy web" is plan 100 (conftest)
    # LIKE's `_` matches any one character, as in JOB (the name is not escaped).
    answer = await raw_list(session, bk, name="deploy_web", start=0, length=10)
    data = answer["data"]
    rows = data["data"] if isinstance(data, dict) else data
    names = sorted(row["name"] for row in rows)
    assert names == ["Deploy web", "deployXweb", "deploy_web"]


async def test_v3_length_defaults_to_20_and_v2_without_length_lists_all(
    session: aiohttp.ClientSession, bk: FakeBkJob
) -> None:
    add_plans(bk, {1000 + i: f"plan {i}" for i in range(30)})
    answer = await raw_list(session, bk)
    data = answer["data"]
    if bk.api_version == "v3":
        assert isinstance(data, dict) and len(data["data"]) == 20 and data["total"] == 31
    else:
        assert isinstance(data, list) and len(data) == 31


# -- the client -----------------------------------------------------------------------------------------------


async def test_list_plans_sends_the_name_and_page_and_reads_rows(bkc: BkClient, bk: FakeBkJob) -> None:
    add_plans(bk, {201: "Deploy API", 203: "Rollback web"})
    page = await bkc.list_plans(bk_biz_id=BIZ, bk_username=USER, name="deploy", start=0, length=50)
    assert sorted(p.bk_job_id for p in page.plans) == [100, 201]
    assert {p.name for p in page.plans} == {"Deploy web", "Deploy API"}
    assert page.total == (2 if bk.api_version == "v3" else None)
    (req,) = bk.requests("get_job_list")
    assert req.body["name"] == "deploy" and str(req.body["length"]) == "50" and str(req.body["start"]) == "0"
    if bk.api_version == "v3":
        assert req.method == "GET" and req.body["bk_scope_id"] == str(BIZ) and "bk_app_secret" not in req.body
    else:
        assert req.method == "POST" and req.body["bk_biz_id"] == BIZ


async def test_list_plans_reports_jobs_refusal(bkc: BkClient, bk: FakeBkJob) -> None:
    with pytest.raises(BkApiError) as caught:
        await bkc.list_plans(bk_biz_id=77, bk_username=USER)
    assert caught.value.code == 1243049


# -- the finder -----------------------------------------------------------------------------------------------


async def test_finder_reads_every_page_of_10000_plans_once_and_answers_from_memory(
    bkc: BkClient, bk: FakeBkJob
) -> None:
    add_plans(bk, {10_000 + i: f"service {i:05d} deploy" for i in range(10_000)})
    background = Background()
    finder = PlanFinder(bk=bkc, background=background, ttl=300)
    catalogue = await finder.catalogue(BIZ, USER, wait=30)
    assert catalogue is not None and catalogue.complete and len(catalogue.plans) == 10_001
    # Pages of 1000: 10 full, one short; v2 (no total) also reads the empty page that ends the list.
    pages = 11 if bk.api_version == "v3" else 12
    assert len(bk.requests("get_job_list")) == pages
    found = finder.search(catalogue, ["00042"], limit=100)
    assert [p.bk_job_id for p in found] == [10_042]
    assert len(finder.search(catalogue, ["deploy"], limit=100)) == 100
    # Answered from memory: no new request for another search.
    assert finder.cached(BIZ, USER) is catalogue and len(bk.requests("get_job_list")) == pages
    await background.close()


async def test_finder_serves_the_stale_list_while_it_refreshes_in_the_background(bkc: BkClient, bk: FakeBkJob) -> None:
    now = [0.0]
    background = Background()
    finder = PlanFinder(bk=bkc, background=background, ttl=60, clock=lambda: now[0])
    first = await finder.catalogue(BIZ, USER, wait=5)
    assert first is not None and [p.bk_job_id for p in first.plans] == [100]
    load = 1 if bk.api_version == "v3" else 2  # v2 (no total) reads on to the empty page that ends the list
    assert len(bk.requests("get_job_list")) == load
    add_plans(bk, {555: "New plan"})
    now[0] = 61.0  # older than the TTL: the old list answers at once, a refresh starts
    bk.delay_next("get_job_list", 30)
    assert finder.cached(BIZ, USER) is first
    await bk.wait_for_request("get_job_list", count=load + 1)
    assert finder.cached(BIZ, USER) is first  # still loading: still the old list, and no second load
    await background.close(grace=0)
    assert len(bk.requests("get_job_list")) == load + 1
    # BK-JOB answers again: the next refresh brings the new plan.
    refreshed = await finder.catalogue(BIZ, USER, wait=5)
    assert refreshed is first
    await bk.wait_for_request("get_job_list", count=load + 2)
    await background.idle()
    latest = finder.cached(BIZ, USER)
    assert latest is not None and {p.bk_job_id for p in latest.plans} == {100, 555}
    await background.close()


async def test_finder_gives_up_waiting_but_keeps_loading(bkc: BkClient, bk: FakeBkJob) -> None:
    background = Background()
    finder = PlanFinder(bk=bkc, background=background, ttl=60)
    bk.delay_next("get_job_list", 0.5)
    assert await finder.catalogue(BIZ, USER, wait=0.01) is None  # the budget is spent, the load goes on
    await background.idle()
    held = finder.cached(BIZ, USER)
    assert held is not None and [p.bk_job_id for p in held.plans] == [100]
    await background.close()


@given(
    names=st.lists(st.text(alphabet="abcdeDE 12", min_size=0, max_size=12), max_size=60),
    typed=st.lists(st.text(alphabet="abcdE 1", min_size=1, max_size=6), min_size=1, max_size=12),
)
def test_a_keystroke_narrowing_what_the_last_one_matched_finds_what_a_full_scan_finds(
    names: list[str], typed: list[str]
) -> None:
    """The list remembers each word's matches and narrows them as a word grows; whatever order words come in
    (typed on, deleted, retyped, another word), the answer is the full scan's, in the list's order."""
    catalogue = Catalogue(
        plans=tuple(PlanSummary(bk_job_id=i + 1, name=name) for i, name in enumerate(names)), loaded_at=0.0
    )
    for text in typed:
        for n in range(1, len(text) + 1):
            word = text[:n].casefold()
            assert catalogue.containing(word) == [i for i, name in enumerate(names) if word in name.casefold()]


async def test_finder_reads_past_a_page_bk_job_cut_short(bkc: BkClient, bk: FakeBkJob) -> None:
    """A plan whose template is gone takes its place in a page and is dropped after the cut (fillTemplateInfo):
    a short page is not the end. v2 reads until a page comes back empty, v3 until `start` reaches `total`."""
    add_plans(bk, {300 + i: f"plan {i:02d}" for i in range(25)})
    bk.lose_template(BIZ, 324)  # the newest: the first page of 10 comes back with 9
    background = Background()
    finder = PlanFinder(bk=bkc, background=background, ttl=60, page=10)
    catalogue = await finder.catalogue(BIZ, USER, wait=5)
    assert catalogue is not None and catalogue.complete
    assert {p.bk_job_id for p in catalogue.plans} == {100, *range(300, 324)}
    starts = [int(r.body["start"]) for r in bk.requests("get_job_list")]
    assert starts == ([0, 10, 20] if bk.api_version == "v3" else [0, 10, 20, 30])
    await background.close()


async def test_finder_holds_one_list_per_business_whoever_asks(bkc: BkClient, bk: FakeBkJob) -> None:
    """BK-JOB does not filter the plan lists by the caller's permissions: one read serves everyone."""
    background = Background()
    finder = PlanFinder(bk=bkc, background=background, ttl=60)
    first = await finder.catalogue(BIZ, USER, wait=5)
    assert first is not None
    assert await finder.catalogue(BIZ, "bob", wait=5) is first
    assert [int(r.body["start"]) for r in bk.requests("get_job_list")] == ([0] if bk.api_version == "v3" else [0, 1000])
    await background.close()


def test_a_keystroke_costs_work_in_proportion_to_its_length() -> None:
    """Finding the longest earlier word a keystroke extends must not try every prefix of it (100,000 prefixes of
    a 100,000-character word is 5 * 10^9 characters hashed): the work counted is linear in the word's length."""

    class Probed(dict[str, list[int]]):
        """The list's memory of earlier words, counting the characters of every key it is asked about."""

        chars = 0

        def __contains__(self, key: object) -> bool:
            Probed.chars += len(key) if isinstance(key, str) else 0
            return super().__contains__(key)

        def get(self, key: str, default: Any = None) -> Any:
            Probed.chars += len(key)
            return super().get(key, default)

    catalogue = Catalogue(plans=(PlanSummary(bk_job_id=1, name="deploy web"),), loaded_at=0.0)
    object.__setattr__(catalogue, "_found", Probed())
    catalogue.containing("d")
    catalogue.containing("de")
    for length in (1_000, 4_000):
        Probed.chars = 0
        assert catalogue.containing("de" + "x" * length) == []
        assert Probed.chars <= 4 * length, (length, Probed.chars)
