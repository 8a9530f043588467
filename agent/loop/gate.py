"""The promotion gate for several candidates per cycle.

Each candidate that reaches the full dev evaluation is one hypothesis test (exact McNemar,
paired with the incumbent on the same items). Testing several per cycle and promoting the best
would promote a candidate no better than the incumbent far more often than the nominal level,
so the p-values are adjusted with Holm's step-down method, which controls the chance of any
false promotion in the cycle (family-wise error) without assuming the tests are independent.
A candidate is promoted only with an adjusted p below the significance level, a gain above
`min_delta`, and (optionally) a cost within `max_cost_ratio` of the incumbent's; at most one
per cycle.

Futility: while a candidate is evaluated item by item, the best it can still reach is winning
every remaining item. If even that leaves the exact McNemar p at or above the significance level
(the most lenient threshold Holm ever applies), nothing the rest of the items do can make it
promotable, and the evaluation stops.

Early success (Haybittle-Peto): a candidate whose exact McNemar p on the items run so far is
already below `efficacy_p` (0.001 by default, fifty times stricter than the usual 0.05) with a
gain stops too, and goes to the gate on those items. Looking after every item at so strict a
boundary adds little to the chance of a false promotion, and exact McNemar is conservative:
bench/gate_simulation.py measures the rate with both stops on, and tests/test_gate.py keeps it
at or below the significance level with five equal candidates. A clearly better candidate (say
11 wins, no losses) then skips the rest of its dev items, the costliest part of a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.loop.stats import mcnemar_exact


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input's order (monotone along the sorted order)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def best_case_p(wins: int, losses: int, remaining: int) -> float:
    """The smallest exact McNemar p reachable if every remaining item is a candidate-only win.

    p falls as wins grow past losses, so turning all remaining items into wins is the best case
    (a concordant item adds nothing to either count)."""
    return mcnemar_exact(wins + remaining, losses)


def futile(wins: int, losses: int, remaining: int, *, n: int, significance: float, min_delta: float) -> bool:
    """True when no outcome of the remaining items can make the candidate promotable."""
    if n <= 0:
        return True
    best_delta = (wins + remaining - losses) / n
    return best_delta <= min_delta or best_case_p(wins, losses, remaining) >= significance


def early_success(wins: int, losses: int, seen: int, *, efficacy_p: float, min_delta: float) -> bool:
    """True when the items run so far already cross the early-success boundary (0: never)."""
    if efficacy_p <= 0 or seen <= 0:
        return False
    return (wins - losses) / seen > min_delta and mcnemar_exact(wins, losses) < efficacy_p


def stop_reason(wins: int, losses: int, seen: int, *, n: int, m: int, significance: float, min_delta: float,
                efficacy_p: float, futility: bool = True) -> str | None:
    """Why a candidate's dev evaluation ends after `seen` of `n` items, or None to go on:
    "efficacy" (early success) or "futility". The early-success boundary is also kept below
    significance / m: Holm's adjusted p is at most m times the raw one, so an early success is
    never a candidate the gate then turns down. The loop and bench/gate_simulation.py both ask
    this, so the simulation measures the rule the loop runs."""
    if early_success(wins, losses, seen, efficacy_p=min(efficacy_p, significance / max(1, m)), min_delta=min_delta):
        return "efficacy"
    if futility and futile(wins, losses, n - seen, n=n, significance=significance, min_delta=min_delta):
        return "futility"
    return None


def paired_counts(candidate: Mapping[str, bool], incumbent: Mapping[str, bool]) -> tuple[int, int]:
    """(candidate-only wins, incumbent-only wins) over the items both have a result for."""
    wins = sum(1 for t, ok in candidate.items() if ok and not incumbent.get(t, False))
    losses = sum(1 for t, ok in candidate.items() if not ok and incumbent.get(t, False))
    return wins, losses


def cost_of(rows: Sequence[tuple[bool, int, float]]) -> dict[str, float | int | None]:
    """Tokens and seconds per task and per correct answer from (correct, tokens, seconds) rows."""
    n = len(rows)
    correct = sum(1 for ok, _, _ in rows if ok)
    tokens = sum(t for _, t, _ in rows)
    seconds = sum(s for _, _, s in rows)
    return {
        "n": n,
        "correct": correct,
        "tokens": tokens,
        "seconds": round(seconds, 4),
        "tokens_per_task": tokens / n if n else None,
        "seconds_per_task": seconds / n if n else None,
        # None when nothing was solved: there is no cost per correct answer to speak of.
        "tokens_per_correct": tokens / correct if correct else None,
        "seconds_per_correct": seconds / correct if correct else None,
    }


def cost_ratio(candidate: Mapping, incumbent: Mapping) -> float | None:
    """Candidate tokens per task over the incumbent's; None when either is unknown or zero."""
    c, i = candidate.get("tokens_per_task"), incumbent.get("tokens_per_task")
    if not c or not i:
        return None
    return c / i


@dataclass(frozen=True)
class GateRule:
    significance: float = 0.05
    min_delta: float = 0.0
    # 0: off. Otherwise a candidate may spend at most this many times the incumbent's tokens
    # per task, so a gain bought with, say, 5x the tokens must be asked for explicitly.
    max_cost_ratio: float = 0.0


def decide(candidates: list[dict], rule: GateRule) -> int | None:
    """Fill `p_adjusted`, `decision` and `reason` in each candidate's evidence; return the
    index of the one to promote (or None).

    Each evidence dict needs `p_value`, `delta` and `stopped_early`; `cost_ratio` when the cost
    rule is on. All candidates given were evaluated on dev, stopped early or not: each is a test
    made, so each counts in Holm's m.
    """
    adjusted = holm([c["p_value"] for c in candidates])
    eligible = []
    for i, (ev, p_adj) in enumerate(zip(candidates, adjusted)):
        ev["p_adjusted"] = p_adj
        ev["holm_m"] = len(candidates)
        if ev.get("stopped_early"):
            reason = "stopped early: could no longer reach significance"
        elif ev["delta"] <= rule.min_delta:
            reason = f"gain {ev['delta']:+.3f} not above {rule.min_delta}"
        elif p_adj >= rule.significance:
            reason = f"adjusted p {p_adj:.4f} (raw {ev['p_value']:.4f}, Holm over {len(candidates)}) " \
                     f"not below {rule.significance}"
        elif rule.max_cost_ratio and (ev.get("cost_ratio") is None or ev["cost_ratio"] > rule.max_cost_ratio):
            reason = f"cost ratio {ev.get('cost_ratio')} above {rule.max_cost_ratio}"
        else:
            reason = ""
            eligible.append(i)
        ev["decision"], ev["reason"] = "reject", reason
    if not eligible:
        return None
    # Smallest adjusted p wins; then the larger gain; then the cheaper; then proposal order.
    best = min(eligible, key=lambda i: (candidates[i]["p_adjusted"], -candidates[i]["delta"],
                                        candidates[i].get("cost_ratio") or 0.0, i))
    candidates[best]["decision"], candidates[best]["reason"] = "promote", "significant after Holm correction" + (
        f" (stopped early for success after {candidates[best]['n']} of {candidates[best]['n_planned']} dev items)"
        if candidates[best].get("stopped_for_efficacy") and "n_planned" in candidates[best] else "")
    for i in eligible:
        if i != best:
            candidates[i]["reason"] = "significant, but another candidate was stronger (one promotion per cycle)"
    return best
