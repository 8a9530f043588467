"""The improvement trigger the worker and the scheduler share.

Each trigger starts a NEW run with the suite, cycles and budgets the user gave; only a run that
was interrupted (killed before its end) is resumed instead, so a finished run is never reported
again as if it were new work.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.config import Settings


def improve_job(settings: Settings, *, suite: str | None = None, cycles: int | None = None,
                train: int | None = None, dev: int | None = None, tasks_file: Path | None = None,
                model=None, store=None, sandbox=None, progress=None) -> Callable[[], dict]:
    """One improvement run as a callable. The summary it returns says whether it resumed."""

    def job() -> dict:
        from agent.loop.graph import interrupted_run, run_improve

        pending = interrupted_run(settings)
        if pending is not None:
            summary = run_improve(settings, resume=True, model=model, store=store, sandbox=sandbox,
                                  progress=progress)
        else:
            summary = run_improve(settings, suite=suite, cycles=cycles, train=train, dev=dev,
                                  tasks_file=tasks_file, model=model, store=store, sandbox=sandbox,
                                  progress=progress)
        return {**summary, "resumed": pending is not None}

    return job
