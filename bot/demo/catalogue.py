"""The demo's world: its people, channels, policy and BK-JOB plans, realistic enough to show every feature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.core.policy import Policy
from bot.fakes import FakeBkJob
from bot.fakes.bkjob import HostOutcome

__all__ = [
    "BIZ",
    "CHANNELS",
    "GROUPS",
    "MORE_PLANS",
    "PLANS",
    "USERS",
    "Channel",
    "DemoPlan",
    "Person",
    "add_plans",
    "demo_policy",
    "slack_usergroups",
    "slack_users",
]

BIZ = 3


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    bk_username: str


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    topic: str
    approval: bool


@dataclass(frozen=True)
class DemoPlan:
    """A plan and how its simulated run ends: `fails_at` is the 0-based step that fails, None to succeed."""

    bk_job_id: int
    name: str
    global_vars: Sequence[Mapping[str, Any]]
    steps: Sequence[str]
    fails_at: int | None = None
    confirm_at: int | None = None
    """The 0-based step that is a manual confirmation: the job waits in 7 until someone answers it in Slack."""
    confirm_message: str = ""
    hosts: Sequence[Mapping[str, Any]] = ()
    """The steps' targets (default: the fake's one host)."""
    outcomes: Mapping[str, HostOutcome] = field(default_factory=dict)
    """How each host of the failing step ends, and what it prints: the failure digest shows these."""


USERS: tuple[Person, ...] = (
    Person("U0ALICE", "alice", "alice"),
    Person("U0BOB", "bob", "bob"),
    Person("U0CAROL", "carol", "carol"),
)
# Approvals may name a user group; Carol is on call, so she may approve through the group.
GROUPS: Mapping[str, tuple[str, str]] = {"S0ONCALL": ("oncall", "U0CAROL")}

CHANNELS: tuple[Channel, ...] = (
    Channel("C0DEPLOY", "deploys", "Launches here start at once.", approval=False),
    Channel("C0PROD", "prod-ops", "Launches here need one approval from @bob or @oncall.", approval=True),
)

_HOSTS = [
    {"bk_host_id": 101, "bk_cloud_id": 0, "ip": "10.0.0.11"},
    {"bk_host_id": 102, "bk_cloud_id": 0, "ip": "10.0.0.12"},
]

_DB_HOSTS = [{"bk_host_id": 201 + i, "bk_cloud_id": 0, "ip": f"10.0.1.{5 + i}"} for i in range(4)]
# What a failing migration prints: colours, a connection URL with the plan's password in it, the real error last.
_MIGRATION_LOG = (
    "\x1b[32m[migrate]\x1b[0m connecting to mysql://migrator:plan-secret@{host}:3306/app\n"
    "applying 0041_add_orders ... ok\n"
    "applying 0042_add_index ...\n"
    "\x1b[31mERROR 1062 (23000)\x1b[0m: Duplicate entry '42' for key 'orders.PRIMARY'\n"
    "migration 0042_add_index failed; rolled back\n"
)

PLANS: tuple[DemoPlan, ...] = (
    DemoPlan(
        100,
        "Deploy web",
        [
            {"name": "servers", "category": 3, "ip_list": _HOSTS, "description": "web servers"},
            {"name": "version", "category": 1, "value": "2.4.1", "description": "release to deploy"},
            {"name": "db_password", "category": 4, "value": "plan-secret"},
            {"name": "env", "category": 2, "value": "prod", "description": "namespace"},
            {"name": "ports", "category": 6, "value": "80 443", "description": "ports to health-check"},
        ],
        ["Fetch release", "Stop old version", "Start new version", "Health check"],
    ),
    DemoPlan(
        101,
        "Restart service",
        [
            {"name": "hosts", "category": 3, "ip_list": _HOSTS[:1]},
            {"name": "service", "category": 1, "value": "nginx", "description": "systemd unit"},
        ],
        ["Drain", "Restart", "Undrain"],
    ),
    DemoPlan(
        102,
        "Migrate database",
        [
            {"name": "db_host", "category": 3, "ip_list": [{"bk_host_id": 201, "bk_cloud_id": 0, "ip": "10.0.1.5"}]},
            {"name": "schema", "category": 1, "value": "v42", "description": "target schema version"},
            {"name": "db_password", "category": 4, "value": "plan-secret"},
        ],
        ["Back up", "Apply migrations", "Verify"],
        fails_at=1,
        hosts=_DB_HOSTS,
        outcomes={
            "10.0.1.5": HostOutcome(status=104, exit_code=3, log=_MIGRATION_LOG.format(host="10.0.1.5")),
            "10.0.1.6": HostOutcome(status=104, exit_code=3, log=_MIGRATION_LOG.format(host="10.0.1.6")),
            "10.0.1.7": HostOutcome(status=102, log="applying 0042_add_index\nwaiting for table metadata lock...\n"),
            "10.0.1.8": HostOutcome(status=18),
        },
    ),
    DemoPlan(103, "Clean temp files", [], ["Clean /tmp"]),
    DemoPlan(
        112,
        "Canary release",
        [{"name": "version", "category": 1, "value": "2.5.0", "description": "release to roll out"}],
        ["Deploy canary", "Go / no-go", "Roll out everywhere"],
        confirm_at=1,
        confirm_message="Is the canary healthy? Confirm to roll out to every host.",
    ),
)
# More plans, so that the form's picker (`/bkjob run` without an ID) has something to search through.
MORE_PLANS: Mapping[int, str] = {
    104: "Deploy API gateway",
    105: "Deploy worker pool",
    106: "Rollback web",
    107: "Rotate TLS certificates",
    108: "Restart cache cluster",
    109: "Nightly report",
    110: "Collect diagnostics",
    111: "Scale out web tier",
}


def add_plans(bk: FakeBkJob) -> None:
    for plan in PLANS:
        steps = [_step(plan, i, name) for i, name in enumerate(plan.steps)]
        bk.add_plan(BIZ, plan.bk_job_id, plan.name, plan.global_vars, steps)
    for job_id, name in MORE_PLANS.items():
        bk.add_plan(BIZ, job_id, name, [], [{"name": "Run"}])


def _step(plan: DemoPlan, index: int, name: str) -> dict[str, Any]:
    """A script step, or the plan's manual confirmation: Bob, or whoever launched the job, may confirm it."""
    if index != plan.confirm_at:
        return {"name": name, **({"ip_list": list(plan.hosts)} if plan.hosts else {})}
    return {
        "name": name,
        "type": 3,
        "execute_type": 3,
        "script_content": None,
        "account": None,
        "account_id": None,
        "ip_list": [],
        "confirm_message": plan.confirm_message,
        "confirm_users": ["bob"],
        "confirm_roles": ["JOB_RESOURCE_TRIGGER_USER"],
    }


