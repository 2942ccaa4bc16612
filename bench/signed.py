"""Slash commands and modal submissions built and signed exactly as Slack sends them."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from bot.fakes import FakeSlack

__all__ = ["Signed", "SlackRequests"]

Signed = tuple[bytes, dict[str, str]]


class SlackRequests:
    """Bodies with fresh trigger IDs and headers signed with the app's signing secret (HMAC-SHA256)."""

    def __init__(self, *, secret: str, slack: FakeSlack, user: str = "U0BENCH") -> None:
        self._verifier = SignatureVerifier(secret)
        self._slack = slack
        self._user = user
        self._views = itertools.count(1)

    def sign(self, body: str) -> Signed:
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": self._verifier.generate_signature(timestamp=ts, body=body),
        }
        return body.encode(), headers

    def command(self, text: str, *, channel: str) -> Signed:
        return self.sign(
            urlencode(
                {
                    "token": "legacy-verification-token",
                    "team_id": "T0TEAM",
                    "team_domain": "example",
                    "channel_id": channel,
                    "channel_name": channel.lower(),
                    "user_id": self._user,
                    "user_name": self._user.lower(),
                    "command": "/bkjob",
                    "text": text,
                    "api_app_id": "A0BKJOB",
                    "response_url": self._slack.response_url(),
                    "trigger_id": self._slack.new_trigger_id(),
                }
            )
        )

    def submission(self, view: Mapping[str, Any]) -> Signed:
        """The run modal submitted with its pre-filled values; a new view ID each time, so each one launches."""
        state: dict[str, Any] = {}
        for block in view.get("blocks", []):
            if block.get("type") == "input":
                element = block["element"]
                state[block["block_id"]] = {
                    element["action_id"]: {"type": element["type"], "value": element.get("initial_value")}
                }
        payload = {
            "type": "view_submission",
            "team": {"id": "T0TEAM", "domain": "example"},
            "user": {"id": self._user, "username": self._user.lower(), "team_id": "T0TEAM"},
            "api_app_id": "A0BKJOB",
            "token": "legacy-verification-token",
            "trigger_id": self._slack.new_trigger_id(),
            "view": {**view, "id": f"VB{next(self._views):08d}", "state": {"values": state}},
        }
        return self.sign(urlencode({"payload": json.dumps(payload)}))

    def suggestion(self, view: Mapping[str, Any], typed: str, *, action_id: str, block_id: str) -> Signed:
        """Slack's block_suggestion for an external_select in `view` (the Options Load URL gets it as it types)."""
        payload = {
            "type": "block_suggestion",
            "user": {"id": self._user, "username": self._user.lower(), "team_id": "T0TEAM"},
            "team": {"id": "T0TEAM", "domain": "example"},
            "api_app_id": "A0BKJOB",
            "token": "legacy-verification-token",
            "container": {"type": "view", "view_id": view["id"]},
            "action_id": action_id,
            "block_id": block_id,
            "value": typed,
            "view": view,
        }
        return self.sign(urlencode({"payload": json.dumps(payload)}))
