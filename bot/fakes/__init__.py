"""Fakes of Slack's Web API and BK-JOB's ESB: real HTTP servers on loopback that record and fail on demand.

One implementation serves both the test suite and `python -m bot demo`.
"""

from bot.fakes.bkjob import BkRequest, CallbackAttempt, FakeBkJob, Instance, StepInstance
from bot.fakes.server import FakeServer
from bot.fakes.slack import FakeSlack, ResponseUrlPost, SlackCall

__all__ = [
    "BkRequest",
    "CallbackAttempt",
    "FakeBkJob",
    "FakeServer",
    "FakeSlack",
    "Instance",
    "ResponseUrlPost",
    "SlackCall",
    "StepInstance",
]
