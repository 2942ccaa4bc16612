"""Slack's listeners, grouped by feature."""
