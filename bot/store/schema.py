"""The schema, as numbered migrations written in SQL that SQLite and PostgreSQL both accept.

Where the two dialects cannot share a statement, a `PerBackend` holds one for each; each store runs its own.
Migrations are only ever appended: a database of any earlier version is brought up to date in order.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MIGRATIONS", "PerBackend", "Statement", "statement_for"]


class PerBackend(NamedTuple):
    """One statement in each backend's dialect; None where a backend needs nothing."""

    sqlite: str | None
    postgresql: str | None


Statement = str | PerBackend


def statement_for(statement: Statement, backend: str) -> str | None:
    """The text a backend (`Store.kind`) runs, or None when it runs nothing for this statement."""
    if isinstance(statement, str):
        return statement
    return statement.sqlite if backend == "sqlite" else statement.postgresql


MIGRATIONS: list[list[Statement]] = [
    [
        """CREATE TABLE launches (
            id TEXT PRIMARY KEY,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            requester TEXT NOT NULL,
            channel TEXT NOT NULL,
            message_ts TEXT,
            bk_biz_id BIGINT NOT NULL,
            bk_job_id BIGINT NOT NULL,
            plan_name TEXT NOT NULL,
            bk_username TEXT NOT NULL,
            variables TEXT NOT NULL,
            callback_token_hash TEXT UNIQUE,
            job_instance_id BIGINT,
            job_instance_name TEXT,
            state TEXT NOT NULL,
            job_status INTEGER,
            error TEXT,
            finished_at DOUBLE PRECISION
        )""",
        "CREATE INDEX launches_channel_created ON launches (channel, created_at)",
        "CREATE INDEX launches_state ON launches (state)",
        """CREATE TABLE results (
            launch_id TEXT NOT NULL REFERENCES launches (id),
            result_key TEXT NOT NULL,
            job_status INTEGER NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            reply_ts TEXT,
            PRIMARY KEY (launch_id, result_key)
        )""",
        """CREATE TABLE claims (
            key TEXT PRIMARY KEY,
            created_at DOUBLE PRECISION NOT NULL
        )""",
    ],
    [
        "ALTER TABLE launches ADD COLUMN approval_id TEXT",
        "ALTER TABLE launches ADD COLUMN approved_by TEXT",
        """CREATE TABLE approvals (
            id TEXT PRIMARY KEY,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            requester TEXT NOT NULL,
            channel TEXT NOT NULL,
            message_ts TEXT,
            bk_biz_id BIGINT NOT NULL,
            bk_job_id BIGINT NOT NULL,
            plan_name TEXT NOT NULL,
            bk_username TEXT NOT NULL,
            request_values TEXT NOT NULL,
            variables TEXT NOT NULL,
            approvers TEXT NOT NULL,
            min_approvals INTEGER NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            state TEXT NOT NULL,
            decided_by TEXT,
            decided_at DOUBLE PRECISION,
            reason TEXT,
            launch_id TEXT
        )""",
        "CREATE INDEX approvals_state_expires ON approvals (state, expires_at)",
        "CREATE INDEX approvals_channel_state ON approvals (channel, state)",
        """CREATE TABLE approval_votes (
            approval_id TEXT NOT NULL REFERENCES approvals (id),
            approver TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (approval_id, approver)
        )""",
        """CREATE TABLE audit (
            id TEXT PRIMARY KEY,
            at DOUBLE PRECISION NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            channel TEXT,
            approval_id TEXT,
            launch_id TEXT,
            job_instance_id BIGINT,
            detail TEXT
        )""",
        "CREATE INDEX audit_at ON audit (at)",
    ],
    [
        "ALTER TABLE launches ADD COLUMN next_poll_at DOUBLE PRECISION",
        "ALTER TABLE launches ADD COLUMN poll_attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE launches ADD COLUMN poll_owner TEXT",
        "ALTER TABLE launches ADD COLUMN poll_lease_until DOUBLE PRECISION",
        "ALTER TABLE launches ADD COLUMN progress TEXT",
        "ALTER TABLE launches ADD COLUMN progress_at DOUBLE PRECISION",
        "CREATE INDEX launches_next_poll ON launches (next_poll_at)",
        """CREATE TABLE outbox (
            id TEXT PRIMARY KEY,
            created_at DOUBLE PRECISION NOT NULL,
            seq BIGINT NOT NULL,
            channel TEXT NOT NULL,
            order_key TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            dedupe_key TEXT,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at DOUBLE PRECISION NOT NULL,
            lease_owner TEXT,
            lease_until DOUBLE PRECISION,
            sent_ts TEXT,
            last_error TEXT
        )""",
        "CREATE INDEX outbox_pending ON outbox (state, order_key, seq)",
        "CREATE UNIQUE INDEX outbox_pending_dedupe ON outbox (dedupe_key) WHERE state = 'pending'",
    ],
    [
        # Every query on a hot path reads through an index, so its cost stays flat with a million launches
        # stored (tests/test_query_plans.py checks the plans).
        "CREATE INDEX claims_created ON claims (created_at)",  # retention deletes old claims by age
        "CREATE INDEX launches_instance ON launches (job_instance_id)",  # reconciliation: is an instance taken?
        # Start-up re-posts results not yet in Slack: a handful among every result ever recorded.
        "CREATE INDEX results_unposted ON results (created_at) WHERE reply_ts IS NULL",
        "CREATE INDEX outbox_state_created ON outbox (state, created_at)",  # retention of sent messages
        # Outbox order comes from the database, not from the replicas' clocks: each message takes the next
        # number when it is stored. PostgreSQL: a sequence, started above every seq already stored (old rows
        # were numbered by the clock); SQLite (one process, one writer at a time): MAX(seq) + 1, read through
        # this index.
        "CREATE INDEX outbox_seq ON outbox (seq)",
        PerBackend(sqlite=None, postgresql="CREATE SEQUENCE outbox_order AS BIGINT"),
        PerBackend(
            sqlite=None,
            postgresql="SELECT setval('outbox_order', (SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox), false)",
        ),
    ],
    [
        # The plan's version when an approval was requested: a changed plan needs a fresh approval (JSON).
        "ALTER TABLE approvals ADD COLUMN plan_version TEXT",
    ],
]
