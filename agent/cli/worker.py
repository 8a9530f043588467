"""`evolve submit`, `evolve run` and `evolve status`: the queue, the long-running worker, and
what it has been doing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from agent.cli.common import check_text, out, plain, read_user_text, settings, store


def register(root: typer.Typer) -> None:
    register_items(root)

    @root.command("submit")
    def submit(
        question: Optional[str] = typer.Argument(None, help="The question to queue. Use - to read it from stdin."),
        tasks: Optional[Path] = typer.Option(None, "--tasks", help="Queue every task of a JSONL file (docs/tasks.md)."),
        answer: str = typer.Option("", help="The expected answer, if you know it; without one the "
                                            "episode waits for feedback (evolve rate)."),
    ) -> None:
        """Queue a question (or a JSONL file of tasks) for the worker (`evolve run`)."""
        from agent.surfaces.worker import InputError, submit_file, submit_question

        if (question is None) == (tasks is None):
            raise InputError('give either a question (evolve submit "What is 17*24?") or --tasks FILE.jsonl')
        st = store()
        if tasks is not None:
            items = submit_file(st, tasks)
            out.print(f"queued {len(items)} task(s) from {tasks} (items {items[0].id}..{items[-1].id})",
                      markup=False, highlight=False)
        else:
            text = read_user_text("-", what="question") if question == "-" else check_text(question)
            item = submit_question(st, text, answer=check_text(answer, what="answer"))
            out.print(f"queued item {item.id} (task {item.task_id})", markup=False, highlight=False)

    @root.command("run")
    def run(
        improve_every: int = typer.Option(0, help="Run an improvement cycle after every N episodes (0: never)."),
        schedule: Optional[str] = typer.Option(None, help='Also run one on a cron schedule, e.g. "0 3 * * *".'),
        suite: Optional[str] = typer.Option(None, help="Suite the improvement runs use (default: loop.suite)."),
        cycles: int = typer.Option(1, help="Cycles per improvement run."),
        train: Optional[int] = typer.Option(None, help="Train tasks per cycle of an improvement run."),
        dev: Optional[int] = typer.Option(None, help="Dev tasks the gate evaluates on in an improvement run."),
        task_timeout: float = typer.Option(600.0, help="Seconds one task may take (checked between steps)."),
        poll: float = typer.Option(2.0, help="Seconds between queue checks when it is empty."),
        drain: bool = typer.Option(False, help="Exit once the queue is empty instead of waiting for more."),
        quiet: bool = typer.Option(False, help="Do not echo the JSON log lines to stdout."),
    ) -> None:
        """The long-running worker: solve queued tasks, store episodes, improve by rule.

        SIGTERM or Ctrl-C finishes the current task and exits 0; a restart resumes. Logs go to
        <home>/logs/worker.jsonl, the heartbeat to <home>/worker/heartbeat.json."""
        from agent.model.llm import make_model
        from agent.surfaces.improve import improve_job
        from agent.surfaces.schedule import parse_cron
        from agent.surfaces.worker import JsonLog, Worker, check_no_worker, log_path, worker_sandbox

        if schedule:
            parse_cron(schedule)  # a typo fails before the model is loaded, not after
        s = settings()
        check_no_worker(s)
        st = store(s)
        model = make_model(s)
        sandbox = worker_sandbox(s)
        job = None
        if improve_every or schedule:
            job = improve_job(s, suite=suite or s.loop.suite, cycles=cycles, train=train, dev=dev, model=model,
                              store=st, sandbox=sandbox)
        log = JsonLog(log_path(s), echo=None if quiet else (lambda line: print(line, flush=True)))
        worker = Worker(s, st, model, improve=job, improve_every=improve_every, schedule=schedule,
                        task_timeout_s=task_timeout, poll_s=poll, exit_when_empty=drain, log=log, sandbox=sandbox)
        raise typer.Exit(worker.run())

    @root.command("status")
    def status_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
        """The queue, the worker's heartbeat and answers, the incumbent policy, the last cycles and errors."""
        from agent.surfaces.worker import status

        s = settings()
        data = status(store(s), s)
        if as_json:
            print(json.dumps(data, indent=2, default=str))
            return
        print_status(data)


