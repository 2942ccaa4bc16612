"""`create_app(settings)`: the composition root that builds every client and wires the HTTP surface."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Protocol, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.bkjob.client import create_bk_client
from bot.config import Settings
from bot.core.approvals import Approvals
from bot.core.audit import Audit
from bot.core.background import Background, Heartbeats, keep_running
from bot.core.finder import PlanFinder
from bot.core.identity import Identities
from bot.core.joblogs import JobLogs
from bot.core.launches import Launches
from bot.core.logfiles import LogFiles
from bot.core.policy import Policy, load_policy
from bot.core.poller import Poller
from bot.core.results import Results
from bot.core.retention import Retention
from bot.core.runcontrol import Operations
from bot.core.tokens import Signer
from bot.errors import ConfigError
from bot.logs import request_ids
from bot.proxy import Proxies, shown
from bot.slack.authorize import WorkspaceAuthorize
from bot.slack.directory import Directory
from bot.slack.http import MAX_SLACK_BODY, SLACK_PATH, SlackEvents
from bot.slack.listeners import Listeners
from bot.slack.messenger import SlackMessenger
from bot.slack.notifier import Notifier
from bot.slack.outbox import Outbox
from bot.slack.socket_mode import SocketState, SocketTransport
from bot.store import Store, open_store
from bot.web.callback import CallbackRoute
from bot.web.connections import QuietParserErrors
from bot.web.deadline import deadline
from bot.web.health import Health
from bot.web.metrics import Scrape, serve_internal

__all__ = ["BACKGROUND", "HEARTBEATS", "METRICS_PORT", "OUTBOX", "SOCKET", "STORE", "create_app"]

log = logging.getLogger(__name__)

STORE = web.AppKey("store", Store)
BACKGROUND = web.AppKey("background", Background)
OUTBOX = web.AppKey("outbox", Outbox)
HEARTBEATS = web.AppKey("heartbeats", Heartbeats)
SOCKET = web.AppKey("socket", SocketState)
"""Present in Socket Mode only: the connection's state, for /healthz, /metrics and the tests."""
METRICS_PORT = web.AppKey("metrics_port", int)
"""The port the internal /metrics listener is bound to (METRICS_PORT, or the one picked for 0), while it serves."""
# Each route's handler, built in `_resources` once what it serves from exists (the router is frozen by then).
_SLACK = web.AppKey("slack_events", SlackEvents)
_CALLBACK = web.AppKey("callback", CallbackRoute)
_HEALTH = web.AppKey("health", Health)
_METRICS = web.AppKey("metrics", Scrape)


def create_app(settings: Settings, *, policy: Policy | None = None) -> web.Application:
    """Raises ConfigError for a bad or missing policy file before anything is served."""
    policy = policy if policy is not None else load_policy(settings.bkjob_config)
    if policy is None and not settings.bkjob_open_mode:
        raise ConfigError(
            "no policy file (BKJOB_CONFIG, or bkjob.toml in the working directory): write one (see "
            "bkjob.example.toml), or set BKJOB_OPEN_MODE=on to let every channel launch any plan without approval"
        )
    app = web.Application(
        client_max_size=MAX_SLACK_BODY,
        middlewares=[request_ids, deadline(settings.request_timeout, exempt={SLACK_PATH})],
        # aiohttp closes a connection that has not sent a whole request head (or has idled) for this long, and
        # reads what is left of a refused request's body (so its sender sees the answer) for at most a second.
        handler_args={"keepalive_timeout": settings.header_timeout, "lingering_time": 1.0},
    )
    governed = policy
    app.cleanup_ctx.append(lambda a: _resources(a, settings, governed))
    if settings.socket_mode():
        # Slack's side is the WebSocket the bot dials out; nothing may arrive here claiming to be Slack.
        app[SOCKET] = SocketState()
    else:
        app.router.add_post(SLACK_PATH, _served_by(_SLACK))
    app.router.add_post("/bkjob/callback/{token}", _served_by(_CALLBACK))
    app.router.add_get("/healthz", _served_by(_HEALTH))
    if settings.metrics == "on" and settings.metrics_token is not None:
        # Without a token, /metrics is served only on the internal METRICS_PORT (see `_resources`).
        app.router.add_get("/metrics", _served_by(_METRICS))
    return app


class _Route(Protocol):
    async def handle(self, request: web.Request) -> web.StreamResponse: ...


_R = TypeVar("_R", bound=_Route)


