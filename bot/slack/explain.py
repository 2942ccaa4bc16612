"""What to tell a person when their request failed: precise, with BK-JOB's own code and message."""

from __future__ import annotations

from bot.bkjob.errors import BkApiError, BkCredentialsRefused, BkPermissionDenied, BkTimeout, BkUnavailable
from bot.core.launches import LaunchFailed
from bot.errors import BotError, UserInputError
from bot.slack.blocks import escape, untrusted
from bot.slack.errors import SlackError
from bot.store import LaunchState

__all__ = ["explain"]

_SLACK_HINTS = {
    "not_in_channel": "I am not in this channel: invite me with `/invite @bkjob` and try again.",
    "channel_not_found": "I cannot see this channel: invite me with `/invite @bkjob` and try again.",
    "is_archived": "This channel is archived.",
    "expired_trigger_id": "Slack's form expired before it could open: please run the command again.",
}


def explain(exc: BotError) -> str:
    if isinstance(exc, LaunchFailed) and exc.launch.state is LaunchState.UNKNOWN:
        return (
            f":grey_question: Unknown: check BK-JOB. {escape(str(exc.cause))}, so plan {exc.launch.bk_job_id} may or"
            " may not be running. I will not retry, since that could run it twice."
        )
    if isinstance(exc, LaunchFailed):
        return explain(exc.cause)
    if isinstance(exc, BkCredentialsRefused):
        return (
            f":lock: BK-JOB refused the bot's credentials ({exc.api}): [{exc.code}] {untrusted(exc.message)}\n"
            f"{escape(exc.hint)}"
        )
    if isinstance(exc, BkPermissionDenied):
        return _permission_denied(exc)
    if isinstance(exc, BkApiError):
        return f":x: BK-JOB refused ({exc.api}): [{exc.code}] {untrusted(exc.message)}"
    if isinstance(exc, BkTimeout):
        return f":hourglass: {escape(str(exc))}. Try again later."
    if isinstance(exc, BkUnavailable):
        return f":electric_plug: {escape(str(exc))}. Nothing was launched; try again later."
    if isinstance(exc, SlackError):
        return ":warning: " + _SLACK_HINTS.get(exc.error, f"Slack refused `{exc.method}`: {exc.error}.")
    if isinstance(exc, UserInputError):  # plain text that may quote what was typed; `<username>` must show
        return f":warning: {escape(str(exc))}"
    return f":warning: {exc}"


def _permission_denied(exc: BkPermissionDenied) -> str:
    """9900403: which IAM actions on which resources the BK user lacks, and where to apply for them."""
    text = f":no_entry: BK-JOB refused ({exc.api}): [{exc.code}] {untrusted(exc.message)}"
    if exc.missing:
        text += "\nMissing:" + "".join(f"\n• {untrusted(line)}" for line in exc.missing[:10])
    if exc.apply_url:
        return text + f"\nApply at {escape(exc.apply_url)}"
    return text + "\nApply for them in BlueKing's permission center (IAM)."
