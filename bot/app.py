"""`create_app(settings)`: the composition root that builds every client and wires the HTTP surface."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
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
from bot.slack.directory import Directory
from bot.slack.listeners import Listeners
from bot.slack.messenger import SlackMessenger
from bot.slack.notifier import Notifier
from bot.slack.outbox import Outbox
from bot.slack.payloads import payload_problem
from bot.slack.socket_mode import SocketState, SocketTransport
from bot.store import Store, open_store
from bot.web.callback import CallbackRoute
from bot.web.connections import QuietParserErrors

__all__ = ["BACKGROUND", "HEARTBEATS", "OUTBOX", "SOCKET", "STORE", "create_app"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STORE = web.AppKey("store", Store)
BACKGROUND = web.AppKey("background", Background)
OUTBOX = web.AppKey("outbox", Outbox)
_BOLT = web.AppKey("bolt", AsyncApp)
_CALLBACK = web.AppKey("callback", CallbackRoute)
_POLICY_MODE = web.AppKey("policy_mode", str)
HEARTBEATS = web.AppKey("heartbeats", Heartbeats)
_METRICS_TOKEN = web.AppKey("metrics_token", str)
SOCKET = web.AppKey("socket", SocketState)
"""Present in Socket Mode only: the connection's state, for /healthz and the tests."""

MAX_SLACK_BODY = 1024 * 1024
"""aiohttp answers 413 above this; Slack's own payloads stay far below it."""
SLACK_PATH = "/slack/events"
_DEADLINE = web.AppKey("deadline", float)
# What a hostile body can make Bolt's parser raise: bad UTF-8 or charset, bad JSON, too deep, or a JSON payload
# whose shape Bolt's context extraction indexes blindly (`"user": "x"`, `"payload": [1]`).
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_SIGNATURE_MAX_AGE_S = 300
_UNREADABLE = (ValueError, LookupError, RecursionError, TypeError, AttributeError, KeyError, IndexError)


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
        middlewares=[request_ids, _deadline],
        # aiohttp closes a connection that has not sent a whole request head (or has idled) for this long, and
        # reads what is left of a refused request's body (so its sender sees the answer) for at most a second.
        handler_args={"keepalive_timeout": settings.header_timeout, "lingering_time": 1.0},
    )
    app[_DEADLINE] = settings.request_timeout
    app[_POLICY_MODE] = "file" if policy is not None else "open"
    governed = policy
    app.cleanup_ctx.append(lambda a: _resources(a, settings, governed))
    if settings.socket_mode():
        # Slack's side is the WebSocket the bot dials out; nothing may arrive here claiming to be Slack.
        app[SOCKET] = SocketState()
    else:
        app.router.add_post(SLACK_PATH, _slack_events)
    app.router.add_post("/bkjob/callback/{token}", _callback)
    app.router.add_get("/healthz", _healthz)
    if settings.metrics == "on":
        app[_METRICS_TOKEN] = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
        app.router.add_get("/metrics", _metrics)
    return app


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
        client=slack,
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
    app[_BOLT] = bolt
    app[_CALLBACK] = CallbackRoute(store=store, results=results, background=background, bk=bk)
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
    try:
        yield
    finally:
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


