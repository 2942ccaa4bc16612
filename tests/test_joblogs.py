"""Cleaning, masking and the digest's bounds: what reaches Slack from a host's output."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.bkjob.hostlogs import FILE_STEP, SCRIPT_STEP, FileLog, HostRef, HostResult
from bot.core.digest import FailedStep, FailureReport, group_hosts
from bot.core.joblogs import DIGEST_TAIL, MASK, Masker, _merge, _safe_tail, clean
from bot.slack.blocks.digest import MAX_SECTION, sections

SECRET = "hunter2-plan-secret"


def test_clean_strips_escapes_and_controls_and_replaces_broken_text() -> None:
    raw = "\x1b[1;31mred\x1b[0m \x1b]0;title\x07ok \x1b]8;;https://x\x1b\\link\x1b]8;;\x1b\\ bell\x07 nul\x00"
    assert clean(raw + " \ud800 tab\t\r\nnext") == "red ok link bell nul \ufffd tab\t\nnext"


@given(st.text())
def test_clean_always_gives_text_slack_can_take(text: str) -> None:
    cleaned = clean(text)
    cleaned.encode("utf-8")  # no lone surrogates left
    assert "\x1b" not in cleaned and "\r" not in cleaned


def test_masker_hides_values_and_secret_looking_assignments() -> None:
    mask = Masker([SECRET, "ab"])  # two characters: too short to mask by value
    text = (
        f"bare {SECRET}\n"
        "DB_PASSWORD=s3cr3t export API_TOKEN: 'tok en'\n"
        "mysql --password other1 -u root\n"
        "curl https://deploy:in-url@repo.example.com/x\n"
        "password is required\n"
        "about ab\n"
    )
    masked = mask(text)
    assert SECRET not in masked and "s3cr3t" not in masked and "tok en" not in masked
    assert "other1" not in masked and "in-url" not in masked
    assert f"bare {MASK}" in masked and f"https://deploy:{MASK}@repo.example.com/x" in masked
    assert "password is required" in masked and "about ab" in masked


def test_a_secret_straddling_the_cut_is_never_shown_in_part() -> None:
    log = "x" * 5000 + SECRET + "y" * 3990
    shown = _safe_tail(log, Masker([SECRET]), 4000)
    assert SECRET[-8:] not in shown and MASK in shown
    assert shown.startswith("[… earlier output not shown")


def host(i: int, *, status: int = 104, exit_code: int | None = 1, log: str | None = "boom") -> HostResult:
    return HostResult(
        step_instance_id=1, host=HostRef(0, f"10.0.{i // 256}.{i % 256}"), status=status, exit_code=exit_code, log=log
    )


def test_hosts_are_grouped_by_what_went_wrong_largest_first() -> None:
    hosts = [host(i) for i in range(5)] + [host(9, status=18, exit_code=None), host(10, status=102, exit_code=None)]
    hosts += [host(11, status=11, exit_code=None), host(12, status=104, exit_code=2)]
    groups = group_hosts(hosts)
    assert [g.label for g in groups][0] == "exit code 1" and len(groups[0].hosts) == 5
    labels = {g.label for g in groups}
    assert {"agent not installed", "timed out (script timed out)", "failed", "exit code 2"} <= labels


def test_a_report_of_any_size_stays_within_slacks_limits() -> None:
    steps = tuple(
        FailedStep(
            step_instance_id=s,
            name=f"step {s} " + "n" * 300,
            type=SCRIPT_STEP,
            status=4,
            total_hosts=100_000,
            hosts=tuple(host(i, exit_code=i % 40, log="z" * 10_000) for i in range(100_000 if s == 0 else 50)),
        )
        for s in range(50)
    )
    texts = sections(FailureReport(steps=steps, problem="p" * 5000))
    assert len(texts) <= 3 * 4 + 2
    assert all(len(t) <= MAX_SECTION for t in texts)
    assert "47 more failed steps" in texts[-2]


def test_a_file_step_names_source_and_destination() -> None:
    transfer = FileLog(1, "10.9.9.9", "/data/a.tgz", "10.0.0.1", "/opt/", 5, "Detail: no such file")
    failed = HostResult(step_instance_id=2, host=HostRef(0, "10.0.0.1"), status=203, log="", files=(transfer,))
    (text,) = sections(FailureReport(steps=(FailedStep(2, "copy", FILE_STEP, 4, 1, (failed,)),)))
    assert "`10.9.9.9:/data/a.tgz` → `10.0.0.1:/opt/`" in text and "source file missing" in text


@given(
    st.text(min_size=3, max_size=40).filter(lambda s: "*" not in s and len(clean(s)) >= 3),
    st.lists(st.text(max_size=200), max_size=5),
)
def test_a_known_secret_never_survives_masking(secret: str, around: list[str]) -> None:
    """Whatever surrounds it, and even with escapes or control characters in it, a secret is not shown."""
    text = secret.join(around) if len(around) > 1 else f"{secret} {''.join(around)}"
    shown = Masker([secret])(clean(text))
    assert clean(secret) not in shown


class _CountingMasker(Masker):
    def __init__(self) -> None:
        super().__init__([SECRET])
        self.calls = 0

    def __call__(self, text: str) -> str:
        self.calls += 1
        return super().__call__(text)


def test_a_digest_masks_and_keeps_only_the_logs_it_shows() -> None:
    """5,000 failed hosts with logs (as v2 returns them all): only the shown hosts' logs are cleaned, masked and
    kept; every other host is passed on without a log, and one that has nothing left to change is not copied."""
    hosts = [host(i, log=f"{SECRET} failed on {i}") for i in range(5000)] + [host(9999, log=None)]
    masker = _CountingMasker()
    shown = {(1, hosts[0].host.address), (1, hosts[1].host.address)}
    kept = _merge(hosts, {}, masker, tail=DIGEST_TAIL, shown=shown)
    assert [h.host for h in kept] == [h.host for h in hosts]
    assert [h.log for h in kept[:2]] == [f"{MASK} failed on 0", f"{MASK} failed on 1"]
    assert all(h.log is None for h in kept[2:])
    assert masker.calls == 2
    assert kept[-1] is hosts[-1]
    # Without `shown` (the full logs of the Logs button) every host keeps its masked log.
    assert all(h.log is not None and SECRET not in h.log for h in _merge(hosts[:50], {}, masker, tail=DIGEST_TAIL))
