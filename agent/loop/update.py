"""Phase 3, model update: a new immutable candidate policy from the incumbent plus experience.

In-context always (exemplar retrieval, selected insights, skills). In-weight when configured:
verified train episodes exported as chat fine-tuning JSONL for an OpenAI-compatible job.
"""

from __future__ import annotations

from agent.policy import PolicySpec, create_candidate, spec_of
from agent.loop.runtime import Runtime


def build_candidate_spec(rt: Runtime, incumbent) -> PolicySpec:
    spec = spec_of(incumbent)
    loop = rt.settings.loop
    store = rt.store
    has_exemplars = bool(store.experiences(kind="exemplar", split="train", trust="verified", active=True))
    has_skills = bool(store.experiences(kind="skill", split="train", trust="verified", active=True))
    insights = store.policy_insights(loop.insights_max)  # verified only: the quarantine holds
    snapshot = store.max_experience_id()
    return spec.model_copy(update={
        "exemplars_k": loop.exemplars_k if has_exemplars else spec.exemplars_k,
        "skills_k": 2 if has_skills else spec.skills_k,
        "insights": tuple(r.content for r in insights),
        "insight_ids": tuple(r.id for r in insights),
        "memory_snapshot": snapshot,
    })


def update(rt: Runtime, *, cycle: int, incumbent) -> dict:
    spec = build_candidate_spec(rt, incumbent)
    candidate = create_candidate(rt.store, incumbent, spec, note=f"cycle {cycle}")
    result = {"candidate_id": candidate.id, "changed": candidate.id != incumbent.id}
    loop = rt.settings.loop
    if loop.finetune == "off":
        return result
    path = rt.settings.home / "finetune" / f"{candidate.id}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = rt.store.export_training_data(path)
    result.update(finetune_rows=rows, finetune_file=str(path))
    if loop.finetune == "openai" and rows >= loop.finetune_min_rows:
        model_id = finetune_openai(rt, path, candidate.id)
        tuned = spec.model_copy(update={"model_id": model_id})
        candidate = create_candidate(rt.store, incumbent, tuned, note=f"cycle {cycle}, fine-tuned")
        result.update(candidate_id=candidate.id, changed=True, finetuned_model=model_id)
    if loop.finetune == "local":
        from agent.model.adapters import finetune_local

        ref = finetune_local(rt.settings, rt.store)
        if ref:
            candidate = create_candidate(rt.store, incumbent, spec.model_copy(update={"adapter": ref}),
                                         note=f"cycle {cycle}, LoRA {ref[7:19]}")
            result.update(candidate_id=candidate.id, changed=True, adapter=ref)
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
