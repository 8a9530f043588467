"""`evolve eval`: held-out accuracy of policies with 95% intervals, paired when comparing."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from agent.cli.common import Bars, err, out, progress, settings
from agent.cli.policy import policy_id
from agent.config import ConfigError

# Above this many items without --limit, the size and an estimate are printed before starting.
LARGE_SPLIT = 100


def seconds_per_item(store, fingerprint: str, sample: int = 500) -> float | None:
    """Mean model time per held-out episode of this model, from the store; None without any."""
    times = [e.latency_s for split in ("dev", "test") for e in store.episodes(split=split, limit=sample)
             if e.model_fingerprint == fingerprint and e.latency_s > 0]
    return sum(times) / len(times) if times else None


def eta_line(n: int, policies: int, per_item: float | None, suite: str, split: str) -> str:
    total = n * policies
    if per_item is None:
        guess = "no timing yet for this model, so no estimate"
    else:
        secs = total * per_item
        guess = f"about {secs / 60:.0f} min at {per_item:.1f}s per item" if secs >= 60 else f"about {secs:.0f}s"
    return (f"evaluating all {n} {suite} {split} items × {policies} polic{'y' if policies == 1 else 'ies'} "
            f"({guess}); --limit N evaluates a seeded subset")


def register(root: typer.Typer) -> None:
    @root.command("eval")
    def eval_cmd(
        policy: list[str] = typer.Option(["incumbent"], "--policy",
                                         help="Policy id, 'incumbent' or 'initial'; repeat to compare on the same "
                                              "items."),
        split: str = typer.Option("test", help="test or dev (never train)."),
        suite: str = typer.Option(None, help="Task suite (default: settings' loop.suite)."),
        tasks: Optional[Path] = typer.Option(None, "--tasks", help="A user task file (JSONL)."),
        limit: int = typer.Option(None, help="Evaluate a seeded random subset of this size."),
        seed: int = typer.Option(0, help="Seed of the subset."),
        baseline: bool = typer.Option(False, "--baseline", help="Also run the bare model (plain reasoning, "
                                      "greedy, no tools, no memory) on the same items, as its own row."),
    ) -> None:
        """Accuracy of one or more policies on held-out tasks, with 95% confidence intervals."""
        from agent.loop.evaluate import dev_tasks, evaluate_policy
        from agent.loop.runtime import make_runtime
        from agent import eval_table
        from agent.policy import baseline_policy, ensure_initial

        if split not in ("dev", "test"):
            raise ConfigError(f"--split {split!r}: evaluation uses held-out splits only (dev or test)")
        if limit is not None and limit <= 0:
            raise ConfigError(f"--limit {limit}: give a positive number of items")
        s = settings()
        suite_name = "file" if tasks else (suite or s.loop.suite)
        rt = make_runtime(s, suite=suite_name, tasks_file=tasks)
        ensure_initial(rt.store)
        items = dev_tasks(rt, split, limit=limit, seed=seed)
        if not items:
            raise ConfigError(f"suite {suite_name!r} has no {split} tasks")
        if limit is None and len(items) > LARGE_SPLIT:
            err.print(eta_line(len(items), len(policy), seconds_per_item(rt.store, rt.model.fingerprint),
                               suite_name, split), markup=False, highlight=False)
        ids_by_name = {name: policy_id(rt.store, name) for name in policy}  # bad ids fail before any work
        results = {}
        with progress() as bars:
            rt.progress = Bars(bars)
            for pid in ids_by_name.values():
                results[pid] = evaluate_policy(rt, rt.store.get_policy(pid), items, split=split, seed=seed,
                                               phase="eval")
            base_id = None
            if baseline:
                base = baseline_policy()
                base_id = base.id
                results[base_id] = evaluate_policy(rt, base, items, split=split, seed=seed, phase="eval")
        ids = [t.id for t in items]
        out.print(f"({suite_name} {split}, n={len(ids)}, seed={seed})", markup=False)
        for row in eval_table.rows(rt.store, results, ids, seed=seed):
            out.print(eval_table.format_row(row, label=" (baseline)" if row.policy_id == base_id else ""),
                      markup=False)
        for a, b, ev in eval_table.comparisons(results, ids, baseline=base_id,
                                               samples=s.loop.bootstrap_samples):
            out.print(eval_table.format_comparison(a, b, ev), markup=False)
        u = rt.model.usage
        out.print(f"[dim]{u.calls} model calls, {u.total_tokens} tokens, {u.latency_s:.0f}s in the model[/dim]")
