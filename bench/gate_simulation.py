"""How often the gate promotes a candidate that is no better than the incumbent.

Each simulated cycle: `n` dev items of random difficulty (shared by every policy, so outcomes
are paired), an incumbent and `m` candidates of the same true accuracy, each candidate evaluated
item by item with the futility stop, then the gate (agent/loop/gate.py). Prints the share of
cycles with a (false) promotion, with and without the Holm correction, and the share of dev
items the futility stop saved.

    python bench/gate_simulation.py --cycles 1000 --n 60 --seed 0
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


def sequential(cand, inc, *, significance=0.05, futility=True) -> tuple[dict, int]:
    """One candidate evaluated item by item as the loop does: (evidence, items evaluated).

    The gate reads p and delta (the bootstrap interval is only reported), so no bootstrap here."""
    n = len(cand)
    seen = wins = losses = 0
    for i in range(n):
        seen = i + 1
        wins += cand[i] and not inc[i]
        losses += inc[i] and not cand[i]
        if futility and seen < n and gate.futile(wins, losses, n - seen, n=n, significance=significance,
                                                 min_delta=0.0):
            break
    return {"p_value": mcnemar_exact(wins, losses), "delta": (wins - losses) / seen, "stopped_early": seen < n}, seen


def simulate(cycles: int, *, m: int, n: int, seed: int, correct: bool = True,
             significance: float = 0.05) -> tuple[float, float]:
    """(share of cycles promoting a candidate, share of candidate dev items evaluated)."""
    rng = random.Random(seed)
    rule = gate.GateRule(significance=significance)
    promoted = evaluated = 0
    for _ in range(cycles):
        difficulty = [rng.uniform(0.05, 0.95) for _ in range(n)]
        inc = [rng.random() < q for q in difficulty]
        runs = [sequential([rng.random() < q for q in difficulty], inc, significance=significance)
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
    args = ap.parse_args()
    started = time.perf_counter()
    print(f"{'m':>3} {'holm':>7} {'uncorrected':>12} {'items evaluated':>16}")
    for m in (1, 3, 5):
        holm_rate, share = simulate(args.cycles, m=m, n=args.n, seed=args.seed)
        raw_rate, _ = simulate(args.cycles, m=m, n=args.n, seed=args.seed, correct=False)
        print(f"{m:>3} {holm_rate:>7.3f} {raw_rate:>12.3f} {share:>16.3f}")
    print(f"cycles={args.cycles} n={args.n} seed={args.seed} wall={time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
