"""The long-running worker (`evolve run`) and the queue it reads (`evolve submit`).

Durability comes from the database, not from the process: a queue item is `queued`, then
`running` while it is being solved, then `done` or `error`. Episodes are keyed by the queue
item (`worker/q<id>`), so a worker killed mid-task that starts again finds the item still
`running`, solves it once (or picks up the episode already stored) and never duplicates it.

Failures are sorted the way agent/errors.py sorts them: a crash inside one task (tool error,
model error, timeout) becomes an episode with verdict "error" and the worker goes on;
`ModelUnavailable` (the endpoint is down after the model layer's own retries) keeps the item in
place and waits with growing pauses; SIGTERM or Ctrl-C lets the current task finish, then the
worker writes its heartbeat and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from agent.config import ConfigError, Settings
from agent.errors import EvolveError, InputError, LockBusy, ModelUnavailable, TaskTimeout
from agent.policy import incumbent
from agent.surfaces.work_queue import (
    MAX_QUESTION_CHARS,
    RATERS,
    USER_SUITE,
    _set_item,
    check_question,
    claim_next,
    enqueue,
    queue_counts,
    rate_episode,
    requeue_interrupted,
    submit_file,
    submit_question,
    user_task,
    worker_id,
)
from agent.surfaces.worker_log import (
    LOG_ROTATE_BYTES,
    JsonLog,
    _take_worker_lock,
    check_no_worker,
    heartbeat_path,
    heartbeat_state,
    log_path,
    read_heartbeat,
    worker_dir,
)
from agent.surfaces.worker_status import status
from agent.tasks.base import Verdict, verify_code, verify_qa
from memory.models import Episode, QueueItem, Task

# The queue, log/heartbeat and status helpers live in their own modules; they are re-exported
# here because callers (agent/cli, chat, tests, bench) import them from this module.
__all__ = [
    "LOG_ROTATE_BYTES", "MAX_QUESTION_CHARS", "RATERS", "USER_SUITE", "EvolveError", "InputError",
    "JsonLog", "LockBusy", "Worker", "check_no_worker", "check_question", "claim_next", "enqueue",
    "heartbeat_path", "heartbeat_state", "log_path", "queue_counts", "rate_episode", "read_heartbeat",
    "requeue_interrupted", "status", "submit_file", "submit_question", "user_task", "worker_dir",
    "worker_id", "worker_sandbox",
]


# ---------------------------------------------------------------- the worker


def worker_sandbox(settings: Settings):
    """The sandbox code tasks are verified in, or None where bubblewrap cannot run (a code task
    then ends as an error item that says how to install it; question tasks are unaffected)."""
    from tools.sandbox import Sandbox, SandboxUnavailable

    try:
        return Sandbox(settings.sandbox)
    except SandboxUnavailable:
        return None


class Worker:
    """Takes queue items one at a time and solves them with the incumbent policy.

    `improve` is called (under the improvement lock) every `improve_every` episodes and/or at
    the fire times of `schedule` (a cron line); `improve_every=0` and no schedule mean never."""

    def __init__(self, settings: Settings, store, model, *, tools: list | None = None,
                 improve: Callable[[], dict] | None = None, improve_every: int = 0,
                 schedule: str | None = None, task_timeout_s: float = 600.0,
                 poll_s: float = 2.0, exit_when_empty: bool = False, max_items: int | None = None,
                 backoff_s: float = 5.0, backoff_max_s: float = 300.0, sandbox=None,
                 log: JsonLog | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 wait: Callable[[float], None] | None = None) -> None:
        if improve_every < 0:
            raise ConfigError(f"--improve-every must be >= 0, got {improve_every}")
        self.settings = settings
        self.store = store
        self.model = model
        self._all_tools = tools
        self.improve = improve
        self.improve_every = improve_every
        self.trigger = None
        if schedule:
            from agent.surfaces.schedule import parse_cron

            self.trigger = parse_cron(schedule)
        self.task_timeout_s = task_timeout_s
        self.poll_s = poll_s
        self.exit_when_empty = exit_when_empty
        self.max_items = max_items
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.sandbox = sandbox
        self.log = log or JsonLog(log_path(settings))
        self.clock = clock
        self.wall = wall
        self.stop = threading.Event()
        self._wait = wait or self.stop.wait
        self._deadline: float | None = None
        self._current: dict[str, Any] = {}
        self._solvers = None
        self._state_path = worker_dir(settings) / "state.json"
        self.state = self._load_state()
        self.counts = {"done": 0, "error": 0, "outages": 0, "improvements": 0}
        self.worker_id = worker_id(settings)
        self.lease_s = settings.memory.queue_lease_s
        self._lease_renewed = 0.0

    # -- persistent trigger state -----------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        try:
            return json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {"episodes_since_improve": 0, "last_fire": None}

    def _save_state(self) -> None:
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        tmp.replace(self._state_path)

    def beat(self, state: str, **extra: Any) -> None:
        path = heartbeat_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"pid": os.getpid(), "state": state, "unix": time.time(),
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "current": self._current or None, "counts": self.counts, **extra}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, default=str))
        tmp.replace(path)

    # -- solving ------------------------------------------------------------------------------

    def _tools(self) -> list:
        if self._all_tools is None:
            from tools.registry import default_tools

            self._all_tools = default_tools(self.settings)
        return self._all_tools

    def _program_sandbox(self):
        # For the incumbent's program strategies (agent/strategies.py), made on first use.
        from tools.sandbox import Sandbox

        return Sandbox(self.settings.sandbox)

    def _solver_for(self, policy):
        if self._solvers is None:
            from agent.attempt import Solvers

            self._solvers = Solvers(self.settings, self.model, self._tools(),
                                   sandbox=self.sandbox or self._program_sandbox)
        return self._solvers.for_policy(policy)

    def _on_event(self, kind: str, data: dict[str, Any]) -> None:
        fields: dict[str, Any] = {"item": self._current.get("item")}
        if kind == "thought":
            fields["chars"] = len(data.get("text", ""))
        elif kind == "action":
            fields.update(action=data.get("action"), input=str(data.get("input", ""))[:200])
        elif kind == "observation":
            fields.update(tool=data.get("tool"), ok=data.get("ok"), content=str(data.get("content", ""))[:200])
        else:
            fields.update({k: str(v)[:200] for k, v in data.items()})
        self.log(f"step_{kind}", **fields)
        item_id = self._current.get("item")
        if item_id is not None and self.clock() - self._lease_renewed > self.lease_s / 4:
            # Keep the claim while working; other workers take it over only after we stop.
            self.store.renew_lease(item_id, self.worker_id, lease_s=self.lease_s)
            self._lease_renewed = self.clock()
        # The solver has no clock of its own: the limit is checked between steps, and a single
        # model call is bounded by the model layer's timeout.
        if self._deadline is not None and self.clock() > self._deadline and kind != "final":
            raise TaskTimeout(f"task ran past the {self.task_timeout_s:g} s limit")

    def _attempt(self, item: QueueItem, task: Task, policy) -> Episode:
        from agent.attempt import run_attempt

        # No reference: the episode waits for a person's rating (rate_episode).
        verifiable = bool(task.answer.strip()) or bool(task.tests.strip())
        return run_attempt(store=self.store, solver=self._solver_for(policy), task=task, policy=policy,
                           run_key=f"worker/q{item.id}", source="worker",
                           suite=_Verifier() if verifiable else None, sandbox=self.sandbox,
                           on_event=self._on_event)

    def process(self, item: QueueItem) -> str:
        """Solve one claimed item. Returns "done", "error" or "outage" (item kept running)."""
        task = self.store.get_task(item.task_id)
        self._current = {"item": item.id, "task": item.task_id}
        self._lease_renewed = self.clock()
        if task is None:
            _set_item(self.store, item.id, status="error", error=f"task {item.task_id!r} is missing from the store")
            self.log("task_error", item=item.id, error="task missing")
            self.counts["error"] += 1
            return "error"
        policy = incumbent(self.store)
        self.log("task_start", item=item.id, task=task.id, policy=policy.id)
        self.beat("solving")
        self._deadline = self.clock() + self.task_timeout_s if self.task_timeout_s > 0 else None
        started = self.clock()
        try:
            episode = self._attempt(item, task, policy)
        except ModelUnavailable as exc:
            self.log("model_unavailable", item=item.id, error=str(exc)[:500])
            return "outage"
        except Exception as exc:  # the verifier or the store failed on this task; go on
            message = f"{type(exc).__name__}: {exc}"[:2000]
            _set_item(self.store, item.id, status="error", error=message)
            self.log("task_error", item=item.id, task=task.id, error=message)
            self.counts["error"] += 1
            return "error"
        finally:
            self._deadline = None
        status = "error" if episode.verdict == "error" else "done"
        _set_item(self.store, item.id, status=status, episode_id=episode.id, error=episode.error if status == "error" else "")
        self.counts[status] += 1
        self.log("task_error" if status == "error" else "task_done", item=item.id, task=task.id,
                 episode=episode.id, verdict=episode.verdict, answer=episode.final_answer[:200],
                 error=episode.error[:500], tokens=episode.prompt_tokens + episode.completion_tokens,
                 seconds=round(self.clock() - started, 3))
        self.state["episodes_since_improve"] = self.state.get("episodes_since_improve", 0) + 1
        self._save_state()
        return status

    # -- improvement trigger ------------------------------------------------------------------

    def _improvement_due(self) -> str | None:
        if self.improve is None:
            return None
        if self.improve_every and self.state.get("episodes_since_improve", 0) >= self.improve_every:
            return f"every {self.improve_every} episodes"
        if self.trigger is not None:
            now = self.wall()
            last = self.state.get("last_fire")
            prev = datetime.fromisoformat(last) if last else None
            if prev is None:
                # The schedule starts counting when the worker first sees it, not in the past.
                self.state["last_fire"] = now.isoformat()
                self._save_state()
                return None
            fire = self.trigger.get_next_fire_time(prev, prev)
            if fire is not None and fire <= now:
                self.state["last_fire"] = now.isoformat()
                return "schedule"
        return None

    def maybe_improve(self) -> None:
        reason = self._improvement_due()
        if reason is None:
            return
        from agent.surfaces.schedule import LockBusy, improvement_lock

        self.beat("improving")
        try:
            with improvement_lock(self.settings, overlap="skip", what="worker"):
                self.log("improve_start", reason=reason)
                started = self.clock()
                try:
                    summary = self.improve()
                except Exception as exc:  # the loop failing must not stop the worker
                    self.log("improve_error", error=f"{type(exc).__name__}: {exc}"[:1000])
                else:
                    self.counts["improvements"] += 1
                    self.log("improve_done", seconds=round(self.clock() - started, 3),
                             stop_reason=(summary or {}).get("stop_reason", ""),
                             incumbent=(summary or {}).get("incumbent"))
        except LockBusy as busy:
            self.log("improve_skipped", reason=str(busy))
        self.state["episodes_since_improve"] = 0
        self._save_state()

    # -- main loop ----------------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, frame=None) -> None:
        if not self.stop.is_set():
            self.log("stop_requested", signal=signal.Signals(signum).name if signum else "call")
        self.stop.set()

    def run(self) -> int:
        """Process the queue until stopped. Returns the exit code (0 on a requested stop)."""
        self.settings.ensure_dirs()
        lock = _take_worker_lock(self.settings)
        restore = self._install_signals()
        try:
            resumed = requeue_interrupted(self.store, self.worker_id)
            self.log("worker_start", pid=os.getpid(), resumed=resumed, queue=queue_counts(self.store),
                     improve_every=self.improve_every, schedule=bool(self.trigger))
            self.beat("starting")
            processed = 0
            outages = 0
            while not self.stop.is_set():
                if self.max_items is not None and processed >= self.max_items:
                    self.log("max_items_reached", processed=processed)
                    break
                item = claim_next(self.store, self.worker_id, self.lease_s)
                if item is None:
                    self.maybe_improve()
                    # Drained means nothing queued and nothing in another worker's hands: an
                    # item held by a worker that died comes back when its lease runs out.
                    if self.exit_when_empty and not queue_counts(self.store)["running"]:
                        self.log("queue_empty")
                        break
                    self.beat("idle")
                    self._wait(self.poll_s)
                    continue
                result = self.process(item)
                while result == "outage" and not self.stop.is_set():
                    outages += 1
                    self.counts["outages"] += 1
                    pause = min(self.backoff_max_s, self.backoff_s * 2 ** min(outages - 1, 16))
                    self.log("backoff", item=item.id, attempt=outages, retry_in_s=pause)
                    self.beat("waiting for model", retry_in_s=pause)
                    self._wait(pause)
                    if self.stop.is_set():
                        break
                    result = self.process(item)
                if result == "outage":
                    # Stopped while the endpoint was down: the item goes back in line.
                    _set_item(self.store, item.id, status="queued")
                    break
                outages = 0
                processed += 1
                self._current = {}
                self.beat("between tasks")
                self.maybe_improve()
            self._current = {}
            self.log("worker_stop", processed=processed, counts=self.counts, queue=queue_counts(self.store))
            self.beat("stopped")
            return 0
        finally:
            restore()
            lock.release()

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore



class _Verifier:
    """Verification for queued tasks of any suite: code tasks by their tests, the rest by
    their reference answer (built-in suites verify the same way, see agent/tasks/base.py)."""

    def verify(self, task: Task, answer: str, *, sandbox=None) -> Verdict:
        if task.kind == "code":
            return verify_code(task, answer, sandbox)
        return verify_qa(task, answer)

