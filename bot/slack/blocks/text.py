"""What every message shares: mrkdwn escaping, mentions, times, status emoji, Slack's length limits, Message, modal,
notice."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import Block, MarkdownTextObject, SectionBlock
from slack_sdk.models.views import View

from bot.bkjob.models import VariableType
from bot.bkjob.variables import MASK
from bot.store.records import SentVariable

__all__ = [
    "MAX_SECTION",
    "MAX_PRIVATE_TEXT",
    "Message",
    "job_url",
    "variables_text",
    "modal",
    "duration",
    "escape",
    "untrusted",
    "cut",
    "fit_list",
    "fit_text",
    "queued",
    "notice",
    "mentions",
    "mention",
    "when",
    "utc_time",
    "status_emoji",
]

MAX_SECTION = 3000
MAX_PRIVATE_TEXT = 4000
"""Ephemeral and response_url texts: Slack folds a message behind "Show more" past about 4,000 characters and
refuses one over 40,000 (`msg_too_long`)."""
_MAX_LIST = 3000  # a list answered privately: one screenful, well under Slack's 40,000-character message


@dataclass(frozen=True)
class Message:
    """A message with the `text` fallback Slack shows in notifications and screen readers."""

    text: str
    blocks: list[dict[str, Any]]
    broadcast: bool = False
    """A thread reply also shown to the whole channel (chat.postMessage's `reply_broadcast`)."""


def job_url(web_root: str | None, job_instance_id: int | None) -> str | None:
    """BK-JOB's web UI opens an instance at `/api_execute/<id>` (as bk-nodeman and JOB's own tools link it)."""
    if not web_root or job_instance_id is None:
        return None
    return f"{web_root}/api_execute/{job_instance_id}"


def variables_text(variables: Sequence[SentVariable]) -> str:
    if not variables:
        return "Variables: the plan's defaults"
    parts = []
    for var in variables:
        shown = MASK if var.category == VariableType.PASSWORD else var.shown.replace("\n", ", ")
        parts.append(f"`{untrusted(var.name)}` = `{untrusted(cut(shown, 200))}`")
    return "Variables sent: " + "; ".join(parts)


def modal(
    *,
    title: str,
    blocks: Sequence[Block],
    submit: str | None = None,
    callback_id: str | None = None,
    private_metadata: str | None = None,
    close: str = "Cancel",
) -> dict[str, Any]:
    view = View(
        type="modal",
        title=cut(title, 24),
        close=close,
        submit=submit,
        callback_id=callback_id,
        private_metadata=private_metadata,
        blocks=list(blocks),
    )
    result: dict[str, Any] = view.to_dict()
    return result


def duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def escape(text: str) -> str:
    """`&`, `<` and `>` as Slack asks, so `<!channel>`, `<@U123>` and `<https://x|y>` show as typed, not as a
    mention or a link. For the bot's own mrkdwn (the usage text's `<job_id>`)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def untrusted(text: str) -> str:
    """Text from a person or from BK-JOB, for mrkdwn: escaped, and its backticks swapped for a look-alike (ˋ),
    since Slack has no escape for them and a ``` in a plan name or a value would open a code block."""
    return escape(text).replace("`", "\u02cb")


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fit_list(head: Callable[[int], str], lines: Sequence[str], more: Callable[[int], str]) -> str:
    """The header, as many whole lines as fit in one message, and how many more there are: a list is never cut
    mid-line or mid-link, and its header counts what it shows."""
    for shown in range(len(lines), -1, -1):
        rest = len(lines) - shown
        text = "\n".join([head(shown), *lines[:shown], *([more(rest)] if rest else [])])
        if len(text) <= _MAX_LIST:
            return text
    return cut(head(0), _MAX_LIST)


def fit_text(text: str, limit: int = MAX_PRIVATE_TEXT) -> str:
    """A private answer as Slack will show it: at most `limit` characters, cut at a line (or word) boundary and
    never inside a `<link|label>`, a mention or a date token, with "…" saying there was more."""
    if len(text) <= limit:
        return text
    head = text[: limit - 2]
    cut = head.rfind("\n")
    if cut < limit // 2:
        cut = head.rfind(" ")
    head = head[: max(cut, 0)] if cut > 0 else head
    if head.count("<") > head.count(">"):
        head = head[: head.rfind("<")]
    return head.rstrip() + "\n…"


def queued(wait: float) -> str:
    """Told to the person when their launch or approval message waits for a busy channel (Slack's pacing)."""
    return (
        ":hourglass: This channel is busy in Slack: your message is queued and goes out in about"
        f" {max(1, round(wait))} s. Nothing is lost, and nothing runs before it is posted."
    )


def notice(text: str) -> Message:
    """A plain text message (thread notes): Slack still gets a block, so the text renders as mrkdwn."""
    return Message(
        text=cut(text, 3000), blocks=[SectionBlock(text=MarkdownTextObject(text=cut(text, MAX_SECTION))).to_dict()]
    )


def mentions(ids: Sequence[str]) -> str:
    return ", ".join(mention(i) for i in ids) or "–"


def mention(slack_id: str | None) -> str:
    if not slack_id:
        return "someone"
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"


def when(epoch: float) -> str:
    """A time each reader sees in their own time zone (Slack's date token), UTC where the token is not shown."""
    return f"<!date^{int(epoch)}^{{date_short_pretty}} at {{time}}|{utc_time(epoch)}>"


def utc_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


# How Slack shows each of BK-JOB's job and step statuses (bot.bkjob.status) at a glance.
_STATUS_EMOJI: dict[int, str] = {
    1: ":hourglass_flowing_sand:",
    2: ":arrows_counterclockwise:",
    3: ":white_check_mark:",
    4: ":x:",
    5: ":fast_forward:",
    6: ":warning:",
    7: ":raised_hand:",
    8: ":octagonal_sign:",
    9: ":rotating_light:",
    10: ":hourglass:",
    11: ":octagonal_sign:",
    13: ":octagonal_sign:",
    14: ":wastebasket:",
    15: ":hourglass_flowing_sand:",
}


def status_emoji(code: int) -> str:
    """A status code BK-JOB may add later (or the 12 its docs list and RunStatusEnum lacks) shows as unknown."""
    return _STATUS_EMOJI.get(code, ":grey_question:")
