"""Runs: improvement cycles, evaluation runs and their per-task results, and the counts the
reports and `evolve memory stats` show.

Evaluation results are keyed by (run, task, seed), so a resumed evaluation repeats nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from memory.base import StoreBase
from memory.migrations import current_version
from memory.models import Cycle, Episode, EvalResult, EvalRun, Experience, ExperienceUsage, Policy, Pointer, Task


class RunRecords(StoreBase):
    # -- cycles ---------------------------------------------------------------------------

    def cycles(self, *, run_id: str | None = None, before: int | None = None, newest_first: bool = False,
               limit: int | None = None) -> list[Cycle]:
        """Cycle rows, optionally of one run and numbered below `before`."""
        with self.session(read_only=True) as s:
            q = select(Cycle)
            if run_id is not None:
                q = q.where(Cycle.run_id == run_id)
            if before is not None:
                q = q.where(Cycle.number < before)
            q = q.order_by(col(Cycle.id).desc() if newest_first else col(Cycle.id))
            if limit is not None:
                q = q.limit(limit)
            return list(s.exec(q).all())

    def get_cycle(self, run_id: str, number: int) -> Cycle | None:
        with self.session(read_only=True) as s:
            return s.exec(select(Cycle).where(Cycle.run_id == run_id, Cycle.number == number)).first()

    # -- evaluation -----------------------------------------------------------------------

    def open_eval_run(self, run_key: str, **fields) -> tuple[EvalRun, dict[str, bool]]:
        """The EvalRun for `run_key` (created with `fields` if new) and the per-task correctness
        already recorded for it."""
        with self.session() as s:
            run = s.exec(select(EvalRun).where(EvalRun.run_key == run_key)).first()
            if run is None:
                run = EvalRun(run_key=run_key, **fields)
                s.add(run)
                s.flush()
                s.refresh(run)
            done = {r.task_id: r.correct
                    for r in s.exec(select(EvalResult).where(EvalResult.eval_run_id == run.id))}
        return run, done

    def eval_rows(self, run_id: int) -> dict[str, tuple[bool, int, float]]:
        """Per task of an EvalRun: (correct, tokens, seconds), the cost the gate weighs."""
        with self.session(read_only=True) as s:
            return {r.task_id: (r.correct, r.tokens, r.latency_s)
                    for r in s.exec(select(EvalResult).where(EvalResult.eval_run_id == run_id))}

    def finish_eval_run(self, run_id: int, accuracy: float, n: int | None = None) -> EvalRun:
        """Record the accuracy over the `n` items evaluated (fewer than planned after a futility
        stop: the accuracy and its interval are over those, not over the plan)."""
        with self.session() as s:
            run = s.get(EvalRun, run_id)
            run.accuracy = accuracy
            if n is not None:
                run.n = n
            s.add(run)
            s.flush()
            s.refresh(run)
            return run

    def eval_runs(self) -> list[EvalRun]:
        with self.session(read_only=True) as s:
            return list(s.exec(select(EvalRun).order_by(col(EvalRun.id))).all())

    # -- reporting ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts for `evolve memory stats`: plain data, ready to print or dump as JSON."""
        with self.session(read_only=True) as s:
            def grouped(*cols, where=None):
                q = select(*cols, func.count()).group_by(*cols)
                if where is not None:
                    q = q.where(where)
                return {"/".join(str(v) for v in row[:-1]): int(row[-1]) for row in s.exec(q).all()}

            with self.engine.connect() as conn:
                version = current_version(conn)
            out: dict[str, Any] = {
                "database": self.engine.url.render_as_string(hide_password=True),
                "schema_version": version,
                "tasks": grouped(Task.split),
                "episodes": grouped(Episode.split, Episode.verdict),
                "experiences_active": grouped(Experience.kind, Experience.split, Experience.trust,
                                              where=Experience.active == True),  # noqa: E712
                "experiences_inactive": int(s.exec(select(func.count()).select_from(Experience)
                                                   .where(Experience.active == False)).one()),  # noqa: E712
                "usage_records": int(s.exec(select(func.count()).select_from(ExperienceUsage)).one()),
                "policies": int(s.exec(select(func.count()).select_from(Policy)).one()),
                "pointers": {p.name: p.policy_id for p in s.exec(select(Pointer)).all()},
            }
        out["index"] = self.index.counts()
        out["embedder"] = self.embedder.model_id
        return out