def _served_by(key: web.AppKey[_R]) -> Handler:
    """The handler of a route whose object `_resources` builds and keeps under `key`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await request.app[key].handle(request)

    return handle


async def _resources(app: web.Application, settings: Settings, governed: Policy | None) -> AsyncIterator[None]:
    """Every resource is opened here and closed here, in reverse order."""
    policy = _announce_policy(governed)
    quiet = QuietParserErrors()
    logging.getLogger("aiohttp.server").addFilter(quiet)
    store = open_store(settings.database_url)
    await store.open()
    # Two pools, one per destination: each session's proxy is its default route (see bot.proxy).
    proxies = settings.proxies()
    traces = [metrics.trace_config(slack_api=settings.slack_api_base(), bk_api=settings.bk_api_root())]
    tls = settings.tls_context()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls) if tls else None,
        timeout=aiohttp.ClientTimeout(total=30),
        trace_configs=traces,
        proxy=proxies.for_url(settings.bk_api_root()),
    )
    slack_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls) if tls else None,
        timeout=aiohttp.ClientTimeout(total=30),
        trace_configs=traces,
        proxy=proxies.for_url(settings.slack_api_base()),
    )
    log.info(
        "outgoing: Slack %s, BK-JOB %s",
        shown(proxies.for_url(settings.slack_api_base())),
        shown(proxies.for_url(settings.bk_api_root())),
    )
    background = Background()
    slack = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_base(),
        session=slack_session,
        timeout=15,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=3),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=3),
        ],
    )
    # slack_sdk would send every call through HTTPS_PROXY from the environment, NO_PROXY or not: the session decides.
    slack.proxy = None
    # Bolt's own client holds no token, so that Bolt authorizes through `WorkspaceAuthorize` (its check of a token
    # fails every request while Slack's Web API is out of reach); the listeners post through `slack`.
    bolt_client = AsyncWebClient(
        base_url=settings.slack_api_base(), session=slack_session, timeout=15, retry_handlers=slack.retry_handlers
    )
    bolt_client.proxy = None
    bk = create_bk_client(settings, session)
    heartbeats = Heartbeats()
    notifier = Notifier(client=slack)
    audit = Audit(store=store)
    outbox = Outbox(
        store=store,
        notifier=notifier,
        web_root=settings.job_web_root(),
        channel_interval=settings.slack_channel_interval,
        lease=settings.outbox_lease,
        # A round delivers at most what fits in half a lease (see Outbox), and beats after every message.
        heartbeat=heartbeats.expect("outbox", within=settings.outbox_lease + 5),
    )
    messenger = SlackMessenger(outbox=outbox, notifier=notifier, web_root=settings.job_web_root())
    directory = Directory(client=slack, ttl=settings.directory_cache_ttl)
    identities = _identities(governed, directory, settings.bk_username)
    launches = Launches(
        store=store,
        bk=bk,
        messenger=messenger,
        identities=identities,
        audit=audit,
        public_root=settings.callback_root(),
        policy=policy,
        callbacks=settings.bk_callback == "on",
        callback_grace=settings.callback_grace,
        progress_interval=settings.progress_interval,
        bk_timeout=settings.bk_timeout,
    )
    job_logs = JobLogs(bk=bk)
    results = Results(
        store=store,
        bk=bk,
        messenger=messenger,
        audit=audit,
        logs=job_logs,
        policy=policy,
        log_budget=settings.log_digest_budget,
    )
    bolt = AsyncApp(
        client=bolt_client,
        authorize=WorkspaceAuthorize(client=slack),
        signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None,
        # Socket Mode envelopes are not signed (the app token authenticated the connection): Bolt skips them.
        request_verification_enabled=not settings.socket_mode(),
        logger=logging.getLogger("slack_bolt"),
        # Run each listener inline: they ack first and hand slow work to `background` themselves. Bolt's other
        # mode runs the listener as a task and polls for the ack every 10 ms, which puts 10 ms on every ack.
        process_before_response=True,
    )
    approvals = Approvals(
        store=store,
        launches=launches,
        messenger=messenger,
        directory=directory,
        audit=audit,
        identities=identities,
        policy=policy,
        bk=bk,
    )
    operations = Operations(
        store=store,
        bk=bk,
        policy=policy,
        identities=identities,
        directory=directory,
        audit=audit,
        messenger=messenger,
        launches=launches,
        approvals=approvals,
    )
    poller = Poller(
        store=store,
        bk=bk,
        results=results,
        launches=launches,
        messenger=messenger,
        tick=settings.poll_tick,
        progress_interval=settings.progress_interval,
        bk_timeout=settings.bk_timeout,
        reconcile_window=settings.reconcile_window,
        lease=settings.poll_lease,
        heartbeat=heartbeats.expect("poller", within=settings.poll_lease + settings.poll_tick + 5),
        operations=operations,
        background=background,
    )
    Listeners(
        store=store,
        launches=launches,
        approvals=approvals,
        notifier=notifier,
        identities=identities,
        audit=audit,
        policy=policy,
        signer=Signer(secret=settings.metadata_secret()),
        default_biz=settings.bk_biz_id,
        web_root=settings.job_web_root(),
        background=background,
        finder=PlanFinder(bk=bk, background=background, ttl=settings.bk_plan_list_ttl),
        list_wait=settings.bk_timeout,
        operations=operations,
        log_files=LogFiles(
            store=store,
            bk=bk,
            logs=job_logs,
            messenger=messenger,
            identities=identities,
            directory=directory,
            policy=policy,
            audit=audit,
            budget=settings.log_file_budget,
        ),
    ).register(bolt)
    app[STORE] = store
    app[BACKGROUND] = background
    app[OUTBOX] = outbox
    app[HEARTBEATS] = heartbeats
    socket_report = app[SOCKET].report if SOCKET in app else None
    app[_SLACK] = SlackEvents(bolt=bolt, deadline=settings.request_timeout)
    app[_CALLBACK] = CallbackRoute(store=store, results=results, background=background)
    app[_HEALTH] = Health(
        store=store,
        stalled=heartbeats.stale,
        policy="file" if governed is not None else "open",
        socket=socket_report,
    )
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    app[_METRICS] = Scrape(store=store, token=token or None, socket=socket_report, states=SocketState.STATES)
    # On start-up these resume whatever the store holds: unsent messages, unfinished launches, due expiries.
    loops = [
        asyncio.create_task(outbox.run(), name="outbox"),
        asyncio.create_task(poller.run(), name="poller"),
        asyncio.create_task(
            keep_running(
                "approval sweep",
                approvals.expire_due,
                interval=settings.approval_sweep_interval,
                beat=heartbeats.expect(
                    "approval-sweeper", within=2 * settings.approval_sweep_interval + settings.request_timeout + 30
                ),
            ),
            name="approval-sweeper",
        ),
        asyncio.create_task(
            keep_running(
                "retention",
                Retention(
                    store=store, audit_days=settings.audit_retention_days, sent_days=settings.outbox_retention_days
                ).sweep,
                interval=settings.retention_interval,
                beat=lambda: None,  # a late sweep loses nothing: not a health signal
            ),
            name="retention",
        ),
    ]
    socket = _socket(app, settings, bolt, proxies, tls)
    internal: web.AppRunner | None = None
    try:
        if settings.metrics == "on":
            internal = await serve_internal(app[_METRICS], host=settings.host, port=settings.metrics_port)
            app[METRICS_PORT] = internal.addresses[0][1]
        yield
    finally:
        if internal is not None:
            await internal.cleanup()
        if socket is not None:
            await socket.close()
        for loop in loops[1:]:
            loop.cancel()
        await asyncio.gather(*loops[1:], return_exceptions=True)
        await background.close()
        await _give_back_polls(poller)
        try:
            await asyncio.wait_for(outbox.flush(), timeout=5)
        except TimeoutError:
            log.warning("shutting down with Slack messages still queued; they are sent at the next start")
        # The messages in hand go out and the rest of the batch is released for other replicas; only a send
        # still hanging after that is cancelled (its message keeps its lease).
        outbox.stop()
        await asyncio.wait([loops[0]], timeout=5)
        loops[0].cancel()
        await asyncio.gather(loops[0], return_exceptions=True)
        await session.close()
        await slack_session.close()
        await store.close()
        logging.getLogger("aiohttp.server").removeFilter(quiet)


async def _give_back_polls(poller: Poller) -> None:
    """Release the launches this replica was polling, so the others read them at once (during a rolling deploy
    results would otherwise wait out POLL_LEASE); failing to only costs that wait, never the shutdown."""
    try:
        released = await poller.release_leases()
    except Exception:
        log.warning("could not give back the poll leases; they run out on their own", exc_info=True)
        return
    if released:
        log.info("gave back %d poll lease(s) to the other replicas", released)


def _announce_policy(governed: Policy | None) -> Policy:
    """Ungoverned operation is allowed only when asked for, and then said loudly at every start."""
    if governed is None:
        log.warning(
            "OPEN MODE (BKJOB_OPEN_MODE=on, no policy file): every channel and DM may launch any plan in any "
            "business without approval, and everyone runs as BK_USERNAME"
        )
        return Policy()
    if governed.defaults.unrestricted:
        log.warning(
            "the policy's [defaults] allow any business and plan without approval: channels it does not name, "
            "and DMs, may launch anything (set allowed_biz = [] there to refuse them)"
        )
    for channel, keys in governed.operators_left_out().items():
        log.warning(
            "the policy's [channels.%s.operators] leaves out %s, which [defaults.operators] sets: a channel's own "
            "[operators] table replaces [defaults]'s, so there %s the built-in default (the requester and the "
            "channel's approvers); write %s in the channel's table to keep [defaults]'s",
            channel,
            ", ".join(keys),
            "it takes" if len(keys) == 1 else "they take",
            "it" if len(keys) == 1 else "them",
        )
    return governed


def _identities(governed: Policy | None, directory: Directory, service_account: str | None) -> Identities:
    """Open mode runs everyone as the service account; a policy maps people and falls back only if it says so."""
    if governed is None:
        return Identities(fallback=service_account)
    return Identities(
        users=governed.users,
        directory=directory,
        fallback=service_account if governed.identity.service_account_fallback else None,
        email_domains=governed.identity.email_domains,
    )


def _socket(
    app: web.Application, settings: Settings, bolt: AsyncApp, proxies: Proxies, tls: ssl.SSLContext | None
) -> SocketTransport | None:
    """In Socket Mode, start dialling Slack (in the background: the callback route and /healthz serve meanwhile)."""
    if settings.slack_app_token is None:
        return None
    transport = SocketTransport(
        app=bolt,
        app_token=settings.slack_app_token.get_secret_value(),
        ping_interval=settings.socket_ping_interval,
        state=app[SOCKET],
        proxy_for=proxies.for_url,
        tls=tls,
    )
    transport.start()
    return transport
