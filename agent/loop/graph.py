"""The self-evolution loop as a LangGraph state machine with a SQLite checkpointer.

    start -> acquire -> refine -> update -> evaluate -> decide -> (acquire | END)

Durability is "sync": each completed node is checkpointed before the next starts. Killed at
any point, `run_improve(resume=True)` continues from the last completed node; nodes write
with idempotency keys (run, cycle, task), so a repeated node duplicates nothing.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from agent.loop import acquire as acquire_phase
from agent.loop import evaluate as evaluate_phase
from agent.loop import refine as refine_phase
from agent.loop import update as update_phase
from agent.config import ConfigError, Settings
from agent.model.llm import ChatModel
from agent.policy import INCUMBENT, ensure_initial, promote
from agent.loop.runtime import Runtime, make_runtime
from memory.models import Cycle, Promotion, utcnow


class LoopState(TypedDict, total=False):
    run_id: str
    cycle: int
    max_cycles: int
    dev_ids: list[str]
    incumbent_id: str
    candidate_id: str
    no_improve: int
    tokens: int
    model_seconds: float
    elapsed_s: float
    phase_seconds: dict[str, float]
    history: list[dict[str, Any]]
    stop_reason: str


class Loop:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # Each node returns only the keys it changes.
    def _timed(self, state: LoopState, phase: str, fn):
        started = self.rt.clock()
        with self.rt.counting() as used:  # what this phase's model calls report, summed
            out = fn()
        spent = self.rt.clock() - started
        seconds = dict(state.get("phase_seconds", {}))
        seconds[phase] = seconds.get(phase, 0.0) + spent
        return out, {
            "phase_seconds": seconds,
            "tokens": state.get("tokens", 0) + used.total_tokens,
            "model_seconds": state.get("model_seconds", 0.0) + used.latency_s,
            "elapsed_s": state.get("elapsed_s", 0.0) + spent,
        }

    def start(self, state: LoopState) -> LoopState:
        store = self.rt.store
        incumbent = ensure_initial(store)
        dev = evaluate_phase.dev_tasks(self.rt, "dev", limit=self.rt.settings.loop.dev_size)
        if not dev:
            raise ConfigError(f"suite {self.rt.suite.name!r} has no dev tasks to evaluate on; "
                              f"use a suite or task file with a dev split")
        return {"cycle": 1, "dev_ids": [t.id for t in dev], "incumbent_id": incumbent.id,
                "no_improve": 0, "history": [], "phase_seconds": {}}

    def acquire(self, state: LoopState) -> LoopState:
        policy = self.rt.store.get_policy(state["incumbent_id"])
        out, meta = self._timed(state, "acquire", lambda: acquire_phase.acquire(
            self.rt, run_id=state["run_id"], cycle=state["cycle"], policy=policy))
        self.rt.log("phase", {"phase": "acquire", "cycle": state["cycle"], "passed": out["passed"],
                              "total": out["total"]})
        return {**meta, "history": [*state["history"], {"cycle": state["cycle"], "acquire": {
            "passed": out["passed"], "total": out["total"]}}]}

    def refine(self, state: LoopState) -> LoopState:
        out, meta = self._timed(state, "refine", lambda: refine_phase.refine(
            self.rt, run_id=state["run_id"], cycle=state["cycle"], policy_id=state["incumbent_id"]))
        self.rt.log("phase", {"phase": "refine", "cycle": state["cycle"], **out})
        return {**meta, "history": _amend(state["history"], refine=out)}

    def update(self, state: LoopState) -> LoopState:
        incumbent = self.rt.store.get_policy(state["incumbent_id"])
        out, meta = self._timed(state, "update", lambda: update_phase.update(
            self.rt, cycle=state["cycle"], incumbent=incumbent))
        self.rt.log("phase", {"phase": "update", "cycle": state["cycle"], **out})
        return {**meta, "candidate_id": out["candidate_id"], "history": _amend(state["history"], update=out)}

    def evaluate(self, state: LoopState) -> LoopState:
        store = self.rt.store
        incumbent = store.get_policy(state["incumbent_id"])
        candidate = store.get_policy(state["candidate_id"])
        evidence, meta = self._timed(state, "evaluate", lambda: evaluate_phase.evaluate(
            self.rt, cycle=state["cycle"], incumbent=incumbent, candidate=candidate,
            dev_ids=state["dev_ids"]))
        self.rt.log("phase", {"phase": "evaluate", "cycle": state["cycle"], **evidence})
        return {**meta, "history": _amend(state["history"], evaluate=evidence)}

    def decide(self, state: LoopState) -> LoopState:
        store = self.rt.store
        cycle = state["cycle"]
        last = state["history"][-1]
        evidence = last.get("evaluate") or {"decision": "reject", "reason": "candidate unchanged"}
        candidate = store.get_policy(state["candidate_id"])
        # Idempotent on resume: a decision already recorded for this run's cycle is not repeated.
        decided = [p for p in _promotions(store, cycle) if p.evidence.get("run_id") == state["run_id"]]
        if not decided:
            promote(store, candidate, cycle=cycle, evidence={**evidence, "run_id": state["run_id"]},
                    decision=evidence["decision"])
        promoted = evidence["decision"] == "promote"
        incumbent_id = store.get_pointer(INCUMBENT)
        no_improve = 0 if promoted else state["no_improve"] + 1
        self._record_cycle(state, cycle)
        update: LoopState = {"incumbent_id": incumbent_id, "no_improve": no_improve, "cycle": cycle + 1,
                             "history": _amend(state["history"], decision=evidence["decision"],
                                               incumbent=incumbent_id)}
        reason = self._stop_reason({**state, **update})
        if reason:
            update["stop_reason"] = reason
        self.rt.log("decision", {"cycle": cycle, "decision": evidence["decision"], "incumbent": incumbent_id,
                                 "stop": reason})
        return update

    def skip_to_decide(self, state: LoopState) -> str:
        return "evaluate" if state["candidate_id"] != state["incumbent_id"] else "decide"

    def route(self, state: LoopState) -> str:
        return END if state.get("stop_reason") else "acquire"

    def _stop_reason(self, state: LoopState) -> str:
        loop = self.rt.settings.loop
        if state["cycle"] > state["max_cycles"]:
            return f"completed {state['max_cycles']} cycle(s)"
        if loop.patience and state["no_improve"] >= loop.patience:
            return f"no promotion in {state['no_improve']} cycle(s) (patience {loop.patience})"
        if loop.token_budget and state["tokens"] >= loop.token_budget:
            return f"token budget spent ({state['tokens']} >= {loop.token_budget})"
        if loop.wall_time_s and state["elapsed_s"] >= loop.wall_time_s:
            return f"wall-time budget spent ({state['elapsed_s']:.0f}s >= {loop.wall_time_s:.0f}s)"
        return ""

    def _record_cycle(self, state: LoopState, cycle: int) -> None:
        """One row per cycle with that cycle's own costs (the state carries run totals)."""
        store = self.rt.store
        if store.get_cycle(state["run_id"], cycle) is not None:
            return  # recorded before a kill: a resumed decide does not add it twice
        earlier = store.cycles(run_id=state["run_id"], before=cycle)
        seconds = {k: v - sum(c.phase_seconds.get(k, 0.0) for c in earlier)
                   for k, v in state.get("phase_seconds", {}).items()}
        store.add(Cycle(run_id=state["run_id"], number=cycle, status="done", phase_seconds=seconds,
                        tokens=state.get("tokens", 0) - sum(c.tokens for c in earlier),
                        model_seconds=state.get("model_seconds", 0.0) - sum(c.model_seconds for c in earlier),
                        ended_at=utcnow()))

    def compile(self, checkpointer):
        g = StateGraph(LoopState)
        for name in ("start", "acquire", "refine", "update", "evaluate", "decide"):
            g.add_node(name, getattr(self, name))
        g.add_edge(START, "start")
        g.add_edge("start", "acquire")
        g.add_edge("acquire", "refine")
        g.add_edge("refine", "update")
        g.add_conditional_edges("update", self.skip_to_decide, {"evaluate": "evaluate", "decide": "decide"})
        g.add_edge("evaluate", "decide")
        g.add_conditional_edges("decide", self.route, {"acquire": "acquire", END: END})
        return g.compile(checkpointer=checkpointer)


