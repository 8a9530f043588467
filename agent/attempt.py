"""One attempt at one task: build the context, solve, verify, store the episode.

Idempotent by `run_key`: a resumed run that reaches the same attempt gets the stored episode
back instead of solving again, so a kill never duplicates an episode.
"""

from __future__ import annotations

import time
from typing import Any

from agent.errors import ModelUnavailable
from agent.policy import PolicySpec
from agent.solver import Context, Solver
from memory.models import Episode, Policy, Task


def exemplar_text(question: str, trajectory: list[dict[str, Any]], answer: str) -> str:
    """A verified episode as a compact worked example: the reasoning, then the answer."""
    steps = []
    # With several samples, only the voted one is the worked example.
    chosen = next((item["chosen"] for item in trajectory if item["type"] == "vote"), None)
    for item in trajectory:
        if chosen is not None and item.get("sample", chosen) != chosen:
            continue
        if item["type"] == "thought":
            steps.append(item["text"].strip())
        elif item["type"] == "action" and item["action"] != "final_answer":
            steps.append(f"[{item['action']}] {item['input']}")
        elif item["type"] in ("program", "code") and item.get("code"):
            # A program-of-thought step: the program is the worked solution.
            steps.append(item["code"].strip())
        elif item["type"] == "observation":
            steps.append(f"[result] {item['content'][:200]}")
        elif item["type"] == "action" and item.get("thought"):
            steps.append(item["thought"].strip())
    body = "\n".join(s for s in steps if s)
    return f"Question: {question}\nSolution: {body}\nThe answer is {answer}."


def build_context(store, spec: PolicySpec, question: str, *, exclude_task_ids=()) -> Context:
    ctx = Context(insights=list(spec.insights))
    if store is None:
        return ctx
    for kind, k, shown in (("exemplar", spec.exemplars_k, ctx.exemplars), ("skill", spec.skills_k, ctx.skills)):
        if k <= 0:
            continue
        # Over-fetch, then keep what existed when the policy was made (its memory snapshot).
        found = store.retrieve(kind, question, k * 3 if spec.memory_snapshot else k,
                               exclude_task_ids=exclude_task_ids)
        for exp in [e for e in found if not spec.memory_snapshot or e.id <= spec.memory_snapshot][:k]:
            shown.append(exp.content)
            ctx.experience_ids.append(exp.id)
    ctx.experience_ids.extend(i for i in spec.insight_ids if i not in ctx.experience_ids)
    return ctx


def run_attempt(*, store, solver: Solver, suite, task: Task, policy: Policy, run_key: str,
                source: str, cycle: int | None = None, sandbox=None) -> Episode:
    existing = store.episode_by_key(run_key)
    if existing is not None:
        return existing
    spec = PolicySpec.model_validate(policy.spec)
    # A task's own stored exemplar must never answer it (it would be a leaked reference).
    ctx = build_context(store, spec, task.question, exclude_task_ids=[task.id])
    started = time.perf_counter()
    episode = Episode(run_key=run_key, task_id=task.id, split=task.split, policy_id=policy.id,
                      model_fingerprint=solver.model.fingerprint, cycle=cycle, source=source,
                      shown_experience_ids=ctx.experience_ids)
    try:
        result = solver.solve(task.question, spec, ctx, kind=task.kind, entry_point=task.entry_point)
    except ModelUnavailable:
        raise  # the caller keeps its place and retries later; nothing is recorded as a failure
    except Exception as exc:  # a crash in one task is recorded, the run goes on
        episode.verdict = "error"
        episode.error = f"{type(exc).__name__}: {exc}"[:2000]
        episode.latency_s = time.perf_counter() - started
        return store.add_episode(episode)
    verdict = suite.verify(task, result.final_answer, sandbox=sandbox)
    episode.trajectory = result.trajectory
    episode.final_answer = result.final_answer
    episode.reward = verdict.reward
    episode.verdict = "pass" if verdict.correct else "fail"
    episode.feedback = verdict.detail[:2000]
    episode.error = result.error
    episode.prompt_tokens = result.usage.prompt_tokens
    episode.completion_tokens = result.usage.completion_tokens
    episode.latency_s = time.perf_counter() - started
    stored = store.add_episode(episode)
    if ctx.experience_ids and stored.id is not None:
        store.record_usage(stored.id, ctx.experience_ids, verdict.correct)
    return stored
