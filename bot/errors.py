"""The root of the bot's one error tree; each wing's own errors live in the wing and derive from it.

    BotError                      anything the bot reports to a person on purpose          (bot.errors)
    ├── ConfigError               a setting or policy file is missing or invalid (exit 2)  (bot.errors)
    ├── UserInputError            what a person typed cannot be used; the message says why (bot.errors)
    │   ├── CommandError          the slash-command text does not parse                    (bot.slack.errors)
    │   └── TargetError           a host-list field holds entries that are not hosts       (bot.bkjob.errors)
    ├── BkError                   BK-JOB did not do what was asked                         (bot.bkjob.errors)
    │   ├── BkApiError            BK-JOB answered `result: false` (its code and message)
    │   │   ├── BkCredentialsRefused  the ESB, gateway or JOB refused the bot's credentials
    │   │   └── BkPermissionDenied    9900403: the BK user lacks IAM actions
    │   ├── BkUnavailable         BK-JOB could not be reached, or answered something that is not its envelope
    │   └── BkTimeout             BK-JOB did not answer in time
    └── ChatError                 the chat platform refused a call the core needed         (bot.core.errors)
        └── SlackError            Slack refused a call (e.g. not in the channel)           (bot.slack.errors)

The core's own refusals (LaunchFailed, Decision, NoIdentity, PresetRefused) derive from these in the core.
`UserInputError` sits at the root because every wing reads input from people: Slack parses commands, the
BK-JOB wing parses host lists, the core checks presets.
Foreign failures (aiohttp, slack_sdk, sqlite) are wrapped at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = ["BotError", "ConfigError", "UserInputError"]


class BotError(Exception):
    """Base of every error the bot raises on purpose."""


class ConfigError(BotError):
    """A setting or the policy file is missing or invalid."""


class UserInputError(BotError):
    """Input from a person that cannot be used; ``str(err)`` is the message to show them."""
