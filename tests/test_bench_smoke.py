"""The benchmarks still run: `python -m bench --tiny` end to end, a few requests each. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_runs_in_tiny_mode(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert {"machine", "ack", "throughput", "growth", "startup", "queries", "spread", "load"} <= results.keys()
    assert {(row["kind"], row["concurrency"]) for row in results["ack"]} == {
        (kind, level) for kind in ("help", "run", "submit") for level in (1, 2)
    }
    for row in results["ack"]:
        assert row["bot"]["statuses"] == {"200": 5} and row["baseline"]["statuses"] == {"200": 5}
    (throughput,) = results["throughput"]
    assert throughput["delivered"] == throughput["launches"]
    assert throughput["duplicated"] == 0 and throughput["order_kept_per_thread"]
    (sqlite, *others) = results["growth"]
    assert sqlite["backend"] == "sqlite"
    assert [stage["launches_stored"] for stage in sqlite["stages"]] == [2, 10, 30]
    assert {row["launches_stored"] for row in results["queries"]} == {2, 30}
    assert results["spread"]["ack"]["min"] and results["spread"]["ack"]["max"]  # the runs' range of each figure
    assert [set(run) for run in results["load"]["ack"]] == [{"loadavg_before", "loadavg_after", "wall_s"}]
    for digest in results["digest"]:  # one per BK-JOB wire format: a digest for both sizes, within Slack's limits
        for size in (5, 50):
            row = digest[f"hosts_{size}"]
            assert row["bk_calls"] >= 2 and row["sections"] >= 1 and row["slack_bytes"] < 40_000
    assert [row["api_version"] for row in results["digest"]] == ["v2", "v3"]
    assert {(row["via"], row["concurrency"]) for row in results["launch"]["rows"]} == {
        (via, level) for via in ("command", "modal") for level in (1, 10)
    }
    assert all(row["launches"] == 4 for row in results["launch"]["rows"])
    assert "1. ack latency" in done.stdout
