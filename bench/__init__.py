"""Benchmarks of bkjob-bot against the loopback fakes: ack latency, result throughput, growth, start-up.

Run `python -m bench` (see docs/benchmarks.md); not part of the test suite, and nothing here fails on timing.
"""

__all__: list[str] = []
