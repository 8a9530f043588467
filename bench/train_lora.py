"""In-weight self-training measured: a LoRA from the embedded model's own verified GSM8K train
solutions, against its base policy on dev and a seeded test subset, with paired 95% CIs.

    python bench/train_lora.py                                   # 0.5B default, small sizes
    python bench/train_lora.py --model smollm2-135m --train 8 --dev 8 --test 0 --steps 10
    python bench/train_lora.py --train 60 --dev 50 --test 50 --steps 40 --home /tmp/bench-lora

Phases, each resumable (episodes and evaluations are stored under --home by run key, the
training run checkpoints): (1) the base policy solves --train GSM8K train tasks, the verifier
keeps the passes; (2) a LoRA is trained on them (agent/model/adapters.py); (3) base and
adapter policies answer the same dev (and test) items; paired bootstrap CI and McNemar p on
the per-item differences. Prints training time, tokens/s, peak RSS of this process (training
dominates it) and the numbers, one `key: value` per line, for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config import load_settings  # noqa: E402
from agent.attempt import run_attempt  # noqa: E402
from agent.loop.acquire import sampling_policy  # noqa: E402
from agent.loop.evaluate import dev_tasks, evaluate_policy  # noqa: E402
from agent.loop.runtime import make_runtime  # noqa: E402
from agent.loop.stats import compare  # noqa: E402
from agent.model import adapters  # noqa: E402
from agent.model.train import TrainConfig, print_progress  # noqa: E402
from agent.policy import create_candidate, ensure_initial, spec_of  # noqa: E402


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # Linux: KiB


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--home", default="/tmp/evolve-bench-lora")
    ap.add_argument("--train", type=int, default=40, help="GSM8K train tasks the base policy attempts")
    ap.add_argument("--dev", type=int, default=30)
    ap.add_argument("--test", type=int, default=30, help="seeded test subset (0: skip)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for llama.cpp and torch (0: from free cores)")
    ap.add_argument("--samples", type=int, default=0,
                    help="extra sampled attempts per train task (distinct verified solutions)")
    ap.add_argument("--temperature", type=float, default=0.7, help="temperature of the sampled attempts")
    ap.add_argument("--rationalise", action="store_true",
                    help="STaR-rationalise train tasks no attempt solved (marked in provenance)")
    args = ap.parse_args()

    settings = load_settings(home=Path(args.home), model={"model": args.model, "seed": args.seed, "n_threads": args.threads},
                             loop={"suite": "gsm8k"})
    settings.ensure_dirs()
    rt = make_runtime(settings, suite="gsm8k",
                      progress=lambda phase, done, total: sys.stderr.write(f"\r{phase} {done}/{total}   "))
    base = ensure_initial(rt.store)
    spec = spec_of(base)
    started = time.perf_counter()

    train_tasks = rt.suite.load("train", limit=args.train, seed=args.seed)
    rt.store.upsert_tasks(train_tasks)
    solver = rt.solver(base)
    sampler = sampling_policy(base, args.temperature)
    passed = sampled_passed = rationalised = 0
    for i, task in enumerate(train_tasks):
        ep = run_attempt(store=rt.store, solver=solver, suite=rt.suite, task=task, policy=base,
                         run_key=f"bench-lora/acquire/{task.id}/s{args.seed}", source="acquire")
        passed += ep.verdict == "pass"
        solved = ep.verdict == "pass"
        for k in range(args.samples):
            sp = run_attempt(store=rt.store, solver=solver, suite=rt.suite, task=task, policy=sampler,
                             run_key=f"bench-lora/sample/{task.id}/s{args.seed}/{k}", source=adapters.SAMPLED_SOURCE)
            sampled_passed += sp.verdict == "pass"
            solved |= sp.verdict == "pass"
        if args.rationalise and not solved:
            rationalised += adapters.rationalised_episode(
                solver.model, rt.suite, rt.store, task, base, rt.tools,
                run_key=f"bench-lora/rationalise/{task.id}/s{args.seed}") is not None
        rt.progress("acquire", i + 1, len(train_tasks))
    acquire_s = time.perf_counter() - started
    examples = adapters.verified_examples(rt.store, rt.tools)
    by_source = {s: sum(e.source == s for e in examples) for s in ("verified", "sampled", "rationalised")}
    print(f"\nmodel: {args.model}\nseed: {args.seed}\ntrain_attempted: {len(train_tasks)}\n"
          f"train_verified: {passed}\nsampled_attempts: {len(train_tasks) * args.samples} "
          f"(passed {sampled_passed}, T={args.temperature})\nrationalised: {rationalised}\n"
          f"examples: {len(examples)} {by_source} from {len({e.task_id for e in examples})} tasks\n"
          f"acquire_s: {acquire_s:.0f}")
    if not examples:
        print("no verified train solutions: nothing to train on")
        return 1

    cfg = TrainConfig(steps=args.steps, learning_rate=args.lr, rank=args.rank, alpha=2.0 * args.rank,
                      batch_size=args.batch, max_len=args.max_len, seed=args.seed, threads=args.threads)
    t0 = time.perf_counter()
    ref, result = adapters.train_and_store(settings, examples, cfg, progress=print_progress)
    train_wall = time.perf_counter() - t0
    print(f"adapter: {ref}\ntrain_config: {cfg.model_dump_json()}\ntrain_steps: {result.steps} "
          f"(resumed from {result.resumed_from})\ntrain_wall_s: {train_wall:.0f}\n"
          f"train_step_s: {result.seconds / max(1, result.steps - result.resumed_from):.1f}\n"
          f"train_tokens_per_s: {result.tokens_per_s:.1f}\nloss_first_last: "
          f"{result.losses[0]:.3f} {result.losses[-1]:.3f}\npeak_rss_gb: {_peak_rss_gb():.2f}")

    tuned = create_candidate(rt.store, base, spec.model_copy(update={"adapter": ref}), note="bench LoRA")
    for split, n in (("dev", args.dev), ("test", args.test)):
        if n <= 0:
            continue
        tasks = dev_tasks(rt, split=split, limit=n, seed=args.seed)
        t1 = time.perf_counter()
        a = evaluate_policy(rt, base, tasks, split=split, seed=args.seed, phase=f"{split} base")
        b = evaluate_policy(rt, tuned, tasks, split=split, seed=args.seed, phase=f"{split} lora")
        ids = [t.id for t in tasks]
        stats = compare([b[i] for i in ids], [a[i] for i in ids], seed=args.seed)
        print(f"\n{split}: n={stats['n']} base={stats['incumbent_acc']:.3f} lora={stats['candidate_acc']:.3f} "
              f"delta={stats['delta']:+.3f} ci95=[{stats['ci_low']:+.3f}, {stats['ci_high']:+.3f}] "
              f"wins={stats['wins']} losses={stats['losses']} p={stats['p_value']:.3f} "
              f"eval_s={time.perf_counter() - t1:.0f}")
    print(f"total_wall_s: {time.perf_counter() - started:.0f}\npeak_rss_gb: {_peak_rss_gb():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
