"""The core's reasons in Slack's words: each slot as Slack shows it (mentions, date tokens, escaped text)."""

from __future__ import annotations

from bot.core.reasons import Channel, Failure, Moment, People, Person, Plain, Quoted, Reason, Slot, Tone
from bot.slack.blocks import escape, mention, mentions, untrusted, when
from bot.slack.explain import explain

__all__ = ["TONES", "words"]

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
}


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
