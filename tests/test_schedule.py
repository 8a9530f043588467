"""Scheduled improvement runs with an injected clock: fire times, misfires, overlap, signals."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from agent.config import ConfigError
from agent.surfaces.schedule import LockBusy, improvement_lock, parse_cron, run_scheduled


class FakeClock:
    """Time moves only when the scheduler sleeps (or a job says it took a while)."""

    def __init__(self, start: datetime) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += timedelta(seconds=seconds)


T0 = datetime(2025, 3, 1, 2, 30, tzinfo=timezone.utc)


def collect():
    seen: list[tuple[str, dict]] = []
    return seen, (lambda event, fields: seen.append((event, fields)))


@pytest.mark.parametrize("expr, needle", [
    ("", "5 fields"), ("* * *", "5 fields"), ("every day", "5 fields"),
    ("61 * * * *", "not a valid cron"), ("0 25 * * *", "not a valid cron"), ("a b c d e", "not a valid cron"),
])
def test_malformed_cron_is_one_clear_message(settings, expr, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        run_scheduled(settings, expr, lambda: {}, clock=FakeClock(T0), max_runs=1)
    assert "\n" not in str(info.value)


def test_runs_at_each_fire_time(settings):
    clock = FakeClock(T0)
    ran: list[datetime] = []
    seen, log = collect()
    summary = run_scheduled(settings, "0 3 * * *", lambda: ran.append(clock.now()) or {"stop_reason": "cycles"},
                            clock=clock, max_runs=3, log=log)
    assert ran == [datetime(2025, 3, d, 3, 0, tzinfo=timezone.utc) for d in (1, 2, 3)]
    assert clock.sleeps[0] == 30 * 60
    assert summary["runs"] == 3 and summary["stop_reason"] == "max_runs"
    assert [e for e, _ in seen].count("schedule_done") == 3


def test_overrunning_job_misfires_the_next_slot_then_continues(settings):
    clock = FakeClock(T0)
    ran: list[datetime] = []

    def long_job():
        ran.append(clock.now())
        clock.t += timedelta(minutes=75)  # the run takes longer than the interval
        return {}

    seen, log = collect()
    summary = run_scheduled(settings, "0 * * * *", long_job, clock=clock, max_runs=2, misfire_grace_s=600, log=log)
    # 03:00 runs until 04:15; 04:00 is 15 min late (> 10 min grace): missed; 05:00 runs.
    assert ran == [datetime(2025, 3, 1, 3, 0, tzinfo=timezone.utc), datetime(2025, 3, 1, 5, 0, tzinfo=timezone.utc)]
    assert summary["misfired"] == 1
    miss = next(f for e, f in seen if e == "schedule_misfire")
    assert miss["late_s"] == 900.0


def test_missed_slots_coalesce_into_one_run_within_grace(settings):
    clock = FakeClock(T0)
    ran: list[datetime] = []

    def job():
        ran.append(clock.now())
        clock.t += timedelta(minutes=185)  # 03:00 -> 06:05: 04:00, 05:00, 06:00 all passed
        return {}

    summary = run_scheduled(settings, "0 * * * *", job, clock=clock, max_runs=2, misfire_grace_s=600)
    assert ran[1] == datetime(2025, 3, 1, 6, 5, tzinfo=timezone.utc)  # one run for 06:00, late by 5 min
    assert summary["misfired"] == 0 and summary["runs"] == 2


def test_overlap_skip_says_so(settings):
    seen, log = collect()
    ran = []
    with improvement_lock(settings, what="manual improve"):
        summary = run_scheduled(settings, "*/5 * * * *", lambda: ran.append(1) or {}, clock=FakeClock(T0),
                                max_runs=1, log=log, overlap="skip")
    assert ran == [] and summary["skipped"] == 1
    reason = next(f["reason"] for e, f in seen if e == "schedule_skip")
    assert "holds the lock" in reason and "manual improve" in reason


def test_overlap_wait_waits_for_the_other_run(settings):
    seen, log = collect()
    ran = []
    waiting = threading.Event()
    holder = improvement_lock(settings, what="other")
    holder.__enter__()

    def logging(event, fields):
        log(event, fields)
        if event == "schedule_wait":
            waiting.set()

    result = {}
    t = threading.Thread(target=lambda: result.update(run_scheduled(
        settings, "*/5 * * * *", lambda: ran.append(1) or {}, clock=FakeClock(T0), max_runs=1, log=logging,
        overlap="wait", handle_signals=False)))
    t.start()
    assert waiting.wait(30)
    assert ran == []  # still waiting while the other run holds the lock
    holder.__exit__(None, None, None)
    t.join(30)
    assert ran == [1] and result["runs"] == 1
    assert "other" in next(f["reason"] for e, f in seen if e == "schedule_wait")


def test_failed_job_is_logged_and_schedule_goes_on(settings):
    seen, log = collect()
    calls = []

    def job():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("endpoint gone")
        return {}

    summary = run_scheduled(settings, "0 3 * * *", job, clock=FakeClock(T0), max_runs=2, log=log)
    assert summary["failed"] == 1 and summary["runs"] == 2 and len(calls) == 2
    assert "endpoint gone" in next(f["error"] for e, f in seen if e == "schedule_failed")


def test_stop_during_wait_for_next_fire(settings):
    stop = threading.Event()

    class StoppingClock(FakeClock):
        def sleep(self, seconds):
            stop.set()  # SIGTERM arrives while waiting

    summary = run_scheduled(settings, "0 3 * * *", lambda: {}, clock=StoppingClock(T0), stop=stop,
                            handle_signals=False)
    assert summary["runs"] == 0 and summary["stop_reason"] == "signal"


def test_lock_is_released_after_error(settings):
    with pytest.raises(RuntimeError):
        with improvement_lock(settings):
            raise RuntimeError("x")
    with improvement_lock(settings, overlap="skip"):
        with pytest.raises(LockBusy):
            with improvement_lock(settings, overlap="skip"):
                pass


def test_bad_overlap_value(settings):
    with pytest.raises(ConfigError, match="overlap"):
        run_scheduled(settings, "0 3 * * *", lambda: {}, overlap="queue", clock=FakeClock(T0))


def test_parse_cron_accepts_common_forms():
    for expr in ("0 3 * * *", "*/15 * * * *", "30 2 * * mon-fri", "0 0 1 * *"):
        assert parse_cron(expr) is not None


def test_schedule_prints_the_next_fire_time_and_late_or_skipped_fires(settings):
    """`improve --schedule` used to print nothing until the first fire."""
    from agent.cli.improve import schedule_line

    clock = FakeClock(T0)

    def long_job():
        clock.t += timedelta(minutes=75)
        return {"stop_reason": "completed 1 cycle(s)"}

    lines: list[str] = []
    run_scheduled(settings, "0 * * * *", long_job, clock=clock, max_runs=2, misfire_grace_s=600,
                  log=lambda event, fields: lines.append(schedule_line(event, fields, now=clock.now())))
    assert lines[0] == "next run at 2025-03-01 03:00 UTC (in 30m 00s)"
    assert any(line.startswith("skipped the run due at 2025-03-01T04:00:00+00:00: 900s late") for line in lines)
    assert any(line.startswith("run done in ") and line.endswith(": completed 1 cycle(s)") for line in lines)
    with improvement_lock(settings, what="another"):
        busy: list[str] = []
        run_scheduled(settings, "0 * * * *", lambda: {}, clock=FakeClock(T0), max_runs=1,
                      log=lambda event, fields: busy.append(schedule_line(event, fields)))
    assert any("skipped the run due at" in b and "--overlap wait" in b for b in busy), busy
