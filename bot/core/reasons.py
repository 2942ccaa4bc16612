"""What the core says in words: a sentence with typed slots (people, times, quoted text, failures).

The core decides *what* to say; the chat wing decides *how* each slot looks (a Slack mention, a date token that
each reader sees in their own time zone, text from BK-JOB escaped so it cannot ping a channel). So the core never
writes chat markup, and a second platform (or a second language) renders the same reasons its own way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Union

from bot.errors import BotError

__all__ = [
    "Channel",
    "Failure",
    "Moment",
    "People",
    "Person",
    "Plain",
    "Quoted",
    "Reason",
    "Slot",
    "Tone",
    "people",
    "plain_time",
    "say",
]


class Tone(Enum):
    """How a line feels at a glance; the chat wing shows it (Slack: an emoji before the line)."""

    REFUSED = "refused"  # nothing was done: a refusal or an error that ends the matter
    UNKNOWN = "unknown"  # we cannot tell what happened: check BK-JOB
    FAILED = "failed"  # BK-JOB refused what was asked
    WAITING = "waiting"  # queued, or waiting on someone else
    WARNING = "warning"  # done, with something to look at
    DONE = "done"  # what was asked happened
    STOPPED = "stopped"  # a run was stopped or a step ended by a person
    FILE = "file"  # a file was (or will be) attached
    # run control
    STARTED = "started"  # something was set going in BK-JOB (an operation sent, a re-run launched)
    INFO = "info"  # nothing was done, and nothing is wrong: the state moved on
    ASKED = "asked"  # a request waits for a person's answer (an approval, a confirmation)
    FOUND = "found"  # a lost thing was found


@dataclass(frozen=True)
class Person:
    """A person or a group of people, by their chat ID (None: nobody known, "someone")."""

    id: str | None


@dataclass(frozen=True)
class Channel:
    """A channel, by its chat ID."""

    id: str


@dataclass(frozen=True)
class People:
    """Several people or groups, listed ("–" when there are none)."""

    ids: tuple[str, ...]


@dataclass(frozen=True)
class Moment:
    """A point in time (epoch seconds), shown in each reader's time zone where the platform can."""

    epoch: float


@dataclass(frozen=True)
class Quoted:
    """Text from a person or from BK-JOB (a plan name, a reason, BK-JOB's message): shown exactly as typed."""

    text: str


@dataclass(frozen=True)
class Plain:
    """The bot's own text that may hold characters a chat platform would read as markup (`<job_id>`)."""

    text: str


@dataclass(frozen=True)
class Failure:
    """An error, explained as the chat wing explains errors (BK-JOB's code and message, what to do next)."""

    error: BotError


Slot = Union[Person, People, Channel, Moment, Quoted, Plain, Failure, "Reason", str, int]


@dataclass(frozen=True)
class Reason:
    """A sentence: `template` is the words with `{name}` slots; a `str` or `int` slot is the bot's own words,
    inserted as they are (code spans and emphasis in the template are the bot's own, too)."""

    template: str
    slots: Mapping[str, Slot] = field(default_factory=dict)
    tone: Tone | None = None

    def __str__(self) -> str:
        """The sentence without any chat markup, for logs and exceptions."""
        return self.template.format(**{name: _plain(value) for name, value in self.slots.items()})


def say(template: str, tone: Tone | None = None, **slots: Slot) -> Reason:
    """The short way to write a reason: `say("Only {who} may decide.", who=People(ids))`."""
    return Reason(template, slots, tone)


def people(ids: Sequence[str]) -> People:
    return People(tuple(ids))


def plain_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _plain(value: Slot) -> str:
    if isinstance(value, Person):
        return value.id or "someone"
    if isinstance(value, People):
        return ", ".join(value.ids) or "–"
    if isinstance(value, Channel):
        return f"#{value.id}"
    if isinstance(value, Moment):
        return plain_time(value.epoch)
    if isinstance(value, Quoted | Plain):
        return value.text
    if isinstance(value, Failure):
        return str(value.error)
    return str(value)