def _promotions(store, cycle: int) -> list[Promotion]:
    return store.promotions(cycle=cycle)


def _amend(history: list[dict], **fields) -> list[dict]:
    last = dict(history[-1]) if history else {}
    last.update(fields)
    return [*history[:-1], last]


def _last_run_file(settings: Settings) -> Path:
    return settings.home / "runs" / "last.json"


def run_improve(settings: Settings, *, suite: str | None = None, cycles: int | None = None,
                train: int | None = None, dev: int | None = None, tasks_file: Path | None = None,
                resume: bool = False, model: ChatModel | None = None, store=None, clock=None,
                progress=None, log=None, sandbox=None, run_id: str | None = None) -> dict:
    """Run improvement cycles; returns a summary with the stop reason and the incumbent."""
    settings.ensure_dirs()
    last_file = _last_run_file(settings)
    if resume:
        if not last_file.is_file():
            raise ConfigError("nothing to resume: no earlier `evolve improve` run in EVOLVE_HOME")
        saved = json.loads(last_file.read_text())
        suite, tasks_file = saved["suite"], Path(saved["tasks_file"]) if saved.get("tasks_file") else None
        overrides = saved["loop"]
    else:
        suite = "file" if tasks_file else (suite or settings.loop.suite)
        overrides = {k: v for k, v in {"train_per_cycle": train, "dev_size": dev}.items() if v is not None}
        overrides["cycles"] = cycles or settings.loop.cycles
    settings = settings.model_copy(update={"loop": settings.loop.model_copy(update=overrides)})
    rt = make_runtime(settings, suite=suite, tasks_file=tasks_file, model=model, store=store,
                      sandbox=sandbox, clock=clock, progress=progress, log=log)
    if resume:
        run_id = saved["run_id"]
    else:
        run_id = run_id or time.strftime("r%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        last_file.parent.mkdir(parents=True, exist_ok=True)
        last_file.write_text(json.dumps({"run_id": run_id, "suite": suite, "loop": overrides,
                                         "tasks_file": str(tasks_file) if tasks_file else None}))
    conn = sqlite3.connect(str(settings.checkpoint_path), check_same_thread=False)
    try:
        graph = Loop(rt).compile(SqliteSaver(conn))
        config = {"configurable": {"thread_id": run_id}, "recursion_limit": settings.loop.recursion_limit}
        if resume and graph.get_state(config).next == ():
            final = graph.get_state(config).values  # already finished: report it again
        else:
            first = None if resume else {"run_id": run_id, "max_cycles": overrides["cycles"], "tokens": 0,
                                         "model_seconds": 0.0, "elapsed_s": 0.0}
            final = graph.invoke(first, config, durability="sync")
    finally:
        conn.close()
    return {"run_id": run_id, "stop_reason": final.get("stop_reason", ""), "cycles": final.get("cycle", 1) - 1,
            "incumbent": final.get("incumbent_id"), "history": final.get("history", []),
            "tokens": final.get("tokens", 0), "model_seconds": final.get("model_seconds", 0.0),
            "elapsed_s": final.get("elapsed_s", 0.0), "phase_seconds": final.get("phase_seconds", {})}
