"""Unguessable callback tokens, their stored hashes, and signed references carried through Slack."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from typing import Any

__all__ = ["Signer", "hash_token", "is_well_formed", "new_callback_token"]

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


def new_callback_token() -> str:
    """256 bits from the OS: the callback URL is the only thing that authenticates BK-JOB's callback."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Only the hash is stored, so a copy of the database cannot forge callbacks."""
    return hashlib.sha256(token.encode()).hexdigest()


def is_well_formed(token: str) -> bool:
    return bool(_TOKEN_RE.match(token))


class Signer:
    """HMAC-signs small JSON payloads (modal `private_metadata`) so a tampered one is refused."""

    def __init__(self, *, secret: str) -> None:
        self._key = hashlib.sha256(b"bkjob-bot/metadata:" + secret.encode()).digest()

    def sign(self, payload: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
        return f"{body}.{self._mac(body)}"

    def unsign(self, signed: str) -> dict[str, Any] | None:
        """The payload, or None when the value was not made by this bot."""
        body, _, mac = signed.rpartition(".")
        # Bytes, not str: compare_digest raises TypeError on a non-ASCII str, which anyone can put in a form.
        if not body or not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        try:
            value = json.loads(base64.urlsafe_b64decode(body.encode()))
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]
