"""Logging set-up, and an access log that never prints a callback token."""

from __future__ import annotations

import logging
import re
import sys

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

__all__ = ["RedactingAccessLogger", "configure", "redact_path"]

_CALLBACK_PATH = re.compile(r"^(/bkjob/callback/)[^/?#]*")


def configure(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def redact_path(path: str) -> str:
    """The token in a callback URL is its only credential: it must not reach the logs."""
    return _CALLBACK_PATH.sub(r"\1***", path)


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request: method, path (token hidden), status, time; no query strings."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.1f ms", request.method, redact_path(request.path), response.status, time * 1000)
