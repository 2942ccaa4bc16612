"""A bound on how long any route but Slack's may take: 503 after `REQUEST_TIMEOUT` rather than a held connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

__all__ = ["deadline"]

log = logging.getLogger(__name__)


def deadline(limit: float, *, exempt: Collection[str] = ()) -> Middleware:
    """A slow store must not hold a connection (or a load balancer's health probe) forever: 503 after `limit`.

    The paths in `exempt` are left alone: Slack's route is Bolt's, whose listeners ack first and hand slow work to
    `Background`, and which bounds its own body read.
    """

    @web.middleware
    async def bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        try:
            async with asyncio.timeout(limit):
                return await handler(request)
        except TimeoutError:
            # The route's pattern, not the path: a callback path carries its token.
            resource = request.match_info.route.resource
            log.warning(
                "%s %s took longer than %g s; answered 503", request.method, resource and resource.canonical, limit
            )
            return web.json_response({"ok": False, "message": f"no answer within {limit:g} s; try again"}, status=503)

    return bounded
