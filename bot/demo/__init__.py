"""`python -m bot demo`: the real bot, a simulated BK-JOB and a web page that plays Slack, in one process."""

from bot.demo.server import DemoOptions, Simulator

__all__ = ["DemoOptions", "Simulator"]
