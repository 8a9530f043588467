"""Phase 1, experience acquisition: attempt train tasks with the incumbent policy, verify, store.

With fine-tuning on, acquisition also gathers what the in-weight update learns from: extra
sampled attempts per train task (several distinct verified solutions; duplicates by normalised
text are dropped when the training rows are built, agent/model/adapters.py), and a STaR
rationalisation of each train task none of whose attempts passed. Both are marked in the
episode's source ("acquire-sample", "rationalised") and neither is read by refine, which learns
from the incumbent's own greedy attempts. Only train tasks reach here (pick_train_tasks).
"""

from __future__ import annotations

import random

from agent.attempt import run_attempt
from agent.loop.runtime import Runtime
from agent.model.adapters import RATIONALISED_SOURCE, SAMPLED_SOURCE, is_train_only, rationalised_episode


def cycle_seed(run_id: str, cycle: int) -> int:
    return random.Random(f"{run_id}:{cycle}").randrange(2**31)


def pick_train_tasks(rt: Runtime, run_id: str, cycle: int, n: int):
    """A deterministic sample per (run, cycle): a resumed cycle picks the same tasks."""
    pool = rt.suite.load("train", limit=None, seed=0)
    rng = random.Random(cycle_seed(run_id, cycle))
    chosen = rng.sample(pool, min(n, len(pool)))
    if rt.settings.loop.self_propose and hasattr(rt.suite, "propose_variation"):
        # Verifiable variations of tasks solved earlier: marked self-proposed, train split only.
        # A rationalised episode passed only because the reference was in its request: the
        # model has not solved that task, so it is no parent for a variation.
        solved = [t for t in chosen if any(ep.source != RATIONALISED_SOURCE for ep in
                                           rt.store.episodes(task_id=t.id, verdict="pass"))]
        for parent in solved[: max(1, n // 4)]:
            variant = rt.suite.propose_variation(parent, rng)
            if variant is not None and variant.split == "train":
                chosen.append(variant)
    rt.store.upsert_tasks(chosen)
    return chosen


def sampling_policy(policy, temperature: float):
    """The incumbent at a sampling temperature, under the incumbent's id: the episodes are its
    attempts (their source says sampled), not a new policy's."""
    return type(policy).model_validate({**policy.model_dump(), "spec": {**policy.spec, "temperature": temperature}})


def acquire(rt: Runtime, *, run_id: str, cycle: int, policy) -> dict:
    solver = rt.solver(policy)
    loop = rt.settings.loop
    tasks = pick_train_tasks(rt, run_id, cycle, loop.train_per_cycle)
    extra = loop.finetune_samples if loop.finetune != "off" else 0
    sampler = sampling_policy(policy, loop.finetune_temperature) if extra else None
    passed = total = sampled = sampled_passed = rationalised = 0
    episode_ids = []
    for i, task in enumerate(tasks):
        solved = False
        for k in range(loop.attempts):
            ep = run_attempt(store=rt.store, solver=solver, suite=rt.suite, task=task, policy=policy,
                             run_key=f"{run_id}/c{cycle}/acquire/{task.id}/{k}", source="acquire",
                             cycle=cycle, sandbox=rt.sandbox, spent=rt.usage)
            episode_ids.append(ep.id)
            total += 1
            passed += ep.verdict == "pass"
            solved |= ep.verdict == "pass"
            rt.log("episode", {"phase": "acquire", "task": task.id, "verdict": ep.verdict})
        # Held-out guard at the point of use as well: a train-split row with a held-out lineage
        # (a variation of a dev task) must not be sampled or rationalised into training data.
        trainable = extra and is_train_only(rt.store, task)
        for k in range(extra if trainable else 0):
            ep = run_attempt(store=rt.store, solver=solver, suite=rt.suite, task=task, policy=sampler,
                             run_key=f"{run_id}/c{cycle}/acquire-sample/{task.id}/{k}", source=SAMPLED_SOURCE,
                             cycle=cycle, sandbox=rt.sandbox, spent=rt.usage)
            sampled += 1
            sampled_passed += ep.verdict == "pass"
            solved |= ep.verdict == "pass"
        if trainable and not solved and loop.finetune_rationalise:
            ep = rationalised_episode(solver.model, rt.suite, rt.store, task, policy, rt.tools,
                                      run_key=f"{run_id}/c{cycle}/rationalise/{task.id}", cycle=cycle)
            rationalised += ep is not None
        rt.progress("acquire", i + 1, len(tasks))
    out = {"episode_ids": episode_ids, "passed": passed, "total": total}
    if extra:
        out.update(sampled=sampled, sampled_passed=sampled_passed, rationalised=rationalised)
    return out
