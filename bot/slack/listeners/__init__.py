"""Slack's listeners, grouped by feature, and the one place that registers them all on Bolt's app.

Each feature's listeners ack first (Slack's 3 seconds) and hand the slow part to `Background`:
`launch` (`/bkjob run`, the run form, the Run button), `forms` (the run form built, filled and read), `finder` (the
plan picker and `/bkjob plans`), `approvals` (Approve, Reject and its form), `runcontrol` (the operation buttons,
`/bkjob stop|retry`), `logs`, `lists` (`/bkjob pending|history|status`) and `router` (the `/bkjob` command handed
to those, and what none of them matches).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from slack_bolt.async_app import AsyncApp

from bot.core.approvals import Approvals
from bot.core.audit import Audit
from bot.core.background import Background
from bot.core.finder import PlanFinder
from bot.core.identity import Identities
from bot.core.launches import Launches
from bot.core.logfiles import LogFiles
from bot.core.policy import Policy
from bot.core.runcontrol import Operations
from bot.core.tokens import Signer
from bot.slack.blocks.approvals import APPROVE_ACTION, REJECT_ACTION, REJECT_VIEW
from bot.slack.blocks.finder import PLAN_PICKER_ACTION, RUN_PLAN_ACTION
from bot.slack.blocks.launch import RUN_VIEW
from bot.slack.blocks.results import LOGS_ACTION
from bot.slack.blocks.runcontrol import OPEN_ACTION
from bot.slack.listeners.approvals import ApprovalListeners
from bot.slack.listeners.finder import OPTIONS_BUDGET, FinderListeners
from bot.slack.listeners.forms import RunForms
from bot.slack.listeners.launch import LaunchListeners
from bot.slack.listeners.lists import ListListeners
from bot.slack.listeners.logs import LogListeners
from bot.slack.listeners.router import Router
from bot.slack.listeners.runcontrol import OPERATIONS, RunControlListeners
from bot.slack.notifier import Notifier
from bot.store import Store

__all__ = ["Listeners"]

_ANY = re.compile(r".*")


class Listeners:
    """Builds each feature's listeners from the bot's parts, and registers every Slack surface the bot answers."""

    def __init__(
        self,
        *,
        store: Store,
        launches: Launches,
        approvals: Approvals,
        notifier: Notifier,
        identities: Identities,
        audit: Audit,
        policy: Policy,
        signer: Signer,
        default_biz: int | None,
        web_root: str | None,
        background: Background,
        finder: PlanFinder,
        options_budget: float = OPTIONS_BUDGET,
        list_wait: float = 10.0,
        operations: Operations | None = None,
        clock: Callable[[], float] = time.time,
        log_files: LogFiles | None = None,
    ) -> None:
        forms = RunForms(notifier=notifier, launches=launches, policy=policy, signer=signer)
        self.finder = FinderListeners(
            store=store,
            notifier=notifier,
            identities=identities,
            audit=audit,
            policy=policy,
            signer=signer,
            default_biz=default_biz,
            background=background,
            finder=finder,
            forms=forms,
            options_budget=options_budget,
            list_wait=list_wait,
        )
        self.launch = LaunchListeners(
            store=store,
            launches=launches,
            approvals=approvals,
            notifier=notifier,
            audit=audit,
            policy=policy,
            signer=signer,
            default_biz=default_biz,
            background=background,
            forms=forms,
            finder=self.finder,
            clock=clock,
        )
        self.approvals = ApprovalListeners(approvals=approvals, notifier=notifier, signer=signer, background=background)
        self.runcontrol = RunControlListeners(
            store=store, notifier=notifier, background=background, operations=operations, clock=clock
        )
        self.logs = LogListeners(notifier=notifier, background=background, log_files=log_files)
        self.lists = ListListeners(
            store=store,
            launches=launches,
            notifier=notifier,
            identities=identities,
            policy=policy,
            default_biz=default_biz,
            web_root=web_root,
        )
        self.router = Router(
            store=store,
            notifier=notifier,
            background=background,
            launch=self.launch,
            lists=self.lists,
            finder=self.finder,
            runcontrol=self.runcontrol,
            logs=self.logs,
            clock=clock,
        )

    def register(self, app: AsyncApp) -> None:
        app.command("/bkjob")(self.router.on_command)
        app.view(RUN_VIEW)(self.launch.on_run_submitted)
        app.action(APPROVE_ACTION)(self.approvals.on_approve)
        app.action(REJECT_ACTION)(self.approvals.on_reject)
        app.view(REJECT_VIEW)(self.approvals.on_reject_submitted)
        app.options(PLAN_PICKER_ACTION)(self.finder.on_plan_options)
        app.action(PLAN_PICKER_ACTION)(self.finder.on_plan_picked)
        app.action(RUN_PLAN_ACTION)(self.launch.on_run_button)
        for action_id in OPERATIONS:
            app.action(action_id)(self.runcontrol.on_operation)
        app.action(OPEN_ACTION)(self.runcontrol.on_open)
        app.action(LOGS_ACTION)(self.logs.on_logs)
        # Registered last, so they only see what nothing above matched: buttons and forms of another version.
        app.action(_ANY)(self.router.on_unknown_action)
        app.view(_ANY)(self.router.on_unknown_view)
        app.error(self.router.on_error)
