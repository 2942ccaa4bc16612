"""The baseline: a bare aiohttp handler that only verifies the Slack signature and answers 200.

Run as its own process (`python -m bench.baseline PORT SECRET`) so it is measured exactly like the bot.
"""

from __future__ import annotations

import sys

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

__all__ = ["baseline_app", "main"]


def baseline_app(secret: str) -> web.Application:
    verifier = SignatureVerifier(secret)

    async def events(request: web.Request) -> web.Response:
        body = await request.text()
        if not verifier.is_valid_request(body, dict(request.headers)):
            return web.Response(status=401)
        return web.Response(status=200)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/slack/events", events)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> int:
    port, secret = int(sys.argv[1]), sys.argv[2]
    web.run_app(baseline_app(secret), host="127.0.0.1", port=port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
