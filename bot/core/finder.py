"""The plan finder: each business's plan list kept in memory, so Slack's type-ahead is answered within 3 seconds.

Slack waits 3 s for a select menu's options and shows nothing after that. Reading 10,000 plans from BK-JOB
takes longer than a keystroke, so the finder answers from what it holds (a TTL cache, cachetools), refreshes
it in the background once it is older than `ttl`, and never makes a request wait on BK-JOB for longer than
the caller's budget. BK-JOB does not filter its plan lists by the caller's permissions (whoever may access the
business sees every plan of it), so one list per business serves everyone; the channel's policy filters what each
person is offered (`search`'s `allowed`), and BK-JOB still checks the person's own permissions on every launch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cachetools import LRUCache, TTLCache

from bot.bkjob.client import BkClient
from bot.bkjob.errors import BkError
from bot.bkjob.models import PlanSummary
from bot.core.background import Background

__all__ = ["MAX_QUERY", "Catalogue", "PlanFinder", "query_words"]

log = logging.getLogger(__name__)

PAGE = 1000
"""Rows per `get_job_list` / `get_job_plan_list` call: BK-JOB's own page limit for its list APIs."""
MAX_PLANS = 100_000
"""A business with more plans than this is read only this far: the picker still answers, from the newest."""
MAX_LISTS = 64
"""Business lists held at once; the least recently read is dropped first."""
RETRY_AFTER = 10.0
"""Seconds before a list BK-JOB refused is asked for again: a keystroke each is not a reason to ask again."""
FOUND_WORDS = 64
"""Searched words whose matches a list keeps, so the next keystroke narrows them instead of scanning again."""
STALE_FACTOR = 60
MAX_QUERY = 200
"""Characters of a typed query that are read: far longer than any plan name a person types, and short enough that
a pasted page in the picker costs a keystroke's work, not seconds of the event loop."""
"""A list older than `ttl` is refreshed; one older than `ttl * STALE_FACTOR` is dropped (BK-JOB down that long)."""


