"""Inbound HTTP: BK-JOB's callback, /healthz, /metrics and the limits on slow clients."""
