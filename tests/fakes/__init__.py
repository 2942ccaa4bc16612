"""Fakes of Slack and BK-JOB: real HTTP servers on loopback port 0 that record and fail on demand."""

from tests.fakes.bkjob import BkRequest, CallbackAttempt, FakeBkJob, Instance, StepInstance
from tests.fakes.slack import FakeSlack, ResponseUrlPost, SlackCall

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