def print_status(data: dict) -> None:
    q = data["queue"]
    worker = data["worker"]
    say = lambda text: out.print(text, markup=False, highlight=False)  # noqa: E731  (stored text is data)
    say(f"home {data['home']}")
    beat = f" (pid {worker.get('pid')}, last beat {worker.get('at')})" if worker.get("pid") else ""
    say(f"worker {worker['state']}{beat}")
    if worker.get("current"):
        say(f"  working on {worker['current']}")
    say(f"queue {q['queued']} queued · {q['running']} running · {q['done']} done · "
        f"{q['error']} error · {data['pending_feedback']} awaiting feedback")
    inc = data["incumbent"]
    if inc:
        say(f"incumbent {inc['id']} (v{inc['version']}, {inc['insights']} insights, "
            f"exemplars_k={inc['exemplars_k']}, tools {', '.join(inc['tools'])})")
    else:
        say("incumbent none yet (created on the first run)")
    if data.get("answers"):
        t = Table("item", "question", "answer", "verdict", title="worker's last answers")
        for a in data["answers"]:
            t.add_row(str(a["item"]), plain(a["question"][:60]), plain(a["answer"][:40]), a["verdict"])
        out.print(t)
    if data["cycles"]:
        t = Table("cycle", "run", "status", "stop reason", "tokens", "started", title="last cycles")
        for c in data["cycles"]:
            t.add_row(str(c["number"]), c["run"], c["status"], c["stop_reason"], str(c["tokens"]), str(c["started"]))
        out.print(t)
    if data["promotions"]:
        t = Table("cycle", "decision", "candidate", "delta", "95% CI", title="last decisions")
        for p in data["promotions"]:
            t.add_row(str(p["cycle"]), p["decision"], p["candidate"], f"{p['delta']:+.3f}",
                      f"[{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}]")
        out.print(t)
    if data["errors"]:
        say("recent errors")
        for e in data["errors"]:
            where = f"item {e['item']}" if "item" in e else f"episode {e['episode']}"
            say(f"  {where} {e['task']}: {plain(e['error'])}")
    sys.stdout.flush()


def register_items(root: typer.Typer) -> None:
    @root.command("show")
    def show_cmd(
        item: str = typer.Argument(..., help="A queue item number, or an episode as e<id>."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """One item: the question, the answer, the verdict and the trajectory that led there."""
        from agent.surfaces.items import show

        data = show(store(), check_text(item, what="item"))
        if as_json:
            print(json.dumps(data, indent=2, default=str))
            return
        say = lambda text: out.print(plain(text), markup=False, highlight=False)  # noqa: E731
        where = f"item {data['item']} ({data['status']})" if data["item"] else f"episode {data['episode']}"
        say(f"{where} · {data['source'] or '-'} · task {data['task']}")
        say(f"question: {data['question']}")
        if data["reference"]:
            say(f"reference: {data['reference']}")
        say(f"answer: {data['answer'] or '-'}   verdict: {data['verdict']}")
        if data["feedback"]:
            say(f"feedback: {data['feedback']}")
        if data["error"]:
            say(f"error: {data['error']}")
        for step in data["trajectory"]:
            kind = step.get("kind") or step.get("type") or "?"
            body = step.get("text") or step.get("content") or f"{step.get('action', '')}({step.get('input', '')})"
            say(f"  {kind:<11} {' '.join(str(body).split())[:300]}")

    @root.command("rate")
    def rate_cmd(
        item: str = typer.Argument(..., help="A queue item number, or an episode as e<id>."),
        verdict: str = typer.Argument(..., help="good or bad."),
        answer: str = typer.Option("", help="The right answer, when you know it."),
        why: str = typer.Option("", help="Why, in a few words."),
    ) -> None:
        """Rate an answer; rated work is what the next improvement cycle learns from."""
        from agent.errors import InputError
        from agent.surfaces.items import rate

        if verdict not in ("good", "bad"):
            raise InputError(f"verdict {verdict!r}: say good or bad, e.g. evolve rate 3 good")
        ep = rate(store(), check_text(item, what="item"), verdict == "good", answer=check_text(answer, what="answer"),
                  why=check_text(why, what="reason"))
        out.print(f"episode {ep.id} rated {verdict}; the next improvement cycle learns from it"
                  if verdict == "good" else f"episode {ep.id} rated bad; it will never be used as an example",
                  markup=False)
