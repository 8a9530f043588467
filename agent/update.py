"""Phase 3, model update: a new immutable candidate policy from the incumbent plus experience.

In-context always (exemplar retrieval, selected insights, skills). In-weight when configured:
verified train episodes exported as chat fine-tuning JSONL for an OpenAI-compatible job.
"""

from __future__ import annotations

from agent.policy import PolicySpec, create_candidate, spec_of
from agent.refine import current_insights
from agent.runtime import Runtime


def _max_experience_id(store) -> int:
    from sqlalchemy import func
    from sqlmodel import select

    from memory.models import Experience

    with store.session() as s:
        return s.exec(select(func.max(Experience.id))).one() or 0


def build_candidate_spec(rt: Runtime, incumbent) -> PolicySpec:
    spec = spec_of(incumbent)
    loop = rt.settings.loop
    store = rt.store
    has_exemplars = bool(store.experiences(kind="exemplar", split="train", trust="verified", active=True))
    has_skills = bool(store.experiences(kind="skill", split="train", trust="verified", active=True))
    insights = current_insights(store, loop.insights_max)
    snapshot = _max_experience_id(store)
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
    if rt.settings.loop.finetune_export:
        path = rt.settings.home / "finetune" / f"{candidate.id}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        result["finetune_rows"] = rt.store.export_training_data(path)
        result["finetune_file"] = str(path)
    return result
