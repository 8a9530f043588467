"""The `evolve` command line. Heavy imports stay inside commands so `--help` is instant."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from agent.config import ConfigError, Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="evolve: a self-evolving LLM agent that learns from its own experience.")
model_app = typer.Typer(no_args_is_help=True, help="The model backend: inspect and try it.")
tool_app = typer.Typer(no_args_is_help=True, help="Run the agent's tools from the shell.")
memory_app = typer.Typer(no_args_is_help=True, help="Inspect and maintain the experience store.")
policy_app = typer.Typer(no_args_is_help=True, help="List, show and roll back policies.")
app.add_typer(model_app, name="model")
app.add_typer(tool_app, name="tool")
app.add_typer(memory_app, name="memory")
app.add_typer(policy_app, name="policy")

# Piped output (logs, CI) gets a wide console so result tables are not cut to 80 columns.
out = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True)


def _settings() -> Settings:
    settings = load_settings()
    settings.ensure_dirs()
    return settings


# ---------------------------------------------------------------- model


@model_app.command("info")
def model_info() -> None:
    """Show the configured model, where its weights are and their hash."""
    settings = _settings()
    if settings.model.backend == "openai":
        from agent.model.llm import OpenAIModel

        m = OpenAIModel(settings.model, cache_path=settings.home / "endpoints.json")
        out.print_json(data=m.describe())  # probes the endpoint's structured-output form once
        return
    from agent.model import local_model

    out.print_json(data={"backend": "embedded", **local_model.describe(settings)})


@model_app.command("ask")
def model_ask(prompt: str, stream: bool = typer.Option(True, help="Stream tokens as they come.")) -> None:
    """Send one prompt to the configured model and print the answer."""
    from agent.model.llm import make_model

    from tools.text import terminal_safe

    model = make_model(_settings())
    messages = [{"role": "user", "content": prompt}]
    if stream:
        for piece in model.stream(messages):
            out.print(terminal_safe(piece), end="", markup=False, highlight=False)
        out.print()
    else:
        out.print(terminal_safe(model.complete(messages).text), markup=False, highlight=False)
    err.print(f"[dim]{model.usage.prompt_tokens} prompt + {model.usage.completion_tokens} completion "
              f"tokens in {model.usage.latency_s:.2f}s · {model.fingerprint}[/dim]")


@app.command()
def demo(
    question: str = typer.Argument(
        "A shop sells pencils at 17 cents each. Tom buys 24 pencils and a 3 cent eraser. "
        "How many cents does he pay?",
    ),
) -> None:
    """Solve one word problem with the embedded model calling the calculator tool."""
    from agent.surfaces.demo import run_demo

    raise typer.Exit(run_demo(_settings(), question, out))


# ---------------------------------------------------------------- tools


@tool_app.command("calc")
def tool_calc(expression: str) -> None:
    """Evaluate an arithmetic expression with the agent's calculator."""
    from tools.registry import main_calc

    code, text = main_calc(expression)
    (out if code == 0 else err).print(text, markup=False, highlight=False)
    raise typer.Exit(code)


@tool_app.command("python")
def tool_python(file: str = typer.Argument(..., help="A Python file, or - for standard input.")) -> None:
    """Run a Python program in the OS-isolated sandbox."""
    from tools.registry import main_python

    code_text = sys.stdin.read() if file == "-" else Path(file).read_text()
    code, text = main_python(code_text, _settings())
    out.print(text, markup=False, highlight=False)
    raise typer.Exit(code)


@tool_app.command("fetch")
def tool_fetch(url: str) -> None:
    """Fetch a web page through the SSRF-guarded browser and print its text."""
    from tools.registry import main_fetch

    code, text = main_fetch(url, _settings())
    (out if code == 0 else err).print(text, markup=False, highlight=False)
    raise typer.Exit(code)


# ---------------------------------------------------------------- the loop


