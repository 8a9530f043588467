"""Phase 2, experience refinement: keep what was verified, learn from what failed.

- A verified answer becomes an exemplar (a worked example), verified code becomes a skill.
- A failure is analysed against the reference solution, and the analysis becomes an operation
  on the insight list, ExpeL-style: add a rule, agree with one (importance +1), edit one, or
  remove one (importance -1; at zero it is deactivated).
Duplicates are absorbed by the store (exact digest or embedding similarity).
"""

from __future__ import annotations

from agent.errors import OutputParseError
from agent.prompts import fence
from agent.loop.runtime import Runtime
from memory.trajectory import Trajectory

INSIGHT_OPS_SCHEMA = {
    "type": "object",
    "properties": {
        "mistake": {"type": "string", "maxLength": 300},
        "op": {"type": "string", "enum": ["add", "agree", "edit", "remove"]},
        "target": {"type": "integer"},
        "rule": {"type": "string", "maxLength": 200},
    },
    "required": ["mistake", "op", "target", "rule"],
}

MIN_RULE_WORDS = 5

ANALYSE_PROMPT = (
    "A student answered a problem wrongly. Compare the attempt with the reference solution, "
    "name the mistake in one sentence, then maintain the list of general rules that help avoid "
    "such mistakes: \"add\" a new general rule (not about this problem's numbers), \"agree\" with "
    "an existing rule that covers it (give its number as target), \"edit\" a rule to improve it "
    "(target and new rule), or \"remove\" a rule that is wrong (target). Reply in JSON."
)


def current_insights(store, limit: int = 12):
    # The refiner's view includes quarantined rules; a policy's prompts take only
    # store.policy_insights (verified).
    return store.insight_pool(limit)


def analyse_failure(rt: Runtime, task, episode, policy_id: str) -> str:
    reference = task.meta.get("solution") or task.answer
    insights = current_insights(rt.store)
    # The pool holds quarantined, model-written rules too: data for the refiner, never its orders.
    listing = "\n".join(f"{i + 1}. {r.content}" for i, r in enumerate(insights)) or "(no rules yet)"
    messages = [
        {"role": "system", "content": ANALYSE_PROMPT},
        {"role": "user", "content": (
            f"Problem:\n{fence(task.question, 'problem')}\n\nAttempt (answer {episode.final_answer!r}):\n"
            f"{fence(Trajectory.from_stored(episode.trajectory).attempt_text(), 'attempt')}\n\nReference solution (answer "
            f"{task.answer}):\n{fence(reference, 'reference')}\n\nCurrent rules:\n{fence(listing, 'rules')}")},
    ]
    try:
        out = rt.model.complete(messages, schema=INSIGHT_OPS_SCHEMA, max_tokens=200)
        rt.usage.add(out.usage)
    except OutputParseError:
        return "unparsable"
    op = out.parsed if isinstance(out.parsed, dict) else {}
    kind, rule = op.get("op"), str(op.get("rule", "")).strip()
    target = op.get("target")
    chosen = insights[target - 1] if isinstance(target, int) and 1 <= target <= len(insights) else None
    provenance = dict(source_task_ids=[task.id], source_episode_ids=[episode.id], split=task.split,
                      model_fingerprint=rt.model.fingerprint, policy_id=policy_id)
    if kind == "agree" and chosen is not None:
        rt.store.update_experience(chosen.id, importance=chosen.importance + 1)
        return "agree"
    if kind == "edit" and chosen is not None and len(rule.split()) >= MIN_RULE_WORDS:
        rt.store.update_experience(chosen.id, content=rule)
        return "edit"
    if kind == "remove" and chosen is not None:
        if chosen.importance <= 1:
            rt.store.deactivate_experience(chosen.id)
        else:
            rt.store.update_experience(chosen.id, importance=chosen.importance - 1)
        return "remove"
    if len(rule.split()) < MIN_RULE_WORDS:
        # Seen on the 0.5B model: the rule field filled with an op name ("remove"), which
        # then gathered 26 agreements and entered the policy as an "insight".
        return "empty"
    if rule:
        added = rt.store.add_experience("insight", rule, key=rule, trust="unverified",
                                        meta={"mistake": str(op.get("mistake", ""))[:300]}, **provenance)
        return "add" if added is not None else "agree"  # a near-duplicate counts as agreement
    return "empty"


def refine(rt: Runtime, *, run_id: str, cycle: int, policy_id: str) -> dict:
    prefix = f"{run_id}/c{cycle}/acquire/"
    episodes = [e for e in rt.store.episodes(cycle=cycle, source="acquire") if e.run_key.startswith(prefix)]
    counts = {"exemplar": 0, "corrected": 0, "skill": 0, "add": 0, "agree": 0, "edit": 0, "remove": 0,
              "empty": 0, "other": 0}
    for i, ep in enumerate(episodes):
        task = rt.store.get_task(ep.task_id)
        if task is None or task.split != "train":
            continue  # the firewall holds here too: held-out work never becomes experience
        provenance = dict(source_task_ids=[task.id], source_episode_ids=[ep.id], split=task.split,
                          model_fingerprint=ep.model_fingerprint, policy_id=ep.policy_id)
        if ep.verdict == "pass":
            if task.kind == "code":
                added = rt.store.add_experience("skill", ep.final_answer, key=task.question,
                                                trust="verified", **provenance)
                counts["skill"] += added is not None
            else:
                text = Trajectory.from_stored(ep.trajectory).exemplar_text(task.question, ep.final_answer)
                added = rt.store.add_experience("exemplar", text, key=task.question, trust="verified",
                                                **provenance)
                counts["exemplar"] += added is not None
        elif ep.verdict == "fail":
            op = analyse_failure(rt, task, ep, policy_id)
            counts[op if op in counts else "other"] += 1
            reference = task.meta.get("solution") if task.kind != "code" else None
            if reference:
                # Correction: a train task's reference solution is verified by construction, so the
                # failure still yields a worked example (the survey's refinement by correction).
                text = f"Question: {task.question}\nSolution: {reference.strip()}\nThe answer is {task.answer}."
                added = rt.store.add_experience("exemplar", text, key=task.question, trust="verified",
                                                meta={"from": "reference"}, **provenance)
                counts["corrected"] += added is not None
        rt.progress("refine", i + 1, len(episodes))
    # Verified work from chat and the worker (ratings, user answers): see agent/loop/feedback.py.
    from agent.loop.feedback import learn_from_surfaces

    counts.update(learn_from_surfaces(rt, run_id=run_id, cycle=cycle, acquired=episodes))
    return counts
