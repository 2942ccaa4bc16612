"""The bot's one error tree.

    BotError                 anything the bot reports to a person on purpose
    ├── ConfigError          a setting or policy file is missing or invalid (start-up stops, exit 2)
    ├── UserInputError       what a person typed cannot be used; the message says why
    │   ├── CommandError     the slash-command text does not parse
    │   └── TargetError      a host-list field holds entries that are not hosts, groups or nodes
    ├── BkError              BK-JOB did not do what was asked
    │   ├── BkApiError       BK-JOB answered `result: false` (carries its code and message)
    │   │   ├── BkCredentialsRefused  the ESB, gateway or JOB refused the bot's credentials; `hint` says what to set
    │   │   └── BkPermissionDenied    9900403: the BK user lacks IAM actions; `missing` names them
    │   ├── BkUnavailable    BK-JOB could not be reached, or answered something that is not its envelope
    │   └── BkTimeout        BK-JOB did not answer in time
    └── SlackError           Slack refused a call the bot needed (e.g. not in the channel)

Foreign failures (aiohttp, slack_sdk, sqlite) are wrapped at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "BkApiError",
    "BkCredentialsRefused",
    "BkError",
    "BkPermissionDenied",
    "BkTimeout",
    "BkUnavailable",
    "BotError",
    "CommandError",
    "ConfigError",
    "SlackError",
    "TargetError",
    "UserInputError",
]


class BotError(Exception):
    """Base of every error the bot raises on purpose."""


class ConfigError(BotError):
    """A setting or the policy file is missing or invalid."""


class UserInputError(BotError):
    """Input from a person that cannot be used; ``str(err)`` is the message to show them."""


class CommandError(UserInputError):
    """The slash-command text does not parse."""


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


class SlackError(BotError):
    """Slack refused a call the bot needed; `retry_after` is Slack's `Retry-After` (seconds) on a 429."""

    def __init__(self, method: str, error: str, *, retry_after: float | None = None) -> None:
        self.method = method
        self.error = error
        self.retry_after = retry_after
        super().__init__(f"Slack {method} failed: {error}")