class _Bars:
    """Rich progress bars fed by the loop's (phase, done, total) callback."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(phase, total=total)
        self.progress.update(self.tasks[phase], completed=done, total=total)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=False)


@app.command()
def improve(
    suite: str = typer.Option(None, help="gsm8k, arith or code (default: settings' loop.suite)."),
    tasks: Optional[Path] = typer.Option(None, "--tasks", help="A user task file (JSONL); see docs/tasks.md."),
    cycles: int = typer.Option(None, help="Improvement cycles to run."),
    train: int = typer.Option(None, help="Train tasks attempted per cycle."),
    dev: int = typer.Option(None, help="Dev tasks the promotion gate evaluates on."),
    resume: bool = typer.Option(False, "--resume", help="Finish the last interrupted run."),
    schedule: str = typer.Option(None, "--schedule", help='Run on a cron schedule, e.g. "0 3 * * *".'),
    overlap: str = typer.Option("skip", help="When a scheduled run is due while one runs: skip or wait."),
) -> None:
    """Run self-improvement cycles: acquire, refine, update, evaluate, promote or reject."""
    from agent.loop.graph import run_improve

    settings = _settings()

    def job() -> dict:
        with _progress() as progress:
            summary = run_improve(settings, suite=suite, cycles=cycles, train=train, dev=dev,
                                  tasks_file=tasks, resume=resume, progress=_Bars(progress))
        _print_summary(summary)
        return summary

    from agent.surfaces.schedule import LockBusy, improvement_lock, run_scheduled

    if schedule:
        run_scheduled(settings, schedule, job, overlap=overlap)  # takes the lock per run
        return
    try:
        # Shared with the worker and scheduled runs: two improvement runs never overlap.
        with improvement_lock(settings, overlap=overlap, what="evolve improve",
                              on_wait=lambda h: err.print("waiting for the running improvement to finish")):
            job()
    except LockBusy as exc:
        sys.stderr.write(f"skipped: another improvement run holds the lock ({exc}); use --overlap wait\n")
        raise typer.Exit(3)


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"run {summary['run_id']}")
    for col in ("cycle", "train pass", "exemplars+", "insight ops", "candidate", "dev inc→cand", "Δ [95% CI]",
                "p", "decision"):
        table.add_column(col)
    for h in summary["history"]:
        ev = h.get("evaluate") or {}
        ref = h.get("refine") or {}
        acq = h.get("acquire") or {}
        ops = sum(ref.get(k, 0) for k in ("add", "agree", "edit", "remove"))
        table.add_row(
            str(h.get("cycle")), f"{acq.get('passed', 0)}/{acq.get('total', 0)}", str(ref.get("exemplar", 0) + ref.get("corrected", 0)),
            str(ops), (h.get("update") or {}).get("candidate_id", "-"),
            f"{ev['incumbent_acc']:.2f}→{ev['candidate_acc']:.2f}" if ev else "-",
            f"{ev['delta']:+.2f} [{ev['ci_low']:+.2f}, {ev['ci_high']:+.2f}]" if ev else "-",
            f"{ev['p_value']:.3f}" if ev else "-", h.get("decision", "-"))
    out.print(table)
    out.print(f"stopped: {summary['stop_reason']} · incumbent {summary['incumbent']} · "
              f"{summary['tokens']} tokens · {summary['elapsed_s']:.0f}s "
              f"({summary['model_seconds']:.0f}s in the model)")


@app.command("eval")
def eval_cmd(
    policy: list[str] = typer.Option(["incumbent"], "--policy",
                                     help="Policy id, 'incumbent' or 'initial'; repeat to compare on the same items."),
    split: str = typer.Option("test", help="test or dev (never train)."),
    suite: str = typer.Option(None, help="Task suite (default: settings' loop.suite)."),
    tasks: Optional[Path] = typer.Option(None, "--tasks", help="A user task file (JSONL)."),
    limit: int = typer.Option(None, help="Evaluate a seeded random subset of this size."),
    seed: int = typer.Option(0, help="Seed of the subset."),
) -> None:
    """Accuracy of one or more policies on held-out tasks, with 95% confidence intervals."""
    from agent.loop.evaluate import dev_tasks, evaluate_policy
    from agent.policy import ensure_initial
    from agent.loop.runtime import make_runtime
    from agent.loop.stats import compare, wilson_interval

    if split not in ("dev", "test"):
        raise ConfigError(f"--split {split!r}: evaluation uses held-out splits only (dev or test)")
    settings = _settings()
    suite_name = "file" if tasks else (suite or settings.loop.suite)
    rt = make_runtime(settings, suite=suite_name, tasks_file=tasks)
    ensure_initial(rt.store)
    items = dev_tasks(rt, split, limit=limit, seed=seed)
    if not items:
        raise ConfigError(f"suite {suite_name!r} has no {split} tasks")
    results = {}
    with _progress() as progress:
        rt.progress = _Bars(progress)
        for name in policy:
            pid = _policy_id(rt.store, name)
            results[pid] = evaluate_policy(rt, rt.store.get_policy(pid), items, split=split, seed=seed,
                                           phase="eval")
    ids = [t.id for t in items]
    for pid, res in results.items():
        k = sum(res.values())
        lo, hi = wilson_interval(k, len(ids))
        out.print(f"{pid}: {k}/{len(ids)} = {k / len(ids):.3f}  95% CI [{lo:.3f}, {hi:.3f}]  "
                  f"({suite_name} {split}, n={len(ids)}, seed={seed})")
    if len(results) >= 2:
        (a, ra), (b, rb) = list(results.items())[:2]
        ev = compare([rb[t] for t in ids], [ra[t] for t in ids], samples=settings.loop.bootstrap_samples)
        out.print(f"{b} - {a}: {ev['delta']:+.3f}  95% CI [{ev['ci_low']:+.3f}, {ev['ci_high']:+.3f}]  "
                  f"wins {ev['wins']} losses {ev['losses']}  McNemar p={ev['p_value']:.4f}")
    u = rt.model.usage
    out.print(f"[dim]{u.calls} model calls, {u.total_tokens} tokens, {u.latency_s:.0f}s in the model[/dim]")


def _policy_id(store, name: str) -> str:
    from agent.policy import ensure_initial

    if name == "incumbent":
        return ensure_initial(store).id
    if name == "initial":
        return min(store.policies(), key=lambda p: p.version).id
    if store.get_policy(name) is None:
        raise ConfigError(f"no policy {name!r}; `evolve policy list` shows the known ones")
    return name


# ---------------------------------------------------------------- policy


def _store():
    from memory.store import Store

    return Store(_settings())


@policy_app.command("list")
def policy_list() -> None:
    """All policies, newest first, with the incumbent marked."""
    from agent.policy import INCUMBENT

    store = _store()
    current = store.get_pointer(INCUMBENT)
    for p in sorted(store.policies(), key=lambda p: p.version, reverse=True):
        mark = "*" if p.id == current else " "
        spec = p.spec
        out.print(f"{mark} {p.id}  v{p.version}  parent={p.parent_id or '-'}  exemplars_k={spec.get('exemplars_k')} "
                  f"insights={len(spec.get('insights', []))}  {p.note}", markup=False)


@policy_app.command("show")
def policy_show(policy_id: str = typer.Argument("incumbent")) -> None:
    """Show one policy's full contents."""
    store = _store()
    pid = _policy_id(store, policy_id)
    p = store.get_policy(pid)
    out.print_json(data={"id": p.id, "version": p.version, "parent": p.parent_id, "digest": p.digest,
                         "spec": p.spec})


