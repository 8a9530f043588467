"""Phase 4, evaluation: screening on a train minibatch, then candidates and incumbent on the same
held-out dev tasks, paired, through the gate (agent/loop/gate.py).

Results are keyed by (policy, task, seed): a policy's results are computed once and reused,
so the incumbent is not re-run while it is unchanged, and a resumed run repeats nothing.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

from agent.attempt import run_attempt
from agent.loop import gate
from agent.loop.runtime import Runtime
from agent.loop.stats import compare
from memory.models import EvalResult

Row = tuple[bool, int, float]  # (correct, tokens, seconds)


def dev_tasks(rt: Runtime, split: str = "dev", limit: int | None = None, seed: int = 0):
    tasks = rt.suite.load(split, limit=limit, seed=seed)
    rt.store.upsert_tasks(tasks)
    return tasks


def evaluate_rows(rt: Runtime, policy, tasks, *, split: str, seed: int = 0, cycle: int | None = None,
                  phase: str = "evaluate", stop: Callable[[dict[str, Row]], str | None] | None = None
                  ) -> dict[str, Row]:
    """Per-task (correct, tokens, seconds) of `policy` on `tasks`, in order, stored as an EvalRun.

    `stop(results so far)` is asked after each task; a reason ("futility", "efficacy") ends the
    evaluation there. It sees the same prefix whether results were just computed or read back, so
    a resumed run stops at the same item."""
    ids = [t.id for t in tasks]
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
    run_key = f"eval/{policy.id}/{split}/{digest}/s{seed}"
    store = rt.store
    run, _ = store.open_eval_run(run_key, policy_id=policy.id, split=split, task_ids=ids, seed=seed,
                                 cycle=cycle, n=len(ids))
    run_id = run.id
    done = store.eval_rows(run_id)
    solver = rt.solver(policy)
    seen: dict[str, Row] = {}
    for i, task in enumerate(tasks):
        if task.id not in done:
            ep = run_attempt(store=store, solver=solver, suite=rt.suite, task=task, policy=policy,
                             run_key=f"eval/{policy.id}/{task.id}/s{seed}", source="eval", cycle=cycle,
                             sandbox=rt.sandbox, spent=rt.usage)
            row = EvalResult(eval_run_id=run_id, policy_id=policy.id, task_id=task.id, seed=seed,
                             correct=ep.verdict == "pass", episode_id=ep.id,
                             tokens=ep.prompt_tokens + ep.completion_tokens, latency_s=ep.latency_s)
            store.add(row)
            done[task.id] = (row.correct, row.tokens, row.latency_s)
            rt.log("episode", {"phase": phase, "policy": policy.id, "task": task.id, "verdict": ep.verdict})
        seen[task.id] = done[task.id]
        rt.progress(f"{phase} {policy.id}", i + 1, len(tasks))
        why = stop(seen) if stop is not None and i + 1 < len(tasks) else None
        if why:
            rt.log(why, {"phase": phase, "policy": policy.id, "evaluated": i + 1, "of": len(tasks)})
            break
    store.finish_eval_run(run_id, sum(ok for ok, _, _ in seen.values()) / len(seen) if seen else 0.0,
                          n=len(seen))
    return seen


def evaluate_policy(rt: Runtime, policy, tasks, *, split: str, seed: int = 0, cycle: int | None = None,
                    phase: str = "evaluate") -> dict[str, bool]:
    """Per-task correctness of `policy` on `tasks`, stored as an EvalRun with EvalResults."""
    rows = evaluate_rows(rt, policy, tasks, split=split, seed=seed, cycle=cycle, phase=phase)
    return {tid: ok for tid, (ok, _, _) in rows.items()}


# -- screening ------------------------------------------------------------------------------

def screen_tasks(rt: Runtime, *, run_id: str, cycle: int, exclude_ids: Sequence[str] = ()):
    """A train minibatch for screening, drawn apart from this cycle's acquire tasks when the
    pool allows (so a candidate built from those episodes is not screened on them)."""
    n = rt.settings.loop.screen_size
    pool = rt.suite.load("train", limit=None, seed=0)
    used = set(exclude_ids)
    rng = random.Random(f"{run_id}:{cycle}:screen")
    fresh = [t for t in pool if t.id not in used]
    chosen = rng.sample(fresh, min(n, len(fresh)))
    if len(chosen) < n:
        stale = [t for t in pool if t.id in used]
        chosen += rng.sample(stale, min(n - len(chosen), len(stale)))
    rt.store.upsert_tasks(chosen)
    return chosen


def screen(rt: Runtime, *, run_id: str, cycle: int, incumbent, candidates: list[dict],
           exclude_ids: Sequence[str] = ()) -> dict:
    """Score each candidate and the incumbent on one train minibatch; the best `survivors` that
    are not worse than the incumbent go on to dev. Without screening, the first `survivors`."""
    loop = rt.settings.loop
    if not candidates:
        return {"survivor_ids": [], "screened": []}
    if loop.screen_size == 0:
        kept = candidates[: loop.survivors]
        out = [{**c, "screen": None, "survived": c in kept} for c in candidates]
        return {"survivor_ids": [c["candidate_id"] for c in kept], "screened": out}
    tasks = screen_tasks(rt, run_id=run_id, cycle=cycle, exclude_ids=exclude_ids)
    ids = [t.id for t in tasks]
    inc_rows = evaluate_rows(rt, incumbent, tasks, split="train", cycle=cycle, phase="screen")
    inc_score = sum(inc_rows[t][0] for t in ids)
    scored = []
    for i, c in enumerate(candidates):
        rows = evaluate_rows(rt, rt.store.get_policy(c["candidate_id"]), tasks, split="train", cycle=cycle,
                             phase="screen")
        scored.append((sum(rows[t][0] for t in ids), i, gate.cost_of(list(rows.values()))))
    ranked = sorted((s for s in scored if s[0] >= inc_score), key=lambda s: (-s[0], s[1]))
    kept = {i for _, i, _ in ranked[: loop.survivors]}
    out = [{**c, "screen": {"correct": score, "n": len(ids), "incumbent_correct": inc_score, "cost": cost},
            "survived": i in kept} for (score, i, cost), c in zip(scored, candidates)]
    return {"survivor_ids": [candidates[i]["candidate_id"] for i in sorted(kept)], "screened": out,
            "screen_ids": ids, "incumbent_screen": {"correct": inc_score, "n": len(ids),
                                                    "cost": gate.cost_of(list(inc_rows.values()))}}


# -- dev evaluation and the gate ------------------------------------------------------------

def _early_stop(rt: Runtime, incumbent: dict[str, Row], n: int, m: int) -> Callable[[dict[str, Row]], str | None] | None:
    """The candidate's stop rule on dev (agent/loop/gate.py `stop_reason`), `m` candidates on dev."""
    loop = rt.settings.loop
    if not loop.futility_stop and not loop.efficacy_p:
        return None
    inc = {t: ok for t, (ok, _, _) in incumbent.items()}

    def stop(seen: dict[str, Row]) -> str | None:
        wins, losses = gate.paired_counts({t: ok for t, (ok, _, _) in seen.items()}, inc)
        return gate.stop_reason(wins, losses, len(seen), n=n, m=m, significance=loop.significance,
                                min_delta=loop.min_delta, efficacy_p=loop.efficacy_p, futility=loop.futility_stop)

    return stop


