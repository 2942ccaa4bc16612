"""The domain: launches, approvals, run control and results, speaking neither Slack nor HTTP."""
