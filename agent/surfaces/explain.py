"""Plain words for one improvement cycle: what it tried, what the gate decided and why.

Built from the cycle's history record (agent/loop/graph.py); keys a cycle did not produce are
simply not mentioned, so a skipped evaluation or a newer gate's extra fields read fine.
"""

from __future__ import annotations

from typing import Any


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# What each proposer's candidate changes, in the summary's words (agent/loop/proposers.py).
WHAT_CHANGED = {
    "context": "shows this experience in its prompts",
    "mixed_vote": "solves by reasoning and by a program, sampling more of both when they disagree",
    "program": "solves by writing a program and running it",
    "program_vote": "writes several programs and takes the majority answer",
    "program_with_reasoning": "writes a program and falls back to reasoning when it fails",
    "vote": "samples several answers and takes the majority",
    "reason": "reasons in plain text without tool actions",
    "tools": "is offered one more tool",
    "instruction": "adds an instruction the model wrote from its failed practice tasks",
    "finetune": "uses a model fine-tuned on its verified practice solutions",
    "lora": "applies a LoRA adapter trained on its verified practice solutions",
}


def explain_cycle(h: dict[str, Any]) -> list[str]:
    acq = h.get("acquire") or {}
    ref = h.get("refine") or {}
    upd = h.get("update") or {}
    ev = h.get("evaluate") or {}
    lines = []
    if acq:
        lines.append(f"Cycle {h.get('cycle')}: the agent solved {acq.get('passed', 0)} of "
                     f"{_n(acq.get('total', 0), 'practice (train) task')} with its current policy.")
    learned = []
    if ref.get("exemplar") or ref.get("corrected"):
        learned.append(_n(ref.get("exemplar", 0) + ref.get("corrected", 0), "new worked example"))
    if ref.get("skill"):
        learned.append(_n(ref["skill"], "new code skill"))
    rules = sum(ref.get(k, 0) for k in ("add", "agree", "edit", "remove"))
    if rules:
        learned.append(f"{_n(rules, 'change')} to its list of rules")
    if ref.get("feedback_exemplar") or ref.get("feedback_confirmed"):
        learned.append(f"{_n(ref.get('feedback_exemplar', 0), 'example')} from rated chat/worker answers "
                       f"({ref.get('feedback_confirmed', 0)} confirmed)")
    lines.append("From that it stored " + (", ".join(learned) if learned else "nothing new") + ".")
    if upd.get("candidate_id"):
        made_by = {c.get("candidate_id"): c.get("proposer") for c in upd.get("candidates") or []}
        what = WHAT_CHANGED.get(made_by.get(upd["candidate_id"]) or "context", "changes one setting of the incumbent")
        lines.append(f"It built candidate policy {upd['candidate_id']} that {what}.")
    if not ev:
        lines.append("The candidate was no different from the incumbent, so there was nothing to test.")
        return lines
    n = ev.get("n") or (ev.get("wins", 0) + ev.get("losses", 0) + ev.get("ties", 0)) or None
    on = f" on the same {n} held-out (dev) tasks" if n else " on the same held-out (dev) tasks"
    lines.append(f"Both policies were tested{on}: incumbent {ev['incumbent_acc']:.0%}, candidate "
                 f"{ev['candidate_acc']:.0%} (difference {ev['delta']:+.0%}, 95% interval "
                 f"{ev['ci_low']:+.0%} to {ev['ci_high']:+.0%}, p = {ev['p_value']:.3f}).")
    th = ev.get("threshold") or {}
    alpha = th.get("significance", 0.05)
    m = int(th.get("m") or len(ev.get("candidates") or []) or 1)
    if m > 1:
        lines.append(f"{m} candidates were tested this cycle, so each p-value was adjusted for that "
                     f"(Holm); the line above is the strongest one.")
    decision = h.get("decision") or ev.get("decision")
    why = f" (gate: {ev['reason']})" if ev.get("reason") else ""
    if decision == "promote":
        lines.append(f"Promoted: the gain is positive and significant (p < {alpha}), so the candidate is "
                     f"now the incumbent{why}.")
        if ev.get("stopped_for_efficacy"):
            lines.append("Its evaluation stopped early: the evidence was already far past the bar, so the "
                         "remaining dev tasks were not needed.")
    elif ev.get("stopped_early"):
        lines.append(f"Rejected early: partway through the dev tasks it could no longer reach significance, "
                     f"so the rest were not run{why}.")
    elif ev["delta"] <= th.get("min_delta", 0.0):
        lines.append(f"Rejected: the candidate did not score higher, so the incumbent stays{why}. That is the "
                     f"gate working: no change is kept without evidence that it helps.")
    else:
        lines.append(f"Rejected: the candidate scored higher, but with this few tasks the gain could be luck "
                     f"(needs p < {alpha}){why}; the incumbent stays. More dev tasks (--dev) give the gate "
                     f"more power.")
    return lines
