"""Phase 1, experience acquisition: attempt train tasks with the incumbent policy, verify, store."""

from __future__ import annotations

import random

from agent.attempt import run_attempt
from agent.loop.runtime import Runtime


def cycle_seed(run_id: str, cycle: int) -> int:
    return random.Random(f"{run_id}:{cycle}").randrange(2**31)


def pick_train_tasks(rt: Runtime, run_id: str, cycle: int, n: int):
    """A deterministic sample per (run, cycle): a resumed cycle picks the same tasks."""
    pool = rt.suite.load("train", limit=None, seed=0)
    rng = random.Random(cycle_seed(run_id, cycle))
    chosen = rng.sample(pool, min(n, len(pool)))
    if rt.settings.loop.self_propose and hasattr(rt.suite, "propose_variation"):
        # Verifiable variations of tasks solved earlier: marked self-proposed, train split only.
        solved = [t for t in chosen if rt.store.episodes(task_id=t.id, verdict="pass")]
        for parent in solved[: max(1, n // 4)]:
            variant = rt.suite.propose_variation(parent, rng)
            if variant is not None and variant.split == "train":
                chosen.append(variant)
    rt.store.upsert_tasks(chosen)
    return chosen


def acquire(rt: Runtime, *, run_id: str, cycle: int, policy) -> dict:
    solver = rt.solver(policy)
    tasks = pick_train_tasks(rt, run_id, cycle, rt.settings.loop.train_per_cycle)
    attempts = rt.settings.loop.attempts
    passed = total = 0
    episode_ids = []
    for i, task in enumerate(tasks):
        for k in range(attempts):
            ep = run_attempt(store=rt.store, solver=solver, suite=rt.suite, task=task, policy=policy,
                             run_key=f"{run_id}/c{cycle}/acquire/{task.id}/{k}", source="acquire",
                             cycle=cycle, sandbox=rt.sandbox, spent=rt.usage)
            episode_ids.append(ep.id)
            total += 1
            passed += ep.verdict == "pass"
            rt.log("episode", {"phase": "acquire", "task": task.id, "verdict": ep.verdict})
        rt.progress("acquire", i + 1, len(tasks))
    return {"episode_ids": episode_ids, "passed": passed, "total": total}
