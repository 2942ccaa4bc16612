"""The figures as a table for people and as JSON for machines (the same numbers in both)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["machine", "table", "write_json"]


def machine() -> dict[str, Any]:
    """Where the figures came from: they mean little without it."""
    try:
        free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        free = ""
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "free_h": free,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
    }


def write_json(results: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def table(results: Mapping[str, Any]) -> str:
    lines: list[str] = []
    m = results["machine"]
    lines.append(
        f"machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, mode {results['mode']}, "
        f"median of {results.get('runs', 1)} run(s) [min-max]; load average (1 min) "
        f"{m['loadavg_at_start'][0]:.1f} at start, {m.get('loadavg_at_end', [float('nan')])[0]:.1f} at end"
    )
    spread = results.get("spread", {})
    if "ack" in results:
        low, high = spread.get("ack", {}).get("min", results["ack"]), spread.get("ack", {}).get("max", results["ack"])
        lines.append("")
        lines.append("1. ack latency (ms) and requests/s: bot vs baseline (bare aiohttp + SignatureVerifier)")
        lines.append(
            f"{'kind':<7}{'conc':>5} | {'p50':>7}{'p99':>7}{'max':>7}{'rps':>7} | "
            f"{'b.p50':>7}{'b.p99':>7}{'b.max':>7}{'b.rps':>7} | {'p50 x':>6}{'p99 x [range]':>16}"
            f"{'rps x [range]':>18}"
        )
        for row, lo, hi in zip(results["ack"], low, high, strict=True):
            bot, base = row["bot"], row["baseline"]
            lines.append(
                f"{row['kind']:<7}{row['concurrency']:>5} | {bot['p50_ms']:>7.2f}{bot['p99_ms']:>7.2f}"
                f"{bot['max_ms']:>7.1f}{bot['rps']:>7.0f} | {base['p50_ms']:>7.2f}{base['p99_ms']:>7.2f}"
                f"{base['max_ms']:>7.1f}{base['rps']:>7.0f} | {row['p50_ratio']:>6.1f}"
                f"{row['p99_ratio']:>6.1f} [{lo['p99_ratio']:.1f}-{hi['p99_ratio']:.1f}]"
                f"{row['rps_ratio']:>7.2f} [{lo['rps_ratio']:.2f}-{hi['rps_ratio']:.2f}]"
            )
        lines.append("   CPU ms per request (the bot's with the work its acks started): bot / baseline; rig for each")
        for row in results["ack"]:
            cpu = row.get("cpu_ms_per_request")
            if cpu:
                lines.append(
                    f"   {row['kind']:<7}{row['concurrency']:>5} | bot {cpu['bot']:.2f} / "
                    f"baseline {cpu['baseline']:.2f}"
                    f" (x{cpu['bot'] / cpu['baseline'] if cpu['baseline'] else float('nan'):.1f})"
                    f" | rig {cpu['rig_for_bot']:.2f} / "
                    f"{cpu['rig_for_baseline']:.2f}"
                )
    for t in results.get("throughput", []):
        lines.append("")
        lines.append(
            f"2. results: {t['launches']} over {t['channels']} channels at {t['rate_per_channel']:g}/s/channel: "
            f"{t['elapsed_s']:.1f} s vs ideal {t['ideal_s']:.1f} s (x{t['vs_ideal']:.3f}); delivered "
            f"{t['delivered']}, duplicated {t['duplicated']}, order kept {t['order_kept_per_thread']}, "
            f"429s {t['throttled_429']}; launches {t['launches_per_s']:.0f}/s, callbacks sent in "
            f"{t['callbacks_sent_s']:.1f} s"
        )
    for g in results.get("growth", []):
        lines.append("")
        lines.append(
            f"3. growth ({g['backend']}): RSS idle {g['rss_idle_mib']:.1f} MiB, after HTTP launches "
            f"{g['rss_after_http_launches_mib']:.1f} MiB ({g['launches_per_s_over_http']:.0f} launches/s), "
            f"idle on the large store {g['rss_idle_large_store_mib']:.1f} MiB "
            f"(restart {g['restart_s_with_large_store']:.2f} s)"
        )
        lines.append(
            f"{'stored':>9} | {'ack p50':>8}{'ack p99':>8}{'rps':>7} | {'/base p99':>9}{'growth':>7} | "
            f"{'launch med':>11}{'max':>7} | {'exec p50':>9}{'p99':>6}{'max':>6} | {'RSS':>6}"
        )
        lines.append(
            "   (/base p99: median over 5 rounds, bot and baseline alternately; launch: command to the edited launch "
            "message, one at a time; exec: command to execute_job at BK-JOB, 10 senders)"
        )
        for st in g["stages"]:
            a, x = st["ack_help_c10"], st["launch_to_execute_c10"]
            lines.append(
                f"{st['launches_stored']:>9,} | {a['p50_ms']:>8.2f}{a['p99_ms']:>8.2f}{a['rps']:>7.0f} | "
                f"{st['ack_p99_vs_baseline']:>9.2f}{st['ack_p99_growth']:>7.2f} | "
                f"{st['launch_ms_median']:>11.1f}{st['launch_ms_max']:>7.1f} | {x['p50_ms']:>9.0f}{x['p99_ms']:>6.0f}"
                f"{x['max_ms']:>6.0f} | {st['rss_mib']:>6.1f}"
            )
        if "side_by_side" in g:
            sb = g["side_by_side"]
            lines.append(
                f"   side by side, {g['stages'][-1]['launches_stored']:,} vs {g['stages'][0]['launches_stored']:,} "
                f"stored, both running, {sb['requests_each']} acks each: p99 {sb['p99_ms']['large']:.1f} vs "
                f"{sb['p99_ms']['small']:.1f} ms (x{sb['ack_p99_large_over_small']:.2f}), p50 x"
                f"{sb['ack_p50_large_over_small']:.2f}; baseline p99 {sb['p99_ms']['baseline']:.1f}; RSS "
                f"{sb['rss_large_mib']:.1f} vs {sb['rss_small_mib']:.1f} MiB; load {sb['loadavg'][0]:.1f}"
            )
    if "startup" in results:
        s = results["startup"]
        lines.append("")
        lines.append(
            f"4. start-up to /healthz 200: median {s['median_s']:.2f} s, max {s['max_s']:.2f} s, "
            f"first {s['first_s']:.2f} s ({int(s['runs'])} runs)"
        )
    if "picker" in results:
        p = results["picker"]
        lines.append("")
        lines.append(
            f"6. plan picker, {p['plans']:,} plans: opened in {p['picker_opened_ms']:.0f} ms, first keystroke "
            f"{p['first_keystroke_ms']:.1f} ms; then options per keystroke (ms):"
        )
        for level in p["levels"]:
            bot, base = level["bot"], level["baseline"]
            lines.append(
                f"   {level['concurrency']:>3} senders: p50 {bot['p50_ms']:.2f}, p99 {bot['p99_ms']:.2f}, max "
                f"{bot['max_ms']:.1f} ({bot['requests']} requests); baseline p99 {base['p99_ms']:.2f} "
                f"(x{level['p99_ratio']:.1f})"
            )
    if "e2e" in results:
        e = results["e2e"]
        b = e["burst"]
        lines.append("")
        lines.append(f"8. end to end, Slack and BK-JOB answering in {e['latency_ms']:.0f} ms (ms: p50 / p99 / max)")
        for name, label in (
            ("command_to_form_ms", "command to filled form"),
            ("callback_to_reply_ms", "callback to reply"),
        ):
            st = e[name]
            lines.append(
                f"   {label:<24}{st['p50']:>8.0f}{st['p99']:>8.0f}{st['max']:>8.0f}   ({int(st['samples'])} samples)"
            )
        lines.append(
            f"   {b['results']} results over {b['channels']} channels at 1 post/s/channel: {b['elapsed_s']:.1f} s "
            f"vs ideal {b['ideal_s']:.1f} s (x{b['vs_ideal']:.3f}), {b['throttled_429']} 429s"
        )
    if "socket" in results:
        lines.append("")
        lines.append("7. acks in Socket Mode vs over HTTP (ms), two bot processes side by side")
        for row in results["socket"]:
            sock, http = row["socket"], row["http"]
            lines.append(
                f"   {row['kind']:<5}{row['concurrency']:>4} senders: socket p50 {sock['p50_ms']:.2f} p99 "
                f"{sock['p99_ms']:.2f} ({sock['rps']:.0f}/s); http p50 {http['p50_ms']:.2f} p99 {http['p99_ms']:.2f} "
                f"({http['rps']:.0f}/s); p50 x{row['p50_ratio']:.2f}, p99 x{row['p99_ratio']:.2f}"
            )
    if "launch" in results:
        lines.append("")
        lines.append(
            "10. launch: signed request sent to BK-JOB receiving execute_job (ms), each launch in its own channel; "
            "baseline = the bare server's ack p99 at the same concurrency"
        )
        for row in results["launch"]["rows"]:
            lines.append(
                f"   {row['via']:<8}{row['concurrency']:>3} senders: p50 {row['p50_ms']:.0f}, p99 {row['p99_ms']:.0f}, "
                f"max {row['max_ms']:.0f} ({row['launches']} launches, {row['over_250_ms']} over 250 ms, "
                f"{row['over_1_s']} over 1 s); {row['bot_cpu_ms_per_launch']:.1f} ms bot CPU each; baseline "
                f"p99 {row['baseline_ack_p99_ms']:.1f}; load {row['loadavg'][0]:.1f}; to the edit showing the "
                f"instance p50 {row['edit_p50_ms']:.0f}, p99 {row['edit_p99_ms']:.0f}, max {row['edit_max_ms']:.0f}"
            )
    for d in results.get("digest", []):
        lines.append("")
        lines.append(_digest(d))
    if "queries" in results:
        lines.append("")
        lines.append(_queries(results["queries"]))
    for name, error in results.get("errors", {}).items():
        lines.append(f"\n{name}: FAILED: {error}")
    return "\n".join(lines)


def _digest(d: dict[str, Any]) -> str:
    """Both sizes side by side, then the cost per host of the large one over the small one's."""
    lines = [
        f"9. failure digest, BK-JOB {d['api_version']}: callback to the reply in the thread (median of "
        f"{d['samples']}); per host, large / small: time x{d['per_host_time_ratio']:.3f}, CPU "
        f"x{d['per_host_cpu_ratio']:.3f} (whole: x{d['time_ratio']:.2f}, x{d['cpu_ratio']:.2f})"
    ]
    for key in (k for k in d if k.startswith("hosts_")):
        h = d[key]
        lines.append(
            f"   {h['hosts']:>6,} hosts: {h['reply_ms_median']:>7.0f} ms (max {h['reply_ms_max']:.0f}), CPU "
            f"{h['cpu_s_mean']:.3f} s, BK-JOB {h['bk_calls']} calls ({h['bk_request_bytes']:,} B out, "
            f"{h['bk_response_bytes']:,} B back), Slack message {h['slack_bytes']:,} B in {h['sections']} sections"
        )
    return "\n".join(lines)


def _queries(rows: list[dict[str, Any]]) -> str:
    """One line per operation: p50 at each size, and the largest size's p50 over the smallest's [range]."""
    lines = ["5. store operations, p50 ms (median of runs) by launches stored; x = largest / smallest [min-max]"]
    for backend in dict.fromkeys(row["backend"] for row in rows):
        mine = [row for row in rows if row["backend"] == backend]
        sizes = "".join(f"{row['launches_stored']:>10,}" for row in mine)
        lines.append(f"{backend:<22}{sizes} | {'x':>6}")
        small, large = mine[0]["ops"], mine[-1]["ops"]
        for op in large:
            cells = "".join(f"{row['ops'][op]['p50_ms']:>10.3f}" if op in row["ops"] else f"{'-':>10}" for row in mine)
            base = small.get(op, {}).get("p50_ms")
            cost = large[op]
            ratio = (
                f"{cost['p50_ms'] / base:>6.2f} [{cost['p50_min_ms'] / base:.2f}-{cost['p50_max_ms'] / base:.2f}]"
                if base
                else ""
            )
            lines.append(f"  {op:<20}{cells} | {ratio}")
    return "\n".join(lines)
