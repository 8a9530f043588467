"""The worker's JSON log, its heartbeat file, and the lock that keeps one worker per home."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from agent.config import Settings
from agent.errors import LockBusy

LOG_ROTATE_BYTES = 50_000_000


# ---------------------------------------------------------------- logging and heartbeat


class JsonLog:
    """One JSON object per line: `{"ts", "event", ...}`. Rotated once at LOG_ROTATE_BYTES so a
    worker that runs for weeks keeps at most two files."""

    def __init__(self, path: Path, *, echo: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event, **fields}
        line = json.dumps(record, default=str, ensure_ascii=False)
        with self._lock:
            try:
                if self.path.stat().st_size > LOG_ROTATE_BYTES:
                    self.path.replace(self.path.with_suffix(self.path.suffix + ".1"))
            except FileNotFoundError:
                pass
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        if self.echo is not None:
            self.echo(line)


def worker_dir(settings: Settings) -> Path:
    return settings.home / "worker"


def heartbeat_path(settings: Settings) -> Path:
    return worker_dir(settings) / "heartbeat.json"


def log_path(settings: Settings) -> Path:
    return settings.home / "logs" / "worker.jsonl"


def read_heartbeat(settings: Settings) -> dict[str, Any] | None:
    try:
        return json.loads(heartbeat_path(settings).read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def heartbeat_state(beat: dict[str, Any] | None, *, now: float | None = None, stale_after_s: float = 120.0) -> str:
    """"running", "stopped" (clean exit), "stale" (no beat lately, or the process is gone), "never"."""
    if not beat:
        return "never"
    if beat.get("state") == "stopped":
        return "stopped"
    now = time.time() if now is None else now
    if now - float(beat.get("unix", 0)) > stale_after_s or not _pid_alive(int(beat.get("pid", 0))):
        return "stale"
    return "running"


# ---------------------------------------------------------------- one worker per home


def _take_worker_lock(settings: Settings) -> FileLock:
    lock = FileLock(str(settings.locks_dir / "worker.lock"), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        beat = read_heartbeat(settings) or {}
        raise LockBusy(f"another worker is already running on {settings.home} "
                       f"(pid {beat.get('pid', '?')}); stop it first or use another EVOLVE_HOME") from None
    return lock


def check_no_worker(settings: Settings) -> None:
    """Fail fast (LockBusy) when a worker already runs here, before a model is loaded for nothing."""
    settings.ensure_dirs()
    _take_worker_lock(settings).release()