def demo_policy() -> Policy:
    """One channel launches at once, the other needs an approval: the two paths a newcomer should see."""
    approving = next(c for c in CHANNELS if c.approval)
    return Policy.model_validate(
        {
            "users": {p.id: p.bk_username for p in USERS},
            "channels": {
                approving.id: {"approval": True, "approvers": ["U0BOB", "S0ONCALL"], "approval_ttl": "30m"},
                # A failed job's reply there has a digest and a Logs button (the approval channel: digest only).
                # Bob (whom plan 112's confirmation step names) may answer confirmations there too, as well as
                # whoever launched the job; in the approval channel he is an approver, which the default allows.
                next(c for c in CHANNELS if not c.approval).id: {
                    "logs": "full",
                    "operators": {"confirm": ["requester", "approvers", "U0BOB"]},
                },
            },
            "defaults": {"bk_biz_id": BIZ, "approval": False},
            # `/bkjob run deploy-web`: plan 100 with its version pre-filled and its namespace locked.
            "presets": {
                "deploy-web": {
                    "plan": 100,
                    "bk_biz_id": BIZ,
                    "description": "Deploy web to prod",
                    "values": {"version": "2.5.0", "env": "prod"},
                    "locked": ["env"],
                }
            },
        }
    )


def slack_users() -> dict[str, dict[str, Any]]:
    return {p.id: {"name": p.name, "real_name": p.name.title(), "email": f"{p.name}@example.com"} for p in USERS}


def slack_usergroups() -> dict[str, list[str]]:
    return {gid: [member] for gid, (_, member) in GROUPS.items()}
