"""Refine's second source: work the surfaces verified (chat turns, worker tasks).

A chat turn or a queued task becomes learning material only once it is verified: a person
rated it (`/good`, `/bad`, `evolve rate`) or the worker checked it against the answer the user
gave. Unrated work is never an exemplar, and a bad rating never makes one.

One person's word is not enough to change what every later prompt shows, so an exemplar made
from a rating enters memory QUARANTINED ("unverified": the retriever never shows it). Refine
then probes it: the train task of this cycle most similar to it is solved again with the
exemplar shown and checked by the suite's own verifier; a pass confirms it
(`store.confirm_experience`), and only then can a candidate policy retrieve it. Work the
worker verified against the user's own reference answer is verified already.
"""

from __future__ import annotations

import re

import numpy as np

from agent.attempt import build_context, exemplar_text
from agent.loop.runtime import Runtime
from agent.policy import PolicySpec, incumbent
from memory.models import Episode

SOURCES = ("chat", "worker")
RATING = re.compile(r"^rated (good|bad) by (\w+)")
MAX_PROBES = 5  # quarantined exemplars probed per cycle: each probe is one solved train task


def rated_by(episode: Episode) -> str:
    """Who verified the episode: "chat" or "cli" (a person's rating), "verifier", or ""."""
    m = RATING.match(episode.feedback or "")
    if m:
        return m.group(2)
    return "verifier" if episode.verdict in ("pass", "fail") else ""


def verified_surface_episodes(store) -> list[Episode]:
    """Chat and worker episodes with a verdict (rated, or checked against a reference)."""
    found = []
    for source in SOURCES:
        for verdict in ("pass", "fail"):
            found += store.episodes(source=source, verdict=verdict, split="train")
    return sorted(found, key=lambda e: e.id)


def learn_from_surfaces(rt: Runtime, *, run_id: str, cycle: int, acquired: list[Episode]) -> dict:
    """Turn verified surface work into exemplars, then probe the quarantined ones."""
    counts = {"feedback_exemplar": 0, "feedback_confirmed": 0, "feedback_bad": 0}
    store = rt.store
    for ep in verified_surface_episodes(store):
        task = store.get_task(ep.task_id)
        if task is None or task.split != "train" or task.kind == "code":
            continue
        who = rated_by(ep)
        if ep.verdict != "pass":
            counts["feedback_bad"] += 1
            if not (who in ("chat", "cli") and task.answer.strip()):
                continue  # a bad answer never becomes an example
            # The person gave the right answer (`evolve rate ITEM bad --answer X`): that answer,
            # never the bad attempt, becomes a (quarantined) example.
            text = f"Question: {task.question}\nThe answer is {task.answer.strip()}."
        else:
            text = exemplar_text(task.question, ep.trajectory, ep.final_answer)
        added = store.add_experience(
            "exemplar", text, key=task.question, trust="verified" if who == "verifier" else "unverified",
            source_task_ids=[task.id], source_episode_ids=[ep.id], split="train",
            model_fingerprint=ep.model_fingerprint, policy_id=ep.policy_id,
            meta={"from": ep.source, "rated_by": who})
        counts["feedback_exemplar"] += added is not None
    probes = [t for t in (store.get_task(e.task_id) for e in acquired) if t is not None and t.split == "train"]
    quarantined = [x for x in store.experiences(kind="exemplar", split="train", trust="unverified")
                   if x.active and x.meta.get("from") in SOURCES][:MAX_PROBES]
    for exp in quarantined if probes else []:
        counts["feedback_confirmed"] += _probe(rt, exp, probes, run_id=run_id, cycle=cycle)
    return counts


def _probe(rt: Runtime, exp, tasks, *, run_id: str, cycle: int) -> bool:
    """Solve the train task most similar to EXP with EXP shown; confirm EXP when it passes."""
    vecs = np.asarray(rt.store.embedder.embed([exp.key or exp.content] + [t.question for t in tasks]), dtype=float)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    task = tasks[int(np.argmax(vecs[1:] @ vecs[0]))]
    policy = incumbent(rt.store)
    spec = PolicySpec.model_validate(policy.spec)
    run_key = f"{run_id}/c{cycle}/confirm/{exp.id}/{task.id}"
    episode = rt.store.episode_by_key(run_key)
    if episode is None:
        ctx = build_context(rt.store, spec, task.question, exclude_task_ids=[task.id])
        ctx.exemplars.insert(0, exp.content)
        ctx.experience_ids.append(exp.id)
        solver = rt.solver(spec)
        result = solver.solve(task.question, spec, ctx, kind=task.kind)
        verdict = rt.suite.verify(task, result.final_answer, sandbox=rt.sandbox)
        episode = rt.store.add_episode(Episode(
            run_key=run_key, task_id=task.id, split=task.split, policy_id=policy.id,
            model_fingerprint=solver.model.fingerprint, cycle=cycle, source="confirm",
            trajectory=result.trajectory.to_stored(), final_answer=result.final_answer, reward=verdict.reward,
            verdict="pass" if verdict.correct else "fail", feedback=verdict.detail[:2000],
            shown_experience_ids=ctx.experience_ids, prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens))
    if episode.verdict != "pass":
        return False
    rt.store.confirm_experience(exp.id, episode.id)
    return True
