"""The long-running surfaces of the CLI: `run`, `submit`, `status`, `chat`, `report`.

`register(app)` adds them to the `evolve` Typer app. `run_scheduled` (agent/surfaces/schedule.py) is
re-exported for the `improve --schedule` command. Every command turns bad input into one
`error: ...` line and exit code 2, with or without the console entry point around it.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from agent.config import ConfigError, Settings, load_settings
from agent.surfaces.schedule import run_scheduled  # noqa: F401  (re-exported for agent/cli/app.py)

out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    settings = load_settings()
    settings.ensure_dirs()
    return settings


def _store(settings: Settings):
    from memory.store import Store

    return Store(settings)


def _friendly(fn):
    """Config and input problems end in one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from agent.errors import USER_ERRORS

        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
            raise typer.Exit(2) from None

    return wrapper


def improve_job(settings: Settings, *, suite: str, cycles: int, model=None, store=None, tasks_file: Path | None = None):
    """One improvement run as a callable, for the worker and the scheduler."""

    def job() -> dict:
        from agent.loop.graph import run_improve

        return run_improve(settings, suite=suite, cycles=cycles, train=None, dev=None, tasks_file=tasks_file,
                           resume=True, model=model, store=store)

    return job


def register(app: typer.Typer) -> None:
    @app.command("submit")
    @_friendly
    def submit(
        question: Optional[str] = typer.Argument(None, help="The question to queue. Use - to read it from stdin."),
        tasks: Optional[Path] = typer.Option(None, "--tasks", help="Queue every task of a JSONL file (docs/tasks.md)."),
        answer: str = typer.Option("", help="The expected answer, if you know it; without one the "
                                            "episode waits for feedback."),
    ) -> None:
        """Queue a question (or a JSONL file of tasks) for the worker (`evolve run`)."""
        from agent.surfaces.worker import InputError, submit_file, submit_question

        if (question is None) == (tasks is None):
            raise InputError('give either a question (evolve submit "What is 17*24?") or --tasks FILE.jsonl')
        store = _store(_settings())
        if tasks is not None:
            items = submit_file(store, tasks)
            out.print(f"queued {len(items)} task(s) from {tasks} (items {items[0].id}..{items[-1].id})")
        else:
            text = sys.stdin.read() if question == "-" else question
            item = submit_question(store, text, answer=answer)
            out.print(f"queued item {item.id} (task {item.task_id})", markup=False)

    @app.command("run")
    @_friendly
    def run(
        improve_every: int = typer.Option(0, help="Run an improvement cycle after every N episodes (0: never)."),
        schedule: Optional[str] = typer.Option(None, help='Also run one on a cron schedule, e.g. "0 3 * * *".'),
        suite: Optional[str] = typer.Option(None, help="Suite the improvement cycles use (default: loop.suite)."),
        cycles: int = typer.Option(1, help="Cycles per improvement run."),
        task_timeout: float = typer.Option(600.0, help="Seconds one task may take (checked between steps)."),
        poll: float = typer.Option(2.0, help="Seconds between queue checks when it is empty."),
        drain: bool = typer.Option(False, help="Exit once the queue is empty instead of waiting for more."),
        quiet: bool = typer.Option(False, help="Do not echo the JSON log lines to stdout."),
    ) -> None:
        """The long-running worker: solve queued tasks, store episodes, improve by rule.

        SIGTERM or Ctrl-C finishes the current task and exits 0; a restart resumes. Logs go to
        <home>/logs/worker.jsonl, the heartbeat to <home>/worker/heartbeat.json."""
        from agent.model.llm import make_model
        from agent.surfaces.worker import JsonLog, Worker, log_path

        from agent.surfaces.schedule import parse_cron

        if schedule:
            parse_cron(schedule)  # a typo fails before the model is loaded, not after
        settings = _settings()
        store = _store(settings)
        model = make_model(settings)
        job = None
        if improve_every or schedule:
            job = improve_job(settings, suite=suite or settings.loop.suite, cycles=cycles, model=model, store=store)
        log = JsonLog(log_path(settings), echo=None if quiet else (lambda line: print(line, flush=True)))
        worker = Worker(settings, store, model, improve=job, improve_every=improve_every, schedule=schedule,
                        task_timeout_s=task_timeout, poll_s=poll, exit_when_empty=drain, log=log)
        raise typer.Exit(worker.run())

    @app.command("status")
    @_friendly
    def status_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
        """The queue, the worker's heartbeat, the incumbent policy, the last cycles and errors."""
        from agent.surfaces.worker import status

        settings = _settings()
        data = status(_store(settings), settings)
        if as_json:
            print(json.dumps(data, indent=2, default=str))
            return
        _print_status(data)

    @app.command("chat")
    @_friendly
    def chat() -> None:
        """An interactive session with the current policy. /help lists the commands."""
        from agent.surfaces.chat import ChatSession, repl
        from agent.model.llm import make_model
        from tools.registry import default_tools

        settings = _settings()
        store = _store(settings)
        with err.status("loading the model"):
            model = make_model(settings)
        session = ChatSession(settings, store, model, default_tools(settings), console=out)
        raise typer.Exit(repl(session))

    @app.command("report")
    @_friendly
    def report(
        output: Path = typer.Option(Path("evolve-report.html"), "--out", "-o", help="Where to write the HTML file."),
    ) -> None:
        """Write one self-contained HTML report: accuracy per cycle, promotions, costs, memory."""
        from agent.surfaces.report import write_report

        settings = _settings()
        path = write_report(_store(settings), output)
        out.print(f"wrote {path} ({path.stat().st_size:,} bytes); open it in a browser", markup=False)


def _print_status(data: dict) -> None:
    q = data["queue"]
    worker = data["worker"]
    out.print(f"[bold]home[/bold] {data['home']}")
    beat = f" (pid {worker.get('pid')}, last beat {worker.get('at')})" if worker.get("pid") else ""
    out.print(f"[bold]worker[/bold] {worker['state']}{beat}")
    if worker.get("current"):
        out.print(f"  working on {worker['current']}")
    out.print(f"[bold]queue[/bold] {q['queued']} queued · {q['running']} running · {q['done']} done · "
              f"{q['error']} error · {data['pending_feedback']} awaiting feedback")
    inc = data["incumbent"]
    if inc:
        out.print(f"[bold]incumbent[/bold] {inc['id']} (v{inc['version']}, {inc['insights']} insights, "
                  f"exemplars_k={inc['exemplars_k']}, tools {', '.join(inc['tools'])})")
    else:
        out.print("[bold]incumbent[/bold] none yet (created on the first run)")
    if data["cycles"]:
        t = Table("cycle", "run", "status", "stop reason", "tokens", "started", title="last cycles")
        for c in data["cycles"]:
            t.add_row(str(c["number"]), c["run"], c["status"], c["stop_reason"], str(c["tokens"]), str(c["started"]))
        out.print(t)
    if data["promotions"]:
        t = Table("cycle", "decision", "candidate", "delta", "95% CI", title="last decisions")
        for p in data["promotions"]:
            t.add_row(str(p["cycle"]), p["decision"], p["candidate"], f"{p['delta']:+.3f}",
                      f"[{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}]")
        out.print(t)
    if data["errors"]:
        out.print("[bold]recent errors[/bold]")
        for e in data["errors"]:
            where = f"item {e['item']}" if "item" in e else f"episode {e['episode']}"
            out.print(f"  {where} {e['task']}: {e['error']}", markup=False)
