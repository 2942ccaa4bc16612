"""The fakes live in `bot.fakes` (the demo simulator uses them too); tests import them from here."""

from bot.fakes import (
    BkRequest,
    CallbackAttempt,
    FakeBkJob,
    FakeSlack,
    Instance,
    ResponseUrlPost,
    SlackCall,
    StepInstance,
)

__all__ = [
    "BkRequest",
    "CallbackAttempt",
    "FakeBkJob",
    "FakeSlack",
    "Instance",
    "ResponseUrlPost",
    "SlackCall",
    "StepInstance",
]
