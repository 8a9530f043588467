"""Phase 4, evaluation: candidate and incumbent on the same held-out dev tasks, paired.

Results are keyed by (policy, task, seed): a policy's results are computed once and reused,
so the incumbent is not re-run while it is unchanged, and a resumed run repeats nothing.
"""

from __future__ import annotations

import hashlib

from agent.attempt import run_attempt
from agent.loop.runtime import Runtime
from agent.loop.stats import compare
from memory.models import EvalResult


def dev_tasks(rt: Runtime, split: str = "dev", limit: int | None = None, seed: int = 0):
    tasks = rt.suite.load(split, limit=limit, seed=seed)
    rt.store.upsert_tasks(tasks)
    return tasks


def evaluate_policy(rt: Runtime, policy, tasks, *, split: str, seed: int = 0, cycle: int | None = None,
                    phase: str = "evaluate") -> dict[str, bool]:
    """Per-task correctness of `policy` on `tasks`, stored as an EvalRun with EvalResults."""
    ids = [t.id for t in tasks]
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
    run_key = f"eval/{policy.id}/{split}/{digest}/s{seed}"
    store = rt.store
    run, done = store.open_eval_run(run_key, policy_id=policy.id, split=split, task_ids=ids, seed=seed,
                                    cycle=cycle, n=len(ids))
    run_id = run.id
    solver = rt.solver(policy)
    for i, task in enumerate(tasks):
        if task.id not in done:
            ep = run_attempt(store=store, solver=solver, suite=rt.suite, task=task, policy=policy,
                             run_key=f"eval/{policy.id}/{task.id}/s{seed}", source="eval", cycle=cycle,
                             sandbox=rt.sandbox, spent=rt.usage)
            row = EvalResult(eval_run_id=run_id, policy_id=policy.id, task_id=task.id, seed=seed,
                             correct=ep.verdict == "pass", episode_id=ep.id,
                             tokens=ep.prompt_tokens + ep.completion_tokens, latency_s=ep.latency_s)
            store.add(row)
            done[task.id] = row.correct
            rt.log("episode", {"phase": phase, "policy": policy.id, "task": task.id, "verdict": ep.verdict})
        rt.progress(f"{phase} {policy.id}", i + 1, len(tasks))
    store.finish_eval_run(run_id, sum(done.values()) / len(ids) if ids else 0.0)
    return {tid: done[tid] for tid in ids}


def evaluate(rt: Runtime, *, cycle: int, incumbent, candidate, dev_ids: list[str]) -> dict:
    tasks = [rt.store.get_task(t) for t in dev_ids]
    inc = evaluate_policy(rt, incumbent, tasks, split="dev", cycle=cycle)
    cand = evaluate_policy(rt, candidate, tasks, split="dev", cycle=cycle)
    loop = rt.settings.loop
    evidence = compare([cand[t] for t in dev_ids], [inc[t] for t in dev_ids],
                       samples=loop.bootstrap_samples, seed=cycle)
    promote = evidence["delta"] > loop.min_delta and evidence["p_value"] < loop.significance
    evidence["decision"] = "promote" if promote else "reject"
    evidence["threshold"] = {"significance": loop.significance, "min_delta": loop.min_delta}
    return evidence
