"""What Slack says: the core's reasons with each slot as Slack shows it, and errors explained precisely.

A reason's people become mentions, its times date tokens that each reader sees in their own time zone, and its
quoted text (from a person or BK-JOB) is escaped so that it cannot ping a channel or open a code block. A failure
is told with BK-JOB's own code and message and what to do next.
"""

from __future__ import annotations

from bot.bkjob.errors import BkApiError, BkCredentialsRefused, BkPermissionDenied, BkTimeout, BkUnavailable
from bot.core.errors import Refusal
from bot.core.launches import LaunchFailed
from bot.core.reasons import Channel, Failure, Moment, People, Person, Plain, Quoted, Reason, Slot, Tone
from bot.errors import BotError, UserInputError
from bot.slack.blocks.text import escape, mention, mentions, untrusted, when
from bot.slack.errors import SlackError
from bot.store import LaunchState

__all__ = ["TONES", "explain", "words"]

# Slack shows a line's tone as the emoji it starts with.
TONES = {
    Tone.REFUSED: ":no_entry:",
    Tone.UNKNOWN: ":grey_question:",
    Tone.FAILED: ":x:",
    Tone.WAITING: ":hourglass:",
    Tone.WARNING: ":warning:",
    Tone.DONE: ":white_check_mark:",
    Tone.STOPPED: ":octagonal_sign:",
    Tone.FILE: ":page_facing_up:",
    # run control
    Tone.STARTED: ":arrow_forward:",
    Tone.INFO: ":information_source:",
    Tone.ASKED: ":raised_hand:",
    Tone.FOUND: ":mag:",
}


_SLACK_HINTS = {
    "not_in_channel": "I am not in this channel: invite me with `/invite @bkjob` and try again.",
    "channel_not_found": "I cannot see this channel: invite me with `/invite @bkjob` and try again.",
    "is_archived": "This channel is archived.",
    "expired_trigger_id": "Slack's form expired before it could open: please run the command again.",
}


def explain(exc: BotError) -> str:
    if isinstance(exc, Refusal):
        text = words(exc.reason)
        return text if exc.reason.tone is not None else f":warning: {text}"
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


def words(reason: Reason) -> str:
    """The reason as mrkdwn: the template's words with every slot filled in as Slack shows it."""
    text = reason.template.format(**{name: _slot(value) for name, value in reason.slots.items()})
    return f"{TONES[reason.tone]} {text}" if reason.tone is not None else text


def _slot(value: Slot) -> object:
    if isinstance(value, Person):
        return mention(value.id)
    if isinstance(value, People):
        return mentions(value.ids)
    if isinstance(value, Channel):
        return f"<#{value.id}>"
    if isinstance(value, Moment):
        return when(value.epoch)
    if isinstance(value, Quoted):
        return untrusted(value.text)
    if isinstance(value, Plain):
        return escape(value.text)
    if isinstance(value, Failure):
        return explain(value.error)
    if isinstance(value, Reason):
        return words(value)
    return value  # the bot's own words or a number (a template may format it: `{hosts:,}`)