@web.middleware
async def _deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A slow store must not hold a connection (or a load balancer's health probe) forever: 503 after a bound.

    Slack's route is left to Bolt, whose listeners ack first and hand slow work to `Background`.
    """
    if request.path == SLACK_PATH:
        return await handler(request)
    limit = request.app[_DEADLINE]
    try:
        async with asyncio.timeout(limit):
            return await handler(request)
    except TimeoutError:
        # The route's pattern, not the path: a callback path carries its token.
        resource = request.match_info.route.resource
        log.warning("%s %s took longer than %g s; answered 503", request.method, resource and resource.canonical, limit)
        return web.json_response({"ok": False, "message": f"no answer within {limit:g} s; try again"}, status=503)


async def _slack_events(request: web.Request) -> web.StreamResponse:
    """Bolt checks the signature and timestamp (401 otherwise) and acks within Slack's 3 seconds.

    Bolt parses the body before it checks the signature, and raises on bodies it cannot read: those are
    answered 400 here rather than aiohttp's 500 with a traceback in the log.
    """
    stamp = request.headers.get("X-Slack-Request-Timestamp")
    if stamp is not None and not (stamp.isascii() and stamp.isdigit()):
        # slack_sdk's verifier calls int() on it and raises: a traceback for what is only an unsigned request.
        log.info("non-numeric X-Slack-Request-Timestamp on %s; answered 401", SLACK_PATH)
        return web.json_response({"error": "invalid request"}, status=401)
    bolt = request.app[_BOLT]
    if (request.content_length or 0) > MAX_SLACK_BODY:
        return web.json_response({"error": f"body larger than {MAX_SLACK_BODY} bytes"}, status=413)
    problem = _signature_headers_problem(request)
    if problem is not None:
        # Before the body is read: a client without plausible signature headers costs no body read and no log line.
        return web.json_response({"error": problem}, status=401)
    try:
        async with asyncio.timeout(request.app[_DEADLINE]):
            bolt_request = await to_bolt_request(request)
    except TimeoutError:
        return web.json_response({"error": "the body did not arrive in time"}, status=408)
    except _UNREADABLE as exc:
        log.warning("unreadable body on %s (%s); answered 400", SLACK_PATH, type(exc).__name__)
        return web.json_response({"error": "the body is not a Slack request"}, status=400)
    if not isinstance(bolt_request.body, dict):
        return web.json_response({"error": "the body is not a Slack request"}, status=400)
    _reparse_slash_command(bolt_request)
    problem = payload_problem(bolt_request.body)
    if problem is not None:
        log.warning("%s on %s; answered 400", problem, SLACK_PATH)
        return web.json_response({"error": problem}, status=400)
    try:
        response = await bolt.async_dispatch(bolt_request)
    except _UNREADABLE as exc:
        # Bolt's error path indexes the payload too; a shape we do not validate (an event) can fail there.
        log.warning("Bolt could not handle a payload on %s (%s); answered 400", SLACK_PATH, type(exc).__name__)
        return web.json_response({"error": "the payload could not be handled"}, status=400)
    return await to_aiohttp_response(response)


def _signature_headers_problem(request: web.Request) -> str | None:
    """Slack signs every request (v0 HMAC-SHA256 over a timestamp at most 5 minutes old): without headers of that
    shape the request cannot be Slack's. Bolt checks the signature itself, once the body is in."""
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return "missing or malformed X-Slack-Request-Timestamp"
    if abs(time.time() - int(timestamp)) > _SIGNATURE_MAX_AGE_S:
        return "X-Slack-Request-Timestamp is too old"
    if not _SIGNATURE.fullmatch(signature):
        return "missing or malformed X-Slack-Signature"
    return None


def _reparse_slash_command(bolt_request: AsyncBoltRequest) -> None:
    """Bolt takes any form body containing the text "payload" for an interactivity payload, so a slash command
    such as `/bkjob run 100 payload_size=10` (or from a user or channel so named) reached no listener (404).
    A form with a `command` field and no `payload` field is a slash command: parse it as one."""
    if bolt_request.body or "payload" not in bolt_request.raw_body:
        return
    form = dict(parse_qsl(bolt_request.raw_body, keep_blank_values=True))
    if "command" in form and "payload" not in form:
        bolt_request.body = form
        bolt_request.context = build_async_context(AsyncBoltContext({}), form)


async def _callback(request: web.Request) -> web.StreamResponse:
    response = await request.app[_CALLBACK].handle(request)
    metrics.callback_answered(response.status)
    return response


async def _metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus' scrape: counters kept as things happen, gauges read now from the store and the socket."""
    if not metrics.authorized(request.headers, request.app[_METRICS_TOKEN] or None):
        return web.Response(status=401, text="metrics need the bearer token (METRICS_TOKEN)\n")
    store = request.app[STORE]
    now = time.time()
    pending = await store.outbox_messages(state="pending")
    launches = await store.unfinished_launches()
    socket = request.app[SOCKET] if SOCKET in request.app else None
    body = metrics.render(
        outbox_created=[m.created_at for m in pending],
        due_polls=[lr.next_poll_at for lr in launches if lr.next_poll_at is not None and lr.next_poll_at <= now],
        socket=socket.report() if socket is not None else None,
        states=SocketState.STATES,
        now=now,
    )
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


async def _healthz(request: web.Request) -> web.StreamResponse:
    """Load balancers take a replica out of rotation on 503: the database is what a replica cannot do without, and
    a worker that has stopped completing rounds (outbox, poller, approval sweeper) means results are not going out."""
    store = request.app[STORE]
    up = await store.ping()
    stalled = request.app[HEARTBEATS].stale()
    ok = up and not stalled
    body: dict[str, object] = {
        "ok": ok,
        "store": "up" if up else "down",
        "database": store.kind,
        "policy": request.app[_POLICY_MODE],
    }
    if stalled:
        body["stalled_workers"] = {name: f"no round completed for {age:g} s" for name, age in stalled.items()}
    if SOCKET in request.app:
        # Reported, not judged: a replica whose socket is down still serves BK-JOB's callbacks and its outbox.
        body["socket"] = request.app[SOCKET].report()
    return web.json_response(body, status=200 if ok else 503)
