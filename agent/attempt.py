"""One attempt at one task: build the context, solve, verify (or leave pending for a rating),
store the episode. The loop's acquire and evaluate phases, the worker and chat all come here,
and `Solvers` is the one place a solver is built from a policy.

Idempotent by `run_key`: a resumed run that reaches the same attempt gets the stored episode
back instead of solving again, so a kill never duplicates an episode.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from agent.errors import ModelUnavailable
from agent.model.llm import ChatModel, Usage
from agent.policy import PolicySpec
from agent.solver import Context, Event, SolveResult, Solver
from memory.models import Episode, Policy, Task
from memory.trajectory import Step, Trajectory


def exemplar_text(question: str, trajectory: list[dict[str, Any]] | Trajectory, answer: str) -> str:
    """A verified episode as a compact worked example: the reasoning, then the answer."""
    if not isinstance(trajectory, Trajectory):
        trajectory = Trajectory.from_stored(trajectory)
    return trajectory.exemplar_text(question, answer)


class Solvers:
    """Solvers by (model id, tools, step budget), built once and shared: a solver holds no
    per-solve state, so one instance serves every task, surface and policy that agree on these."""

    def __init__(self, settings, model: ChatModel, tools: Sequence, *, sandbox=None) -> None:
        self.settings = settings
        self.model = model
        self.tools = list(tools)
        # Runs the program strategies' code and checks code answers: a sandbox, or a function
        # making one on first use (a policy that runs no program never needs bubblewrap).
        self.sandbox = sandbox
        self._built: dict[tuple, Solver] = {}

    def model_for(self, model_id: str = "", adapter: str = "") -> ChatModel:
        if (not model_id or model_id == getattr(self.model, "name", "")) and not adapter:
            return self.model
        key = ("model", model_id, adapter)
        if key not in self._built:
            # A fine-tuned policy runs on its own model id at the same endpoint, or on the
            # embedded model with its LoRA adapter applied (agent/model/adapters.py).
            from agent.model.llm import make_model

            self._built[key] = make_model(self.settings, model_id=model_id, adapter=adapter)
        return self._built[key]

    def for_policy(self, policy: Policy | PolicySpec) -> Solver:
        spec = policy if isinstance(policy, PolicySpec) else PolicySpec.model_validate(policy.spec)
        key = (spec.max_steps, tuple(spec.tools), spec.model_id, spec.adapter)
        if key not in self._built:
            chosen = [t for t in self.tools if t.name in spec.tools]
            self._built[key] = Solver(self.model_for(spec.model_id, spec.adapter), chosen, max_steps=spec.max_steps,
                                      max_tokens_per_task=self.settings.loop.max_tokens_per_task,
                                      sandbox=self.sandbox)
        return self._built[key]


def build_context(store, spec: PolicySpec, question: str, *, exclude_task_ids=(), trial: bool = False) -> Context:
    """The policy's insights and retrieved experience. `trial` (train attempts only) also shows
    quarantined insights, so a pass there can confirm them (memory's `record_usage`)."""
    ctx = Context(insights=list(spec.insights))
    if store is None:
        return ctx
    for kind, k, shown in (("exemplar", spec.exemplars_k, ctx.exemplars), ("skill", spec.skills_k, ctx.skills)):
        if k <= 0:
            continue
        # Only what existed when the policy was made (its memory snapshot); the store widens
        # its search until it has k such rows.
        for exp in store.retrieve(kind, question, k, exclude_task_ids=exclude_task_ids,
                                  max_id=spec.memory_snapshot or None):
            shown.append(exp.content)
            ctx.experience_ids.append(exp.id)
    ctx.experience_ids.extend(i for i in spec.insight_ids if i not in ctx.experience_ids)
    if trial:
        for exp in store.trial_insights():
            if exp.content not in ctx.insights:
                ctx.insights.append(exp.content)
                ctx.experience_ids.append(exp.id)
    return ctx


Finish = Callable[[SolveResult], list[Step]]


def run_attempt(*, store, solver: Solver, task: Task, policy: Policy, run_key: str, source: str,
                suite=None, cycle: int | None = None, sandbox=None, question: str | None = None,
                on_event: Event | None = None, finish: Finish | None = None,
                spent: Usage | None = None) -> Episode:
    """Solve `task` with `policy` and store the episode.

    `suite` verifies the answer; without one the episode stays "pending" until a person rates it
    (and the experiences it showed are credited only then). `question` replaces the task's text
    in the prompt (chat adds the conversation so far); `finish` runs after a successful solve and
    returns steps to append (chat's reply); `spent` collects the model usage of this attempt.
    """
    existing = store.episode_by_key(run_key)
    if existing is not None:
        return existing
    spec = PolicySpec.model_validate(policy.spec)
    asked = question or task.question
    # A task's own stored exemplar must never answer it (it would be a leaked reference).
    ctx = build_context(store, spec, asked, exclude_task_ids=[task.id],
                        trial=source == "acquire" and task.split == "train")
    started = time.perf_counter()
    episode = Episode(run_key=run_key, task_id=task.id, split=task.split, policy_id=policy.id,
                      model_fingerprint=solver.model.fingerprint, cycle=cycle, source=source,
                      shown_experience_ids=ctx.experience_ids)
    try:
        result = solver.solve(asked, spec, ctx, kind=task.kind, entry_point=task.entry_point,
                              on_event=on_event)
    except ModelUnavailable:
        raise  # the caller keeps its place and retries later; nothing is recorded as a failure
    except Exception as exc:  # a crash in one task is recorded, the run goes on
        episode.verdict = "error"
        episode.error = f"{type(exc).__name__}: {exc}"[:2000]
        episode.latency_s = time.perf_counter() - started
        return store.add_episode(episode)
    if spent is not None:
        spent.add(result.usage)
    trajectory = result.trajectory
    if finish is not None:
        trajectory = Trajectory(steps=[*trajectory.steps, *finish(result)])
    episode.trajectory = trajectory.to_stored()
    episode.final_answer = result.final_answer
    episode.error = result.error
    episode.prompt_tokens = result.usage.prompt_tokens
    episode.completion_tokens = result.usage.completion_tokens
    verdict = suite.verify(task, result.final_answer, sandbox=sandbox) if suite is not None else None
    if verdict is not None:
        episode.reward = verdict.reward
        episode.verdict = "pass" if verdict.correct else "fail"
        episode.feedback = verdict.detail[:2000]
    else:
        episode.verdict = "pending"
    episode.latency_s = time.perf_counter() - started
    stored = store.add_episode(episode)
    if verdict is not None and ctx.experience_ids and stored.id is not None:
        store.record_usage(stored.id, ctx.experience_ids, verdict.correct)
    return stored