@policy_app.command("rollback")
def policy_rollback(to: str = typer.Option(None, help="Policy id to restore (default: the one the last "
                                                      "promotion replaced).")) -> None:
    """Move the incumbent back to an earlier policy."""
    from agent.policy import rollback

    row = rollback(_store(), to)
    out.print(f"incumbent {row.incumbent_before} -> {row.incumbent_after} (rolled back)")


# ---------------------------------------------------------------- memory


@memory_app.command("stats")
def memory_stats() -> None:
    """Counts of tasks, episodes and experiences by kind, split and trust."""
    out.print_json(data=_store().stats())


@memory_app.command("search")
def memory_search(text: str, k: int = typer.Option(5, help="How many results.")) -> None:
    """Experiences most similar to TEXT (all kinds, retrievable ones only)."""
    store = _store()
    for exp, score in store.search_scored(text, k):
        out.print(f"[bold]#{exp.id}[/bold] {exp.kind} {score:.3f} uses={exp.uses} "
                  f"usefulness={exp.usefulness:.2f}")
        out.print("  " + exp.content[:300].replace("\n", "\n  "), markup=False, highlight=False)


@memory_app.command("reindex")
def memory_reindex() -> None:
    """Rebuild the Chroma index from the database (the source of truth)."""
    n = _store().reindex()
    out.print(f"reindexed {n} experiences")


# ---------------------------------------------------------------- entry point


def _register_surfaces() -> None:
    from agent.cli.surfaces import register

    register(app)


_register_surfaces()

from agent.cli.serve import serve as _serve  # noqa: E402  (light: the server loads inside it)

app.command("serve")(_serve)


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: configuration and integrity problems print one line, no traceback."""
    from agent.errors import USER_ERRORS

    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except USER_ERRORS as exc:
        # One line, unwrapped, so scripts and people can both read it.
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own formatting
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
