"""BK-JOB's failures as the bot sees them: refused, unreachable, too slow, or a host list that names no host."""

from __future__ import annotations

from bot.errors import BotError, UserInputError

__all__ = [
    "BkApiError",
    "BkCredentialsRefused",
    "BkError",
    "BkPermissionDenied",
    "BkTimeout",
    "BkUnavailable",
    "TargetError",
]


class TargetError(UserInputError):
    """A host-list value holds entries that are not IPs, dynamic groups or topology nodes."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class BkError(BotError):
    """BK-JOB did not do what was asked."""


class BkApiError(BkError):
    """BK-JOB answered with ``result: false``."""

    def __init__(self, api: str, code: int | None, message: str, request_id: str | None = None) -> None:
        self.api = api
        self.code = code
        self.message = message
        self.request_id = request_id
        super().__init__(f"BK-JOB {api} failed: [{code}] {message}")


class BkCredentialsRefused(BkApiError):
    """The ESB, the API gateway or JOB refused the bot's app or user credentials; `hint` tells the operator what to
    configure."""

    def __init__(self, api: str, code: int | None, message: str, request_id: str | None, *, hint: str) -> None:
        self.hint = hint
        super().__init__(api, code, message, request_id)


class BkPermissionDenied(BkApiError):
    """9900403: the BK user lacks IAM permissions; `missing` names each action and resource, `apply_url` is where
    to apply when BK-JOB sent one."""

    def __init__(
        self,
        api: str,
        code: int | None,
        message: str,
        request_id: str | None,
        *,
        missing: list[str],
        apply_url: str | None = None,
    ) -> None:
        self.missing = missing
        self.apply_url = apply_url
        super().__init__(api, code, message, request_id)


class BkUnavailable(BkError):
    """BK-JOB could not be reached or did not answer with its JSON envelope.

    `request_sent` is False only when the connection itself failed, i.e. BK-JOB surely did nothing.
    """

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        self.request_sent = request_sent
        super().__init__(message)


class BkTimeout(BkError):
    """BK-JOB did not answer within the time-out."""