@dataclass(frozen=True)
class Catalogue:
    """The plans of one business as BK-JOB lists them, newest change first.

    Names are case-folded once, here, so that a keystroke is one scan of plain strings (10,000 plans: a few ms).
    """

    plans: tuple[PlanSummary, ...]
    loaded_at: float
    complete: bool = True
    folded: tuple[str, ...] = field(init=False, repr=False, compare=False)
    positions: Mapping[int, int] = field(init=False, repr=False, compare=False)
    _found: LRUCache[str, list[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "folded", tuple(plan.name.casefold() for plan in self.plans))
        object.__setattr__(self, "positions", {plan.bk_job_id: i for i, plan in enumerate(self.plans)})
        object.__setattr__(self, "_found", LRUCache(maxsize=FOUND_WORDS))

    def containing(self, word: str) -> list[int]:
        """Positions of the names holding `word` (case-folded), in the list's order.

        Typing adds a letter at a time, and every name holding "deplo" holds "depl": a keystroke scans only what
        the one before it matched, not the whole list (a third of a keystroke's CPU with 10,000 plans).
        """
        found = self._found.get(word)
        if found is None:
            names = self.folded
            # The longest remembered word this one extends: a look at each of the few remembered words (linear in
            # the word), not a lookup of each of its prefixes (quadratic).
            shorter = max((held for held in self._found.keys() if word.startswith(held)), key=len, default=None)
            if shorter is None:
                found = [i for i, name in enumerate(names) if word in name]
            else:
                found = [i for i in self._found[shorter] if word in names[i]]
            self._found[word] = found
        return found


class PlanFinder:
    """Per business: the plan list, one load at a time, refreshed in the background.

    A load is made as the BK-JOB user of the person whose request found the list missing or stale; a refusal
    (BK-JOB checks `access_business` on every call) is remembered for that person only, so it neither holds up
    nor is shown to anyone else.
    """

    def __init__(
        self,
        *,
        bk: BkClient,
        background: Background,
        ttl: float,
        page: int = PAGE,
        max_plans: int = MAX_PLANS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bk = bk
        self._background = background
        self._ttl = max(ttl, 0.001)
        self._page = page
        self._max_plans = max_plans
        self._clock = clock
        # 10,000 plans take about 8 MB with their index: 64 lists bound the memory at a few hundred MB at worst.
        self._lists: TTLCache[int, Catalogue] = TTLCache(maxsize=MAX_LISTS, ttl=self._ttl * STALE_FACTOR, timer=clock)
        self._loading: dict[int, asyncio.Task[Catalogue | None]] = {}
        self._failed: TTLCache[tuple[int, str], tuple[float, BkError]] = TTLCache(
            maxsize=256, ttl=RETRY_AFTER * 6, timer=clock
        )

    def cached(self, bk_biz_id: int, bk_username: str) -> Catalogue | None:
        """What is held now, fresh or stale, without waiting; a stale or missing list starts a refresh."""
        held = self._lists.get(bk_biz_id)
        failed = self._failed.get((bk_biz_id, bk_username))
        if failed is not None and self._clock() - failed[0] < RETRY_AFTER:
            return held
        if held is None or self._clock() - held.loaded_at >= self._ttl:
            self._refresh(bk_biz_id, bk_username)
        return held

    def failure(self, bk_biz_id: int, bk_username: str) -> BkError | None:
        """Why the last read of this list failed (a refusal such as 9900403 is worth telling), if it did."""
        failed = self._failed.get((bk_biz_id, bk_username))
        return failed[1] if failed is not None else None

    async def catalogue(self, bk_biz_id: int, bk_username: str, *, wait: float) -> Catalogue | None:
        """The list, waiting at most `wait` seconds for a load when nothing is held yet (None after that)."""
        held = self.cached(bk_biz_id, bk_username)
        if held is not None:
            return held
        task = self._loading.get(bk_biz_id)
        if task is None or wait <= 0:
            return None
        # asyncio.wait leaves the load running when the budget is spent: the next keystroke finds it done.
        done, _ = await asyncio.wait({task}, timeout=wait)
        if not done or task.cancelled() or task.exception() is not None:
            return None
        return task.result()

    def search(
        self,
        catalogue: Catalogue,
        words: Sequence[str],
        *,
        allowed: Iterable[int] | None = None,
        first: Sequence[int] = (),
        limit: int = 100,
    ) -> list[PlanSummary]:
        """Matching plans: `first` (a person's recent plans) in their order, then BK-JOB's order (newest change).

        `allowed` is the channel's plan list (None: any). The words are read to MAX_QUERY characters.
        """
        words = query_words(" ".join(words))
        permitted = set(allowed) if allowed is not None else None
        folded = [word.casefold() for word in words]
        names = catalogue.folded
        wanted: list[int] = []
        if len(words) == 1 and words[0].isascii() and words[0].isdigit():
            by_id = catalogue.positions.get(int(words[0]))
            wanted = [by_id] if by_id is not None else []
        recent = [catalogue.positions[i] for i in first if i in catalogue.positions]
        hits = _containing(catalogue, folded)
        found: list[PlanSummary] = []
        seen: set[int] = set()
        for i in (*wanted, *(i for i in recent if all(word in names[i] for word in folded))):
            self._take(catalogue.plans[i], permitted, found, seen)
        for i in hits:
            if len(found) >= limit:
                break
            self._take(catalogue.plans[i], permitted, found, seen)
        return found[:limit]

    @staticmethod
    def _take(plan: PlanSummary, permitted: set[int] | None, found: list[PlanSummary], seen: set[int]) -> None:
        if plan.bk_job_id not in seen and (permitted is None or plan.bk_job_id in permitted):
            seen.add(plan.bk_job_id)
            found.append(plan)

    def _refresh(self, bk_biz_id: int, bk_username: str) -> None:
        """One load per business at a time; it outlives the request that started it (Background holds it)."""
        if bk_biz_id in self._loading:
            return
        task = self._background.spawn(self._load(bk_biz_id, bk_username), name=f"plan-list-{bk_biz_id}")
        self._loading[bk_biz_id] = task
        task.add_done_callback(lambda _: self._loading.pop(bk_biz_id, None))

    async def _load(self, bk_biz_id: int, bk_username: str) -> Catalogue | None:
        """Every page, newest change first; a failure keeps what was held (a picker on a stale list beats none).

        BK-JOB cuts a page, then drops the plans whose template is gone: a page can come back short (even empty)
        before the end. So v3 reads while `start < total`, and v2 (no total) until a page comes back empty.
        """
        key = (bk_biz_id, bk_username)
        plans: list[PlanSummary] = []
        seen: set[int] = set()
        start = 0
        complete = False
        try:
            while start < self._max_plans:
                page = await self._bk.list_plans(
                    bk_biz_id=bk_biz_id, bk_username=bk_username, start=start, length=self._page
                )
                # BK-JOB sorts by last change: a plan edited between two pages can show up twice.
                for plan in page.plans:
                    if plan.bk_job_id not in seen:
                        seen.add(plan.bk_job_id)
                        plans.append(plan)
                start += self._page
                ended = start >= page.total if page.total is not None else not page.plans
                if ended:
                    complete = True
                    break
        except BkError as exc:
            log.warning("reading the plan list of business %s failed: %s", bk_biz_id, exc)
            self._failed[key] = (self._clock(), exc)
            return self._lists.get(bk_biz_id)
        self._failed.pop(key, None)
        if not complete:
            log.warning("business %s has more than %s plans; the picker offers the newest", bk_biz_id, len(plans))
        catalogue = Catalogue(plans=tuple(plans), loaded_at=self._clock(), complete=complete)
        self._lists[bk_biz_id] = catalogue
        return catalogue


def query_words(typed: str) -> list[str]:
    """The words of what a person typed, read to its first MAX_QUERY characters."""
    return typed[:MAX_QUERY].split()


def _containing(catalogue: Catalogue, words: Sequence[str]) -> list[int]:
    """Positions of the names holding every word: the first word's from the list's memory, then one list
    comprehension per further word over those (a generator per name costs more than the scan itself)."""
    if not words:
        return list(range(len(catalogue.folded)))
    names = catalogue.folded
    found = catalogue.containing(words[0])
    for word in words[1:]:
        found = [i for i in found if word in names[i]]
    return found
