"""Scheduled improvement runs (`evolve improve --schedule "CRON"`) and the lock they share.

APScheduler's `CronTrigger` decides when a run is due; the loop that waits for it is ours,
driven by a clock object, because APScheduler 3 reads the wall clock directly and a scheduler
that cannot be given a fake clock cannot be tested without sleeping. The semantics follow
APScheduler's: a run that is late by more than `misfire_grace_s` is a misfire and is skipped;
several missed fire times collapse into one run (coalescing).

The improvement lock (a file lock under `<home>/locks`) is taken by every improvement run
started here, by the worker's own trigger and by one-shot `evolve improve` calls made
through `improvement_lock`, so two runs never write the same cycle at once.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

from filelock import FileLock, Timeout

from agent.config import ConfigError, Settings
from agent.errors import LockBusy

Overlap = Literal["skip", "wait"]
LOCK_NAME = "improve"


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time; `sleep` returns early once `stop` is set (SIGTERM, Ctrl-C)."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float) -> None:
        self.stop.wait(max(0.0, seconds))


def parse_cron(expr: str, tz: Any = timezone.utc):
    """A `CronTrigger` for a five-field crontab line, or a ConfigError saying what is wrong."""
    from apscheduler.triggers.cron import CronTrigger

    text = " ".join((expr or "").split())
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise ConfigError(
            f"--schedule {expr!r} is not a cron expression: it needs 5 fields "
            f"(minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\" for 03:00 daily; "
            f"got {len(fields)}"
        )
    try:
        return CronTrigger.from_crontab(text, timezone=tz)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--schedule {expr!r} is not a valid cron expression: {exc}") from None




def describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "another improvement run holds the lock"
    return (f"another improvement run holds the lock (pid {holder.get('pid', '?')}, "
            f"{holder.get('what', 'improve')}, since {holder.get('since', '?')})")


def _holder_path(settings: Settings, name: str) -> Path:
    return settings.locks_dir / f"{name}.holder.json"


def read_holder(settings: Settings, name: str = LOCK_NAME) -> dict[str, Any]:
    try:
        return json.loads(_holder_path(settings, name).read_text())
    except (OSError, ValueError):
        return {}


@contextmanager
def improvement_lock(settings: Settings, *, overlap: Overlap = "skip", what: str = "improve",
                     on_wait: Callable[[dict[str, Any]], None] | None = None,
                     poll_s: float = 1.0, stop: threading.Event | None = None) -> Iterator[None]:
    """Hold the improvement lock for the duration of the block.

    overlap="skip": raise LockBusy at once when another run holds it. overlap="wait": call
    `on_wait` once with who holds it, then wait for it (a set `stop` event raises LockBusy)."""
    if overlap not in ("skip", "wait"):
        raise ConfigError(f"--overlap must be 'skip' or 'wait', got {overlap!r}")
    settings.ensure_dirs()
    lock = FileLock(str(settings.locks_dir / f"{LOCK_NAME}.lock"), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = read_holder(settings)
        if overlap == "skip":
            raise LockBusy(describe_holder(holder), holder) from None
        if on_wait is not None:
            on_wait(holder)
        while True:
            if stop is not None and stop.is_set():
                raise LockBusy(describe_holder(holder), holder) from None
            try:
                lock.acquire(timeout=poll_s)
                break
            except Timeout:
                continue
    # On a shared PostgreSQL store the lock is also held in the database, so processes on
    # other machines (other homes) never improve at the same time.
    from memory.locks import database_lock

    db_lock = database_lock(settings.database_url, LOCK_NAME)
    told = False
    try:
        while db_lock is not None and not db_lock.try_acquire():
            elsewhere = {"what": "improvement run on another machine (database lock)"}
            if overlap == "skip" or (stop is not None and stop.is_set()):
                raise LockBusy("another improvement run holds the database lock (a process on another "
                               "machine or home sharing this database)", elsewhere)
            if on_wait is not None and not told:
                on_wait(elsewhere)
                told = True
            (stop or threading.Event()).wait(poll_s)
    except BaseException:
        lock.release()
        if db_lock is not None:
            db_lock.close()
        raise
    # The holder file only explains the lock to the next run; the lock itself is the flock.
    holder_file = _holder_path(settings, LOCK_NAME)
    try:
        holder_file.write_text(json.dumps({"pid": os.getpid(), "what": what,
                                           "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
        yield
    finally:
        try:
            holder_file.unlink()
        except OSError:
            pass
        if db_lock is not None:
            db_lock.close()
        lock.release()


def run_scheduled(settings: Settings, cron: str, job: Callable[[], dict], *, overlap: Overlap = "skip",
                  clock: Clock | None = None, max_runs: int | None = None, misfire_grace_s: float = 300.0,
                  log: Callable[[str, dict[str, Any]], None] | None = None,
                  stop: threading.Event | None = None, handle_signals: bool = True) -> dict[str, Any]:
    """Run `job` at every fire time of `cron` until stopped or `max_runs` runs have ended.

    Each run holds the improvement lock; when another run holds it the run is skipped or
    waits (`overlap`) and says so through `log(event, fields)`. A run started more than
    `misfire_grace_s` after its fire time (the machine slept, the previous run overran) is
    skipped as a misfire. A failing job is logged and the schedule goes on. Budgets per run are
    the job's own (cycles, `loop.token_budget`, `loop.wall_time_s`).

    Returns {"runs", "skipped", "misfired", "failed", "results", "stop_reason"}."""
    trigger = parse_cron(cron)
    if overlap not in ("skip", "wait"):
        raise ConfigError(f"--overlap must be 'skip' or 'wait', got {overlap!r}")
    stop = stop or threading.Event()
    clock = clock or SystemClock(stop)
    emit = log or (lambda event, fields: None)
    summary: dict[str, Any] = {"runs": 0, "skipped": 0, "misfired": 0, "failed": 0, "results": [],
                               "stop_reason": ""}

    restore = _install_stop_handlers(stop) if handle_signals else (lambda: None)
    try:
        last_fire: datetime | None = None
        while True:
            now = clock.now()
            fire = trigger.get_next_fire_time(last_fire, now)
            if fire is None:
                summary["stop_reason"] = "schedule has no further fire times"
                break
            # Everything that fell due while we were away collapses into the newest fire time.
            while True:
                following = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
                if following is None or following > now:
                    break
                fire = following
            if fire > now:
                emit("schedule_next", {"at": fire.isoformat()})
                clock.sleep((fire - now).total_seconds())
                if stop.is_set():
                    summary["stop_reason"] = "signal"
                    break
                now = clock.now()
                if now < fire:
                    continue  # woken early; recompute
            last_fire = fire
            late = (now - fire).total_seconds()
            if late > misfire_grace_s:
                summary["misfired"] += 1
                emit("schedule_misfire", {"fire_time": fire.isoformat(), "late_s": round(late, 1),
                                          "grace_s": misfire_grace_s})
                continue
            try:
                with improvement_lock(settings, overlap=overlap, what=f"schedule {cron!r}", stop=stop,
                                      on_wait=lambda h: emit("schedule_wait", {"fire_time": fire.isoformat(),
                                                                               "reason": describe_holder(h)})):
                    emit("schedule_run", {"fire_time": fire.isoformat()})
                    started = time.monotonic()
                    try:
                        result = job()
                    except Exception as exc:  # one failed run must not end the schedule
                        summary["failed"] += 1
                        emit("schedule_failed", {"fire_time": fire.isoformat(),
                                                 "error": f"{type(exc).__name__}: {exc}"[:500]})
                    else:
                        summary["results"].append(result)
                        emit("schedule_done", {"fire_time": fire.isoformat(),
                                               "seconds": round(time.monotonic() - started, 3),
                                               "stop_reason": (result or {}).get("stop_reason", "")})
                    summary["runs"] += 1
            except LockBusy as busy:
                if stop.is_set():
                    summary["stop_reason"] = "signal"
                    break
                summary["skipped"] += 1
                emit("schedule_skip", {"fire_time": fire.isoformat(), "reason": str(busy)})
            if max_runs is not None and summary["runs"] + summary["skipped"] >= max_runs:
                summary["stop_reason"] = "max_runs"
                break
            if stop.is_set():
                summary["stop_reason"] = "signal"
                break
    finally:
        restore()
    return summary


def _install_stop_handlers(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT set `stop` (a running job finishes first); a no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}

    def handler(signum, frame):
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
