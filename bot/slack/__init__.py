"""Slack: listeners, Block Kit rendering of the core's cards, the outbox and its pacing, Socket Mode."""
