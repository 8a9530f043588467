"""Statistics for the promotion gate and for reported accuracies."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% interval for a proportion; sane at 0% and 100%, unlike the normal approximation."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts b and c."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_bootstrap(candidate: Sequence[float], incumbent: Sequence[float], *, samples: int = 2000,
                     seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean paired difference and its percentile bootstrap interval."""
    if len(candidate) != len(incumbent):
        raise ValueError("paired samples must have equal length")
    n = len(candidate)
    if n == 0:
        return 0.0, 0.0, 0.0
    diffs = [c - i for c, i in zip(candidate, incumbent)]
    mean = sum(diffs) / n
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    lo = means[int((1 - level) / 2 * samples)]
    hi = means[min(samples - 1, int((1 + level) / 2 * samples))]
    return mean, lo, hi


def compare(candidate: Sequence[bool], incumbent: Sequence[bool], *, samples: int = 2000,
            seed: int = 0) -> dict[str, float]:
    """Evidence for a promotion decision on paired per-item outcomes."""
    b = sum(1 for c, i in zip(candidate, incumbent) if c and not i)  # candidate-only wins
    c_ = sum(1 for c, i in zip(candidate, incumbent) if i and not c)  # incumbent-only wins
    delta, lo, hi = paired_bootstrap([float(x) for x in candidate], [float(x) for x in incumbent],
                                     samples=samples, seed=seed)
    n = len(candidate)
    return {
        "n": n,
        "candidate_acc": sum(candidate) / n if n else 0.0,
        "incumbent_acc": sum(incumbent) / n if n else 0.0,
        "delta": delta,
        "ci_low": lo,
        "ci_high": hi,
        "wins": b,
        "losses": c_,
        "p_value": mcnemar_exact(b, c_),
    }