def evaluate(rt: Runtime, *, cycle: int, incumbent, candidate=None, dev_ids: list[str],
             candidates: list[dict] | None = None) -> dict:
    """Dev evidence for each candidate (list of {"candidate_id", ...}), the gate's decisions, and
    at the top level the evidence of the promoted (else the strongest) candidate.

    `candidate`: a single policy, the one-candidate form."""
    if candidates is None:
        candidates = [{"candidate_id": candidate.id}]
    loop = rt.settings.loop
    tasks = [rt.store.get_task(t) for t in dev_ids]
    inc_rows = evaluate_rows(rt, incumbent, tasks, split="dev", cycle=cycle)
    inc_cost = gate.cost_of([inc_rows[t] for t in dev_ids])
    stop = _early_stop(rt, inc_rows, len(dev_ids), len(candidates))
    evidence = []
    for c in candidates:
        policy = rt.store.get_policy(c["candidate_id"])
        rows = evaluate_rows(rt, policy, tasks, split="dev", cycle=cycle, stop=stop)
        done = [t for t in dev_ids if t in rows]
        ev = compare([rows[t][0] for t in done], [inc_rows[t][0] for t in done],
                     samples=loop.bootstrap_samples, seed=cycle)
        cost = gate.cost_of([rows[t] for t in done])
        inc_same = gate.cost_of([inc_rows[t] for t in done])
        ratio = gate.cost_ratio(cost, inc_same)
        # Cut short by one of the two rules; the stop rule is a function of the prefix, so asking it
        # again on the final prefix says which one (also after a resume).
        cut = stop(rows) if stop is not None and len(done) < len(dev_ids) else None
        evidence.append({**c, **ev, "n_planned": len(dev_ids), "stopped_early": cut == "futility",
                         "stopped_for_efficacy": cut == "efficacy",
                         "cost": cost, "incumbent_cost": inc_same, "cost_ratio": ratio})
    rule = gate.GateRule(significance=loop.significance, min_delta=loop.min_delta,
                         max_cost_ratio=loop.max_cost_ratio)
    winner = gate.decide(evidence, rule)
    if winner is not None and loop.confirm_size > 0:
        winner = _confirm(rt, cycle=cycle, incumbent=incumbent, evidence=evidence[winner],
                          dev_ids=dev_ids, rule=rule, index=winner)
    head = evidence[winner] if winner is not None else min(
        evidence, key=lambda e: (e["p_adjusted"], -e["delta"]))
    out = {k: v for k, v in head.items() if k not in ("cost", "incumbent_cost")}
    out.update(candidates=evidence, incumbent_cost=inc_cost, promoted=head["candidate_id"] if winner is not None
               else None, threshold={"significance": loop.significance, "min_delta": loop.min_delta,
                                     "max_cost_ratio": loop.max_cost_ratio, "correction": "holm",
                                     "m": len(evidence)})
    return out


