"""Finding plans (issue 17): the plan picker's options and picks, and `/bkjob plans` with its presets."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from bot.core.audit import Audit
from bot.core.background import Background
from bot.core.finder import PlanFinder, query_words
from bot.core.identity import Identities
from bot.core.policy import Policy
from bot.core.presets import Preset
from bot.core.tokens import Signer
from bot.errors import BotError
from bot.slack.blocks.finder import PlanChoice, finding_modal, plan_options, plans_list
from bot.slack.blocks.launch import error_modal, picker_modal
from bot.slack.blocks.text import untrusted
from bot.slack.commands import PlansCommand, RunCommand
from bot.slack.errors import SlackError
from bot.slack.listeners.forms import RunForms
from bot.slack.listeners.shared import Ack, Respond, cut, ephemeral, message
from bot.slack.notifier import Notifier
from bot.slack.payloads import PickMeta, RunMeta, verified
from bot.slack.words import explain, words
from bot.store import Store

__all__ = ["OPTIONS_BUDGET", "FinderListeners"]

log = logging.getLogger(__name__)

OPTIONS_BUDGET = 2.0
"""Seconds an options request may wait for a plan list being read: Slack shows nothing after 3 s."""
_RECENT = 10


class FinderListeners:
    """The plan picker in the run form, and `/bkjob plans`: a person finds a plan by words, not by its ID."""

    def __init__(
        self,
        *,
        store: Store,
        notifier: Notifier,
        identities: Identities,
        audit: Audit,
        policy: Policy,
        signer: Signer,
        default_biz: int | None,
        background: Background,
        finder: PlanFinder,
        forms: RunForms,
        options_budget: float = OPTIONS_BUDGET,
        list_wait: float = 10.0,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._identities = identities
        self._audit = audit
        self._policy = policy
        self._signer = signer
        self._default_biz = default_biz
        self._background = background
        self._finder = finder
        self._forms = forms
        self._options_budget = options_budget
        self._list_wait = list_wait

    def _business(self, channel: str, biz_id: int | None) -> tuple[int | None, str | None]:
        """The business to look in, or why not: none named, or one the channel's policy does not allow."""
        policy = self._policy.for_channel(channel)
        biz = biz_id or policy.bk_biz_id or self._default_biz
        if biz is None:
            return None, ":warning: Which business? Add `--biz &lt;bk_biz_id&gt;` (no default is set here)."
        refusal = policy.read_refusal(channel=channel, bk_biz_id=biz)
        if refusal is not None:
            return None, f":no_entry: {words(refusal)}"
        return biz, None

    async def _recent(self, user: str, channel: str, biz: int) -> list[int]:
        """The plans this person launched here lately, newest first: what the picker offers first."""
        recent: list[int] = []
        for launch in await self._store.recent_launches(channel, 200):
            if launch.requester == user and launch.bk_biz_id == biz and launch.bk_job_id not in recent:
                recent.append(launch.bk_job_id)
        return recent[:_RECENT]

    async def open_picker(self, cmd: RunCommand, command: Mapping[str, Any], respond: Respond) -> None:
        """Open the form at once (the trigger lasts 3 s), then show the picker, or the plan when one matches."""
        user, channel = str(command["user_id"]), str(command["channel_id"])
        biz, problem = self._business(channel, cmd.biz_id)
        if biz is None:
            await ephemeral(respond, problem or "")
            return
        try:
            view_id, view_hash = await self._notifier.open_view(str(command["trigger_id"]), finding_modal())
        except SlackError as exc:
            await ephemeral(respond, explain(exc))
            return
        try:
            bk_username = await self._identities.bk_username(user)
            meta: dict[str, Any] = {
                "c": channel,
                "b": biz,
                "u": user,
                "k": bk_username,
                "r": await self._recent(user, channel, biz),
                "q": " ".join(cmd.words),
            }
            view = await self._picker_view(meta)
        except BotError as exc:
            view = error_modal(explain(exc))
        await self._forms.fill(view_id, view, view_hash, respond)

    async def _picker_view(self, meta: dict[str, Any], note: str | None = None) -> dict[str, Any]:
        """With words typed on the command line, one matching plan fills the form at once; else the picker says
        how many match. The list is read now, so that the picker's first keystroke is answered from memory."""
        catalogue = await self._finder.catalogue(meta["b"], meta["k"], wait=self._list_wait if meta["q"] else 0)
        words = str(meta["q"]).split()
        if words and catalogue is not None and note is None:
            allowed = self._policy.for_channel(meta["c"]).allowed_jobs
            found = self._finder.search(catalogue, words, allowed=allowed, limit=2)
            presets = self._usable_presets(meta["c"], meta["b"], words)
            if len(found) == 1 and not presets:
                return await self._forms.build({**meta, "p": "run", "j": found[0].bk_job_id}, prefill={}, picker=True)
            shown = cut(" ".join(words), 60)
            count = "No plan" if not found and not presets else "Several plans" if len(found) > 1 else "A preset"
            note = f"{count} here match *{untrusted(shown)}*: open the menu above, or type other words."
        elif note is None and catalogue is None and (failure := self._finder.failure(meta["b"], meta["k"])):
            note = explain(failure)
        return picker_modal(bk_biz_id=meta["b"], metadata=self._signer.sign({**meta, "p": "pick"}), note=note)

    def _usable_presets(self, channel: str, biz: int, words: Sequence[str]) -> list[tuple[str, Preset]]:
        """Presets of this business that this channel may use, whose name (or description) has every word."""
        found = []
        for name, preset in sorted(self._policy.presets.items()):
            if preset.bk_biz_id != biz or self._policy.preset_refusal(name, preset, channel) is not None:
                continue
            text = f"{name} {preset.description}".casefold()
            if all(word.casefold() in text for word in words):
                found.append((name, preset))
        return found

    def _picker_meta(self, body: Mapping[str, Any]) -> PickMeta | RunMeta | None:
        """The picker's context from its form's signed metadata, only for the person it was opened for."""
        view = body.get("view") or {}
        metadata = view.get("private_metadata") if isinstance(view, Mapping) else None
        meta: PickMeta | RunMeta | None = verified(self._signer, PickMeta, metadata) or verified(
            self._signer, RunMeta, metadata
        )
        if meta is None or meta.k is None or meta.u != str(body["user"]["id"]):
            return None
        return meta

    async def on_plan_options(self, ack: Ack, body: dict[str, Any]) -> None:
        """Slack's options request: answered from memory within its 3 seconds, whatever BK-JOB is doing."""
        meta = self._picker_meta(body)
        if meta is None or meta.k is None:
            log.warning("refused an options request with foreign metadata from %s", body["user"]["id"])
            await ack(options=[])
            return
        words = query_words(str(body.get("value") or "")) or query_words(meta.q)
        presets = [
            PlanChoice.preset(name, preset.description or preset.summary())
            for name, preset in self._usable_presets(meta.c, meta.b, words)
        ]
        catalogue = await self._finder.catalogue(meta.b, meta.k, wait=self._options_budget)
        if catalogue is None:
            failure = self._finder.failure(meta.b, meta.k)
            notice = f"BK-JOB: {failure}" if failure else "Still reading the plans from BK-JOB; type again"
            await ack(**plan_options(presets, [], [], notice=notice))
            return
        allowed = self._policy.for_channel(meta.c).allowed_jobs
        found = self._finder.search(catalogue, words, allowed=allowed, first=meta.r, limit=100 - len(presets))
        recent = [PlanChoice.plan(p.bk_job_id, p.name) for p in found if p.bk_job_id in meta.r]
        others = [PlanChoice.plan(p.bk_job_id, p.name) for p in found if p.bk_job_id not in meta.r]
        await ack(**plan_options(presets, recent, others))

    async def on_plan_picked(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        self._background.spawn(self._picked(body), name="plan-picked")

    async def _picked(self, body: Mapping[str, Any]) -> None:
        """A plan (or preset) chosen in the picker fills the same form, as `/bkjob run <id>` would."""
        meta = self._picker_meta(body)
        selected = body["actions"][0].get("selected_option") or {}
        choice = PlanChoice.parse(str(selected.get("value") or ""))
        view = body.get("view") or {}
        if meta is None or choice is None:
            log.info("ignored a plan pick without a plan or with foreign metadata")
            return
        picker = {"c": meta.c, "b": meta.b, "u": meta.u, "k": meta.k, "r": list(meta.r), "q": meta.q}
        kind, key, _ = choice
        if kind == "preset":
            form = await self._picked_preset(key, picker)
        else:
            refusal = self._policy.for_channel(meta.c).refusal(channel=meta.c, bk_biz_id=meta.b, bk_job_id=int(key))
            if refusal is not None:
                await self._audit.record(meta.u, "launch_refused", channel=meta.c, detail=words(refusal))
                form = await self._picker_view(picker, note=f":no_entry: {words(refusal)}")
            else:
                form = await self._forms.build({**picker, "p": "run", "j": int(key)}, prefill={}, picker=True)
        try:
            await self._notifier.update_view(str(view.get("id")), form, view_hash=str(view.get("hash") or "") or None)
        except SlackError as exc:
            log.info("could not fill the form after a plan was picked: %s", exc)

    async def _picked_preset(self, name: str, picker: dict[str, Any]) -> dict[str, Any]:
        preset = self._policy.preset(name)
        refused = self._policy.preset_refusal(name, preset, picker["c"]) if preset else None
        refusal = words(refused) if refused is not None else None if preset else f"No preset `{name}`."
        if preset is None or refusal is not None or preset.bk_biz_id != picker["b"]:
            return await self._picker_view(
                picker, note=f":no_entry: {refusal or 'That preset is not for this business.'}"
            )
        meta = {**picker, "p": "run", "j": preset.plan}
        return await self._forms.build(meta, prefill=preset.values, preset=(name, preset), picker=True)

    async def plans(self, cmd: PlansCommand, command: Mapping[str, Any], respond: Respond) -> None:
        """`/bkjob plans [words]`: the channel's presets and plans that match, each with a Run button."""
        user, channel = str(command["user_id"]), str(command["channel_id"])
        biz, problem = self._business(channel, cmd.biz_id)
        if biz is None:
            await ephemeral(respond, problem or "")
            return
        try:
            bk_username = await self._identities.bk_username(user)
        except BotError as exc:
            await ephemeral(respond, explain(exc))
            return
        presets = [
            (PlanChoice.preset(n, p.summary()), p.description or p.summary())
            for n, p in self._usable_presets(channel, biz, cmd.words)
        ]
        catalogue = await self._finder.catalogue(biz, bk_username, wait=self._list_wait)
        if catalogue is None:
            failure = self._finder.failure(biz, bk_username)
            note = (
                explain(failure)
                if failure
                else ":hourglass_flowing_sand: BK-JOB has not answered with its plan list yet; try again in a moment."
            )
            await respond(
                **message(plans_list(words=cmd.words, bk_biz_id=biz, presets=presets, plans=[], more=False, note=note))
            )
            return
        allowed = self._policy.for_channel(channel).allowed_jobs
        recent = await self._recent(user, channel, biz)
        found = self._finder.search(catalogue, cmd.words, allowed=allowed, first=recent, limit=21)
        listed = plans_list(words=cmd.words, bk_biz_id=biz, presets=presets, plans=found[:20], more=len(found) > 20)
        await respond(**message(listed))
