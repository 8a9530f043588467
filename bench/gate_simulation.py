"""How often the gate promotes a candidate that is no better than the incumbent.

Each simulated cycle: `n` dev items of random difficulty (shared by every policy, so outcomes
are paired), an incumbent and `m` candidates of the same true accuracy, each candidate evaluated
item by item with the futility stop and the early-success stop (`--efficacy-p`, 0: off), then
the gate (agent/loop/gate.py). Prints the share of cycles with a (false) promotion, with and
without the Holm correction, and the share of dev items evaluated. `--better D` gives the
candidates D more true accuracy than the incumbent on every item instead, and so measures power
(the share of cycles promoting) and the items the early-success stop saves. `--agree A` makes
outcomes correlated as two policies of one model are: with probability A a candidate's outcome on
an item is the incumbent's, otherwise its own draw (the null case stays null).

    python bench/gate_simulation.py --cycles 1000 --n 60 --seed 0
    python bench/gate_simulation.py --cycles 1000 --n 150 --seed 0 --better 0.1 --agree 0.8 --efficacy-p 0.001
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.loop import gate  # noqa: E402
from agent.loop.stats import mcnemar_exact  # noqa: E402


def sequential(cand, inc, *, significance=0.05, futility=True, efficacy_p=0.0, m=1) -> tuple[dict, int]:
    """One candidate evaluated item by item as the loop does: (evidence, items evaluated).

    The gate reads p and delta (the bootstrap interval is only reported), so no bootstrap here."""
    n = len(cand)
    seen = wins = losses = 0
    why = None
    for i in range(n):
        seen = i + 1
        wins += cand[i] and not inc[i]
        losses += inc[i] and not cand[i]
        why = gate.stop_reason(wins, losses, seen, n=n, m=m, significance=significance, min_delta=0.0,
                               efficacy_p=efficacy_p, futility=futility) if seen < n else None
        if why:
            break
    return {"p_value": mcnemar_exact(wins, losses), "delta": (wins - losses) / seen,
            "stopped_early": why == "futility", "stopped_for_efficacy": why == "efficacy"}, seen


def _candidate(rng, difficulty, draws, *, better: float, agree: float) -> list[bool]:
    """Outcomes of one candidate: correct when a uniform draw falls below its accuracy on the item
    (the incumbent's plus `better`); the draw is the incumbent's own with probability `agree`, so
    the two fail together on hard items, and a fresh one otherwise. Marginals do not depend on
    `agree`."""
    return [(u if rng.random() < agree else rng.random()) < min(1.0, q + better)
            for q, u in zip(difficulty, draws)]


def simulate(cycles: int, *, m: int, n: int, seed: int, correct: bool = True, significance: float = 0.05,
             efficacy_p: float = 0.0, better: float = 0.0, agree: float = 0.0) -> tuple[float, float]:
    """(share of cycles promoting a candidate, share of candidate dev items evaluated).

    `better`: each candidate's true accuracy on an item exceeds the incumbent's by this much
    (capped at 1); 0 is the null case, where every promotion is false. `agree`: the chance that a
    candidate's outcome on an item copies the incumbent's (paired outcomes of one model correlate)."""
    rng = random.Random(seed)
    rule = gate.GateRule(significance=significance)
    promoted = evaluated = 0
    for _ in range(cycles):
        difficulty = [rng.uniform(0.05, 0.95) for _ in range(n)]
        draws = [rng.random() for _ in range(n)]  # the incumbent's uniform draw per item
        inc = [u < q for u, q in zip(draws, difficulty)]
        runs = [sequential(_candidate(rng, difficulty, draws, better=better, agree=agree), inc,
                           significance=significance, efficacy_p=efficacy_p, m=m)
                for _ in range(m)]
        evidence = [e for e, _ in runs]
        evaluated += sum(k for _, k in runs)
        if correct:
            promoted += gate.decide(evidence, rule) is not None
        else:  # the uncorrected gate: any raw p below the threshold with a positive gain
            promoted += any(e["p_value"] < significance and e["delta"] > 0 for e in evidence)
    return promoted / cycles, evaluated / (cycles * m * n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--efficacy-p", type=float, default=0.0, help="early-success boundary (0: off)")
    ap.add_argument("--better", type=float, default=0.0, help="candidates' true gain per item (0: null case)")
    ap.add_argument("--agree", type=float, default=0.0, help="chance an outcome shares the incumbent's draw")
    args = ap.parse_args()
    started = time.perf_counter()
    what = "promotion rate (false)" if args.better == 0 else f"promotion rate (power, gain {args.better})"
    print(f"{what}; efficacy_p={args.efficacy_p} agree={args.agree}")
    print(f"{'m':>3} {'holm':>7} {'uncorrected':>12} {'items evaluated':>16}")
    for m in (1, 3, 5):
        kw = {"m": m, "n": args.n, "seed": args.seed, "efficacy_p": args.efficacy_p, "better": args.better,
              "agree": args.agree}
        holm_rate, share = simulate(args.cycles, **kw)
        raw_rate, _ = simulate(args.cycles, correct=False, **kw)
        print(f"{m:>3} {holm_rate:>7.3f} {raw_rate:>12.3f} {share:>16.3f}")
    print(f"cycles={args.cycles} n={args.n} seed={args.seed} wall={time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
