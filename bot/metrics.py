"""Prometheus metrics: what happened (counters fed by the audit trail, the HTTP client and the outbox) and what
is (gauges read from the store and the socket when /metrics is scraped)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from types import SimpleNamespace
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

__all__ = [
    "CONTENT_TYPE",
    "REGISTRY",
    "RESULTS_DELIVERED",
    "audited",
    "authorized",
    "bk_answered",
    "callback_answered",
    "envelope_received",
    "render",
    "trace_config",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus' text exposition format."""

# One registry per process, as a replica is a process; the tests run several apps in one and read differences.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

LAUNCHES = Counter(
    "bkjob_launches", "Launches by outcome: started, refused (policy), failed, unknown", ["outcome"], registry=REGISTRY
)
APPROVAL_REQUESTS = Counter("bkjob_approval_requests", "Approval requests posted", registry=REGISTRY)
APPROVALS = Counter(
    "bkjob_approvals", "Approval requests decided: approved, rejected, expired", ["decision"], registry=REGISTRY
)
RESULTS = Counter("bkjob_results", "Final results recorded, by BK-JOB status", ["status"], registry=REGISTRY)
RESULTS_DELIVERED = Counter("bkjob_results_delivered", "Result replies Slack accepted", registry=REGISTRY)
CALLBACKS = Counter(
    "bkjob_callbacks_received", "BK-JOB callbacks received, by the HTTP status answered", ["code"], registry=REGISTRY
)
SLACK_CALLS = Counter(
    "bkjob_slack_calls",
    "Slack Web API calls (attempts), by method and HTTP status",
    ["method", "code"],
    registry=REGISTRY,
)
SLACK_RATE_LIMITED = Counter(
    "bkjob_slack_rate_limited", "Slack Web API calls answered 429, by method", ["method"], registry=REGISTRY
)
BK_CALLS = Histogram(
    "bkjob_bk_call_seconds",
    "BK-JOB API calls until the answer's headers, by API and outcome (ok, http_<code>, timeout, error)",
    ["api", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    registry=REGISTRY,
)
BK_ANSWERS = Counter(
    "bkjob_bk_answers",
    "BK-JOB answers by API and JOB's `code` (0: success; e.g. 9900403: no permission, 1244012: no such plan)",
    ["api", "code"],
    registry=REGISTRY,
)
ENVELOPES = Counter(
    "bkjob_socket_envelopes",
    "Socket Mode envelopes received, by type and redelivery",
    ["type", "redelivered"],
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge("bkjob_outbox_depth", "Slack messages waiting in the outbox", registry=REGISTRY)
OUTBOX_OLDEST = Gauge(
    "bkjob_outbox_oldest_age_seconds", "Age of the oldest message waiting in the outbox (0: none)", registry=REGISTRY
)
POLLER_LAG = Gauge(
    "bkjob_poller_lag_seconds",
    "How long the most overdue status poll has been due (0: none overdue)",
    registry=REGISTRY,
)
SOCKET_STATE = Gauge(
    "bkjob_socket_state", "Socket Mode: 1 for the connection's current state", ["state"], registry=REGISTRY
)
SOCKET_SINCE = Gauge(
    "bkjob_socket_state_seconds", "Socket Mode: seconds the connection has been in its current state", registry=REGISTRY
)
SOCKET_CONNECTS = Gauge("bkjob_socket_connects", "Socket Mode: connections established since start", registry=REGISTRY)

_REFUSED = {"launch_refused": "refused"}
_DECISIONS = {"approved": "approved", "rejected": "rejected", "expired": "expired"}


def audited(action: str, detail: str | None) -> None:
    """The audit trail sees every decision and outcome once: count them from there."""
    if action == "launched":
        LAUNCHES.labels("started").inc()
    elif action in _REFUSED:
        LAUNCHES.labels(_REFUSED[action]).inc()
    elif action.startswith("launch_"):
        LAUNCHES.labels(action.removeprefix("launch_")[:20]).inc()
    elif action == "approval_requested":
        APPROVAL_REQUESTS.inc()
    elif action in _DECISIONS:
        APPROVALS.labels(_DECISIONS[action]).inc()
    elif action == "result":
        RESULTS.labels((detail or "unknown")[:40]).inc()


def callback_answered(code: int) -> None:
    CALLBACKS.labels(str(code)).inc()


def bk_answered(api: str, code: int | None, *, ok: bool) -> None:
    """JOB's business outcome, which the HTTP status does not show (errors come with HTTP 200)."""
    label = "0" if ok else (str(code) if isinstance(code, int) and -(10**12) < code < 10**12 else "none")
    BK_ANSWERS.labels(api[:60], label).inc()


def envelope_received(kind: str, *, redelivered: bool) -> None:
    ENVELOPES.labels(kind[:30], "yes" if redelivered else "no").inc()


def trace_config(*, slack_api: str, bk_api: str) -> aiohttp.TraceConfig:
    """Count every request on the shared session: Slack by method and status, BK-JOB by API with its latency.

    At the HTTP level, so no client needs to know about metrics; a BK-JOB business error (HTTP 200 with
    `result: false`) counts as `ok` here and shows in `bkjob_launches{outcome="failed"}`.
    """
    config = aiohttp.TraceConfig()
    slack_prefix = slack_api.rstrip("/") + "/"
    bk_prefix = bk_api.rstrip("/") + "/"

    async def start(_: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
        ctx.start = time.monotonic()

    async def end(_: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        _observe(str(params.url), ctx.start, params.response.status, None)

    async def failed(
        _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        _observe(str(params.url), ctx.start, None, params.exception)

    def _observe(url: str, started: float, code: int | None, exc: BaseException | None) -> None:
        if url.startswith(slack_prefix):
            method = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1][:60]
            SLACK_CALLS.labels(method, str(code) if code is not None else "error").inc()
            if code == 429:
                SLACK_RATE_LIMITED.labels(method).inc()
        elif url.startswith(bk_prefix):
            api = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1][:60]
            if exc is not None:
                outcome = "timeout" if isinstance(exc, TimeoutError) else "error"
            else:
                outcome = "ok" if code == 200 else f"http_{code}"
            BK_CALLS.labels(api, outcome).observe(time.monotonic() - started)

    config.on_request_start.append(start)
    config.on_request_end.append(end)
    config.on_request_exception.append(failed)
    return config


def authorized(headers: Mapping[str, str], token: str | None) -> bool:
    """With METRICS_TOKEN set, only a scraper sending it as a bearer token may read the metrics."""
    if token is None:
        return True
    given = headers.get("Authorization", "")
    return given.startswith("Bearer ") and hmac.compare_digest(given.removeprefix("Bearer ").encode(), token.encode())


def render(
    *,
    outbox_depth: int,
    outbox_oldest: float | None,
    due_poll: float | None,
    socket: Mapping[str, object] | None,
    now: float,
    states: tuple[str, ...] = (),
) -> bytes:
    """Set the gauges from what the store (its counts: `Store.backlog`) and the socket say now, then render every
    metric. `outbox_oldest` and `due_poll` are times (None: nothing waits, nothing is due)."""
    OUTBOX_DEPTH.set(outbox_depth)
    OUTBOX_OLDEST.set(max(0.0, now - outbox_oldest) if outbox_oldest is not None else 0.0)
    POLLER_LAG.set(max(0.0, now - due_poll) if due_poll is not None else 0.0)
    if socket is not None:
        for state in states:
            SOCKET_STATE.labels(state).set(1 if socket.get("state") == state else 0)
        seconds = socket.get("seconds")
        connects = socket.get("connects")
        SOCKET_SINCE.set(float(seconds) if isinstance(seconds, int | float) else 0.0)
        SOCKET_CONNECTS.set(float(connects) if isinstance(connects, int | float) else 0.0)
    return generate_latest(REGISTRY)
