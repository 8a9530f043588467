"""What `evolve status` shows about the queue, the worker and the improvement loop."""

from __future__ import annotations

from typing import Any

from agent.config import Settings
from agent.policy import PolicySpec
from agent.surfaces.work_queue import queue_counts
from agent.surfaces.worker_log import heartbeat_state, read_heartbeat
from memory.models import QueueItem


def status(store, settings: Settings, *, limit: int = 5) -> dict[str, Any]:
    """What `evolve status` shows: queue, worker heartbeat, incumbent, last cycles and errors."""
    policy = store.pointed_policy("incumbent")
    cycles = store.cycles(newest_first=True, limit=limit)
    promotions = store.promotions(newest_first=True, limit=limit)
    queue_errors = store.queue_items(status="error", newest_first=True, limit=limit)
    episode_errors = store.recent_error_episodes(limit)
    pending = store.count_episodes(verdict="pending")
    answered = [q for q in store.queue_items(newest_first=True, limit=limit * 4) if q.status in ("done", "error")][:limit]
    beat = read_heartbeat(settings)
    spec = PolicySpec.model_validate(policy.spec) if policy else None
    return {
        "home": str(settings.home),
        "queue": queue_counts(store),
        "pending_feedback": pending,
        "worker": {"state": heartbeat_state(beat), **({k: beat.get(k) for k in ("pid", "at", "state", "current", "counts")}
                                                      if beat else {})},
        "incumbent": None if policy is None else {
            "id": policy.id, "version": policy.version, "note": policy.note,
            "insights": len(spec.insights), "exemplars_k": spec.exemplars_k, "tools": list(spec.tools)},
        "answers": [_answer_row(store, q) for q in answered],
        "cycles": [{"number": c.number, "run": c.run_id, "status": c.status, "stop_reason": c.stop_reason,
                    "tokens": c.tokens, "started": c.started_at.isoformat(timespec="seconds") if c.started_at else None}
                   for c in cycles],
        "promotions": [{"cycle": p.cycle, "decision": p.decision, "candidate": p.candidate_id,
                        "delta": round(p.delta, 4), "ci": [round(p.ci_low, 4), round(p.ci_high, 4)]}
                       for p in promotions],
        "errors": [{"item": q.id, "task": q.task_id, "error": q.error[:200]} for q in queue_errors]
                  + [{"episode": e.id, "task": e.task_id, "error": e.error[:200]} for e in episode_errors
                     if not any(q.episode_id == e.id for q in queue_errors)][:limit],
    }


def _answer_row(store, item: QueueItem) -> dict[str, Any]:
    """One of the worker's recent answers, as `evolve status` lists it."""
    ep = store.get_episode(item.episode_id) if item.episode_id else None
    task = store.get_task(item.task_id)
    return {"item": item.id, "episode": ep.id if ep else None, "question": task.question if task else item.task_id,
            "answer": ep.final_answer if ep else "", "verdict": ep.verdict if ep else item.status,
            "error": ((ep.error if ep else "") or item.error)[:200]}