# -- confirmation on a fresh dev slice ------------------------------------------------------

def confirm_ids(rt: Runtime, dev_ids: Sequence[str]) -> list[str]:
    """`confirm_size` dev items after the gate's own: items the winner was not chosen on."""
    loop = rt.settings.loop
    pool = dev_tasks(rt, "dev", limit=loop.dev_size + loop.confirm_size)
    seen = set(dev_ids)
    return [t.id for t in pool if t.id not in seen][: loop.confirm_size]


def _confirm(rt: Runtime, *, cycle: int, incumbent, evidence: dict, dev_ids: Sequence[str],
             rule: gate.GateRule, index: int) -> int | None:
    """Re-test the gate's winner against the incumbent on a fresh dev slice; promote only when
    that one pre-specified comparison is significant with a gain too. The winner was picked on
    the first slice (and its proposer may have been picked by looking at it), so the first
    p-value alone overstates the evidence."""
    ids = confirm_ids(rt, dev_ids)
    if not ids:
        evidence["decision"], evidence["reason"] = "reject", "no fresh dev items left to confirm on"
        evidence["confirm"] = {"n": 0}
        return None
    tasks = [rt.store.get_task(t) for t in ids]
    inc = evaluate_rows(rt, incumbent, tasks, split="dev", cycle=cycle, phase="confirm")
    cand = evaluate_rows(rt, rt.store.get_policy(evidence["candidate_id"]), tasks, split="dev",
                         cycle=cycle, phase="confirm")
    ev = compare([cand[t][0] for t in ids], [inc[t][0] for t in ids],
                 samples=rt.settings.loop.bootstrap_samples, seed=cycle)
    evidence["confirm"] = {"n": len(ids), "task_ids": ids, **{k: ev[k] for k in (
        "delta", "ci_low", "ci_high", "p_value", "candidate_acc", "incumbent_acc") if k in ev}}
    if ev["delta"] > rule.min_delta and ev["p_value"] < rule.significance:
        evidence["reason"] = (f"{evidence['reason']}; confirmed on {len(ids)} fresh dev items "
                              f"(delta {ev['delta']:+.3f}, p {ev['p_value']:.4f})")
        return index
    evidence["decision"] = "reject"
    evidence["reason"] = (f"not confirmed on {len(ids)} fresh dev items: delta {ev['delta']:+.3f}, "
                          f"p {ev['p_value']:.4f} (needs a gain and p below {rule.significance})")
    return None
