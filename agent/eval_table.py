"""The rows `evolve eval` prints: accuracy with its Wilson CI and the cost of each policy, the
baseline among them, and paired comparisons on the same items."""

from __future__ import annotations

from dataclasses import dataclass

from agent.loop.stats import compare, wilson_interval


@dataclass
class Row:
    policy_id: str
    correct: int
    n: int
    ci_low: float
    ci_high: float
    tokens: int
    seconds: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def tokens_per_correct(self) -> float | None:
        return self.tokens / self.correct if self.correct else None


def rows(store, results: dict[str, dict[str, bool]], ids: list[str], *, seed: int) -> list[Row]:
    """One row per evaluated policy; cost from the episodes its evaluation stored."""
    out = []
    for pid, res in results.items():
        k = sum(res[t] for t in ids)
        lo, hi = wilson_interval(k, len(ids))
        tokens, seconds = 0, 0.0
        for tid in ids:
            # The run key evaluate_policy gives each attempt (agent/loop/evaluate.py).
            ep = store.episode_by_key(f"eval/{pid}/{tid}/s{seed}")
            if ep is not None:
                tokens += ep.prompt_tokens + ep.completion_tokens
                seconds += ep.latency_s
        out.append(Row(pid, k, len(ids), lo, hi, tokens, seconds))
    return out


def comparisons(results: dict[str, dict[str, bool]], ids: list[str], *, baseline: str | None,
                samples: int = 2000) -> list[tuple[str, str, dict]]:
    """(candidate, reference, evidence) pairs: the second policy against the first, as before,
    and with a baseline every policy against it."""
    names = [p for p in results if p != baseline]
    pairs = []
    if len(names) >= 2:
        pairs.append((names[1], names[0]))
    if baseline is not None:
        pairs += [(p, baseline) for p in names]
    return [(a, b, compare([results[a][t] for t in ids], [results[b][t] for t in ids], samples=samples))
            for a, b in pairs]


def format_row(row: Row, *, label: str = "") -> str:
    per_correct = f"{row.tokens_per_correct:.0f}" if row.tokens_per_correct is not None else "-"
    name = f"{row.policy_id}{label}"
    return (f"{name}: {row.correct}/{row.n} = {row.accuracy:.3f}  95% CI [{row.ci_low:.3f}, {row.ci_high:.3f}]  "
            f"{row.tokens / max(row.n, 1):.0f} tokens/item, {row.seconds / max(row.n, 1):.1f} s/item, "
            f"{per_correct} tokens/correct")


def format_comparison(a: str, b: str, ev: dict) -> str:
    return (f"{a} - {b}: {ev['delta']:+.3f}  95% CI [{ev['ci_low']:+.3f}, {ev['ci_high']:+.3f}]  "
            f"wins {ev['wins']} losses {ev['losses']}  McNemar p={ev['p_value']:.4f}")
