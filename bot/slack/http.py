"""Slack's Events API route over HTTP: signature headers checked before the body is read, then Bolt's dispatch."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from urllib.parse import parse_qsl

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.slack.payloads import payload_problem

__all__ = ["MAX_SLACK_BODY", "SLACK_PATH", "SlackEvents"]

log = logging.getLogger(__name__)

MAX_SLACK_BODY = 1024 * 1024
"""aiohttp answers 413 above this; Slack's own payloads stay far below it."""
SLACK_PATH = "/slack/events"
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_SIGNATURE_MAX_AGE_S = 300
# What a hostile body can make Bolt's parser raise: bad UTF-8 or charset, bad JSON, too deep, or a JSON payload
# whose shape Bolt's context extraction indexes blindly (`"user": "x"`, `"payload": [1]`).
_UNREADABLE = (ValueError, LookupError, RecursionError, TypeError, AttributeError, KeyError, IndexError)


class SlackEvents:
    """The route at `SLACK_PATH` (HTTP mode only: in Socket Mode nothing may arrive here claiming to be Slack)."""

    def __init__(self, *, bolt: AsyncApp, deadline: float) -> None:
        self._bolt = bolt
        self._deadline = deadline

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Bolt checks the signature and timestamp (401 otherwise) and acks within Slack's 3 seconds.

        Bolt parses the body before it checks the signature, and raises on bodies it cannot read: those are
        answered 400 here rather than aiohttp's 500 with a traceback in the log.
        """
        stamp = request.headers.get("X-Slack-Request-Timestamp")
        if stamp is not None and not (stamp.isascii() and stamp.isdigit()):
            # slack_sdk's verifier calls int() on it and raises: a traceback for what is only an unsigned request.
            log.info("non-numeric X-Slack-Request-Timestamp on %s; answered 401", SLACK_PATH)
            return web.json_response({"error": "invalid request"}, status=401)
        if (request.content_length or 0) > MAX_SLACK_BODY:
            return web.json_response({"error": f"body larger than {MAX_SLACK_BODY} bytes"}, status=413)
        problem = _signature_headers_problem(request)
        if problem is not None:
            # Before the body is read: a client without plausible signature headers costs no body read and no log
            # line.
            return web.json_response({"error": problem}, status=401)
        try:
            async with asyncio.timeout(self._deadline):
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
            response = await self._bolt.async_dispatch(bolt_request)
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
