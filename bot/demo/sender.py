"""What a person does on the page, delivered to the bot exactly as Slack delivers it: signed and form-encoded."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from slack_sdk.signature import SignatureVerifier

__all__ = ["APP_ID", "TEAM", "Delivery", "SlackSender", "slack_user"]

JsonDict = dict[str, Any]

TEAM = {"id": "T0DEMO", "domain": "demo"}
APP_ID = "A0BKJOB"
# Slack still sends the deprecated verification token; Bolt ignores it in favour of the signature.
_LEGACY_TOKEN = "demo-verification-token"


@dataclass(frozen=True)
class Delivery:
    """The bot's HTTP answer: Slack reads `response_action` and friends from the body of a view ack."""

    status: int
    body: JsonDict | None


class SlackSender:
    """Signs with the bot's signing secret (v0 HMAC of `v0:<timestamp>:<body>`) so Bolt accepts the request."""

    def __init__(self, *, session: aiohttp.ClientSession, events_url: str, signing_secret: str) -> None:
        self._session = session
        self._url = events_url
        self._signer = SignatureVerifier(signing_secret)

    async def command(
        self,
        *,
        command: str,
        text: str,
        user: str,
        user_name: str,
        channel: str,
        channel_name: str,
        response_url: str,
        trigger_id: str,
    ) -> Delivery:
        form = {
            "token": _LEGACY_TOKEN,
            "team_id": TEAM["id"],
            "team_domain": TEAM["domain"],
            "channel_id": channel,
            "channel_name": channel_name,
            "user_id": user,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
        return await self._post(urlencode(form))

    async def interaction(self, payload: Mapping[str, Any]) -> Delivery:
        """block_actions and view_submission: one form field `payload` holding the JSON."""
        return await self._post(urlencode({"payload": json.dumps(payload)}))

    async def _post(self, body: str) -> Delivery:
        timestamp = str(int(time.time()))
        signature = self._signer.generate_signature(timestamp=timestamp, body=body) or ""
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
        }
        async with self._session.post(self._url, data=body.encode(), headers=headers) as resp:
            text = await resp.text()
            try:
                parsed = json.loads(text) if text.strip() else None
            except json.JSONDecodeError:
                parsed = {"text": text}
            return Delivery(status=resp.status, body=parsed if isinstance(parsed, dict) else None)


def slack_user(user: str, name: str) -> JsonDict:
    return {"id": user, "username": name, "name": name, "team_id": TEAM["id"]}
