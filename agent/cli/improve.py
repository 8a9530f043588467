"""`evolve improve`: self-improvement cycles, once or on a cron schedule."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer

from agent.cli.common import Bars, err, out, progress, settings


def print_summary(summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"run {summary['run_id']}" + (" (resumed)" if summary.get("resumed") else ""))
    for col in ("cycle", "train pass", "exemplars+", "insight ops", "candidate", "dev inc→cand", "Δ [95% CI]",
                "p", "decision"):
        table.add_column(col)
    for h in summary["history"]:
        ev = h.get("evaluate") or {}
        ref = h.get("refine") or {}
        acq = h.get("acquire") or {}
        ops = sum(ref.get(k, 0) for k in ("add", "agree", "edit", "remove"))
        table.add_row(
            str(h.get("cycle")), f"{acq.get('passed', 0)}/{acq.get('total', 0)}",
            str(ref.get("exemplar", 0) + ref.get("corrected", 0) + ref.get("feedback_exemplar", 0)),
            str(ops), (h.get("update") or {}).get("candidate_id", "-"),
            f"{ev['incumbent_acc']:.2f}→{ev['candidate_acc']:.2f}" if ev else "-",
            f"{ev['delta']:+.2f} [{ev['ci_low']:+.2f}, {ev['ci_high']:+.2f}]" if ev else "-",
            f"{ev['p_value']:.3f}" if ev else "-", h.get("decision", "-"))
    out.print(table)
    from agent.surfaces.explain import explain_cycle

    for h in summary["history"]:
        out.print(" ".join(explain_cycle(h)), markup=False, highlight=False)
    out.print(f"stopped: {summary['stop_reason']} · incumbent {summary['incumbent']} · "
              f"{summary['tokens']} tokens · {summary['elapsed_s']:.0f}s "
              f"({summary['model_seconds']:.0f}s in the model)", markup=False)


def schedule_line(event: str, fields: dict[str, Any], *, now: datetime | None = None) -> str:
    """One human line per scheduler event, so `--schedule` is never silent until its first fire."""
    if event == "schedule_next":
        at = datetime.fromisoformat(fields["at"])
        wait = ""
        if now is not None:
            wait = f" (in {_duration((at - now).total_seconds())})"
        return f"next run at {at:%Y-%m-%d %H:%M %Z}{wait}".replace("  ", " ")
    if event == "schedule_misfire":
        return (f"skipped the run due at {fields['fire_time']}: {fields['late_s']:.0f}s late, past the "
                f"{fields['grace_s']:.0f}s grace (the machine slept or the last run overran)")
    if event == "schedule_skip":
        return f"skipped the run due at {fields['fire_time']}: {fields['reason']}; use --overlap wait"
    if event == "schedule_wait":
        return f"the run due at {fields['fire_time']} waits: {fields['reason']}"
    if event == "schedule_run":
        return f"starting the run due at {fields['fire_time']}"
    if event == "schedule_failed":
        return f"the run due at {fields['fire_time']} failed: {fields['error']}"
    if event == "schedule_done":
        return f"run done in {fields['seconds']:.0f}s: {fields.get('stop_reason', '')}"
    return f"{event} {fields}"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def register(root: typer.Typer) -> None:
    @root.command()
    def improve(
        suite: str = typer.Option(None, help="gsm8k, arith or code (default: settings' loop.suite)."),
        tasks: Optional[Path] = typer.Option(None, "--tasks", help="A user task file (JSONL); see docs/tasks.md."),
        cycles: int = typer.Option(None, help="Improvement cycles to run."),
        train: int = typer.Option(None, help="Train tasks attempted per cycle."),
        dev: int = typer.Option(None, help="Dev tasks the promotion gate evaluates on."),
        resume: bool = typer.Option(False, "--resume", help="Finish the last interrupted run."),
        schedule: str = typer.Option(None, "--schedule", help='Run on a cron schedule, e.g. "0 3 * * *".'),
        overlap: str = typer.Option("skip", help="When a scheduled run is due while one runs: skip or wait."),
    ) -> None:
        """Run self-improvement cycles: acquire, refine, update, evaluate, promote or reject."""
        from agent.loop.graph import run_improve
        from agent.surfaces.improve import improve_job
        from agent.surfaces.schedule import LockBusy, improvement_lock, parse_cron, run_scheduled

        if schedule:
            parse_cron(schedule)  # a typo fails at once, not at the first fire
        s = settings()

        if schedule:
            def scheduled() -> dict:
                with progress() as bars:
                    summary = improve_job(s, suite=suite, cycles=cycles, train=train, dev=dev, tasks_file=tasks,
                                          progress=Bars(bars))()
                print_summary(summary)
                return summary

            from datetime import timezone

            def say(event: str, fields: dict[str, Any]) -> None:
                err.print(schedule_line(event, fields, now=datetime.now(timezone.utc)), markup=False,
                          highlight=False)

            run_scheduled(s, schedule, scheduled, overlap=overlap, log=say)  # takes the lock per run
            return
        try:
            # Shared with the worker and scheduled runs: two improvement runs never overlap.
            with improvement_lock(s, overlap=overlap, what="evolve improve",
                                  on_wait=lambda h: err.print("waiting for the running improvement to finish")):
                with progress() as bars:
                    summary = run_improve(s, suite=suite, cycles=cycles, train=train, dev=dev,
                                          tasks_file=tasks, resume=resume, progress=Bars(bars))
                print_summary(summary)
        except LockBusy as exc:
            err.print(f"error: skipped: {exc}; use --overlap wait", markup=False, highlight=False)
            raise typer.Exit(3)
