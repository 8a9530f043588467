"""Phase 3, model update: new immutable candidate policies from the incumbent plus experience.

Each candidate is one mutation by one proposer (agent/loop/proposers.py): the in-context update
(exemplar retrieval, selected insights, skills), a solving strategy, the tools offered, or an
instruction the model wrote from failed train episodes. In-weight when configured:
verified train episodes exported as chat fine-tuning JSONL for an OpenAI-compatible job.
"""

from __future__ import annotations

from agent.loop import proposers
from agent.loop.proposers import Experience, Failure
from agent.loop.runtime import Runtime
from agent.policy import PolicySpec, create_candidate, spec_of
from memory.trajectory import Trajectory


def experience_summary(rt: Runtime, *, run_id: str | None = None, cycle: int | None = None) -> Experience:
    """What the proposers may see: train-side memory, and this cycle's failed TRAIN episodes."""
    loop = rt.settings.loop
    store = rt.store
    failures = []
    if run_id is not None and cycle is not None:
        prefix = f"{run_id}/c{cycle}/acquire/"
        for ep in store.episodes(cycle=cycle, source="acquire", verdict="fail"):
            task = store.get_task(ep.task_id) if ep.run_key.startswith(prefix) else None
            if task is None or task.split != "train":
                continue  # the firewall: held-out items never reach a proposer
            attempt = Trajectory.from_stored(ep.trajectory).attempt_text()
            failures.append(Failure(question=task.question, attempt=attempt, answer=ep.final_answer or "",
                                    reference=task.meta.get("solution") or task.answer,
                                    reference_answer=task.answer))
    insights = store.policy_insights(loop.insights_max)  # verified only: the quarantine holds
    return Experience(
        has_exemplars=bool(store.experiences(kind="exemplar", split="train", trust="verified", active=True)),
        has_skills=bool(store.experiences(kind="skill", split="train", trust="verified", active=True)),
        insights=tuple((r.id, r.content) for r in insights),
        memory_snapshot=store.max_experience_id(),
        exemplars_k=loop.exemplars_k,
        tools_available=tuple(t.name for t in rt.tools),
        task_kind="code" if getattr(rt.suite, "name", "") == "code" else "numeric",
        failures=tuple(failures),
    )


def build_candidate_spec(rt: Runtime, incumbent) -> PolicySpec:
    """The single in-context candidate (the `context` proposer), or the incumbent's own spec."""
    spec = spec_of(incumbent)
    return proposers.context(spec, experience_summary(rt)) or spec


def update(rt: Runtime, *, cycle: int, incumbent, run_id: str | None = None,
           skip_ids: frozenset[str] = frozenset()) -> dict:
    """Propose `candidates_per_cycle` candidates, each one mutation of the incumbent.

    `skip_ids`: candidates already rejected against this incumbent in this run (their dev
    results would only be read back from the cache and rejected again)."""
    loop = rt.settings.loop
    spec = spec_of(incumbent)
    exp = experience_summary(rt, run_id=run_id, cycle=cycle)
    skip = frozenset(p.digest for p in (rt.store.get_policy(i) for i in skip_ids) if p is not None)
    chain = proposers.default_proposers(rt.model, spent=rt.usage, names=loop.proposers)
    proposals = proposers.propose(spec, exp, chain, k=loop.candidates_per_cycle, skip_digests=skip)
    candidates = []
    for name, cand_spec in proposals:
        policy = create_candidate(rt.store, incumbent, cand_spec, note=f"cycle {cycle}: {name}")
        candidates.append({"candidate_id": policy.id, "proposer": name})
    first = candidates[0]["candidate_id"] if candidates else incumbent.id
    result = {"candidate_id": first, "changed": first != incumbent.id, "candidates": candidates}
    if loop.finetune == "off":
        return result
    path = rt.settings.home / "finetune" / f"{first}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    from agent.model.adapters import row_renderer

    # Rows in the turns the solver sends (agent/model/rows.py), the shape the tuned model is asked in.
    rows = rt.store.export_training_data(path, render=row_renderer(rt.store, rt.tools))
    result.update(finetune_rows=rows, finetune_file=str(path))
    if loop.finetune == "openai" and rows >= loop.finetune_min_rows:
        base = spec_of(rt.store.get_policy(first))
        model_id = finetune_openai(rt, path, first)
        tuned = base.model_copy(update={"model_id": model_id})
        candidate = create_candidate(rt.store, incumbent, tuned, note=f"cycle {cycle}, fine-tuned")
        entry = {"candidate_id": candidate.id, "proposer": "finetune"}
        result.update(candidate_id=candidate.id, changed=True, finetuned_model=model_id,
                      candidates=[entry, *candidates[1:]])
    if loop.finetune == "local":
        from agent.model.adapters import finetune_local

        ref = finetune_local(rt.settings, rt.store)
        if ref:
            # The in-weight candidate: the incumbent with a LoRA adapter, one more candidate for the gate.
            candidate = create_candidate(rt.store, incumbent, spec.model_copy(update={"adapter": ref}),
                                         note=f"cycle {cycle}, LoRA {ref[7:19]}")
            entry = {"candidate_id": candidate.id, "proposer": "lora"}
            # It leads the list (the cycle's main candidate); the in-context ones follow it to the gate.
            result.update(candidate_id=candidate.id, changed=True, adapter=ref,
                          candidates=[entry, *result["candidates"]])
    return result


def finetune_openai(rt: Runtime, path, candidate_id: str) -> str:
    """Submit and wait for a fine-tuning job; the job id is kept so a resumed run re-attaches."""
    import json

    from agent.model.llm import FineTuning, OpenAIModel

    if not isinstance(rt.model, OpenAIModel):
        from agent.errors import ConfigError

        raise ConfigError("EVOLVE_LOOP__FINETUNE=openai needs EVOLVE_MODEL__BACKEND=openai (an endpoint "
                          "with a fine-tuning API); use finetune=export with the embedded model")
    marker = path.with_suffix(".job.json")
    jobs = FineTuning(rt.model)
    if marker.is_file():
        job_id = json.loads(marker.read_text())["job_id"]
    else:
        job_id = jobs.submit(path, base_model=rt.model.name, suffix=f"evolve-{candidate_id}")
        marker.write_text(json.dumps({"job_id": job_id}))
    loop = rt.settings.loop
    return jobs.wait(job_id, poll_s=loop.finetune_poll_s, timeout_s=loop.finetune_timeout_s)
