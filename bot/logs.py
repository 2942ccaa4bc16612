"""Logging: one JSON object per line in production, readable lines in a terminal, a request ID on every line,
and secrets scrubbed as a last line of defence."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Literal

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

__all__ = [
    "REQUEST_ID",
    "JsonFormatter",
    "RedactingAccessLogger",
    "SecretFilter",
    "configure",
    "redact_path",
    "request_ids",
]

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_CALLBACK_PATH = re.compile(r"(/bkjob/callback/)[A-Za-z0-9_-]+")
_INCOMING_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def configure(
    level: str, *, fmt: Literal["auto", "json", "text"] = "auto", secrets: Iterable[str] = (), log_sql: bool = False
) -> None:
    """JSON when stderr is not a terminal (a platform collecting logs), text when a person is watching."""
    handler = logging.StreamHandler(sys.stderr)
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler.setFormatter(JsonFormatter() if use_json else logging.Formatter(_TEXT_FORMAT))
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # These log whole request and response bodies at DEBUG, tokens included: never below INFO.
    for noisy in ("slack_sdk", "slack_bolt", "aiohttp.client"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    # aiosqlite logs every statement with its values at DEBUG: only when asked for (LOG_SQL=on).
    logging.getLogger("aiosqlite").setLevel(root.level if log_sql else max(logging.INFO, root.level))


class SecretFilter(logging.Filter):
    """Replaces known secret values (tokens, app secret) and callback tokens in every record, whoever logged it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        message = record.getMessage()
        cleaned = self.scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # The formatters print exc_text when it is set: the traceback's text, scrubbed like the message.
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return redact_path(text)


class JsonFormatter(logging.Formatter):
    """One object per line: what log collectors parse without configuration."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", REQUEST_ID.get()),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def redact_path(path: str) -> str:
    """The token in a callback URL is its only credential: it must not reach the logs."""
    return _CALLBACK_PATH.sub(r"\1***", path)


@web.middleware
async def request_ids(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every line logged while handling a request, and by the work it starts, carries the same ID."""
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _INCOMING_ID.match(incoming) else uuid.uuid4().hex[:16]
    token = REQUEST_ID.set(rid)
    try:
        response = await handler(request)
    finally:
        REQUEST_ID.reset(token)
    response.headers["X-Request-Id"] = rid
    return response


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request: method, path (token hidden), status, time; no query strings."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        rid = response.headers.get("X-Request-Id", "-")
        self.logger.info(
            "%s %s %s %.1f ms rid=%s", request.method, redact_path(request.path), response.status, time * 1000, rid
        )
