"""`evolve demo`: the agent answering one word problem the way chat and the worker do.

The incumbent policy's solver (think, then act with the calculator) answers; its reasoning
and tool calls are shown as they happen; when the expected answer is known the demo checks
the answer with the same verifier the loop uses and says plainly whether it is right. (An
earlier bespoke tool loop printed 414 for this question, whose answer is 411.)
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from agent.config import Settings
from agent.model.llm import ChatModel, make_model

QUESTION = ("A shop sells pencils at 17 cents each. Tom buys 24 pencils and a 3 cent eraser. "
            "How many cents does he pay?")
ANSWER = "411"  # 17 * 24 + 3


def solve(settings: Settings, model: ChatModel, question: str, store, tools: list, on_event) -> Any:
    """The incumbent policy's solver on QUESTION (the same path as chat and the worker)."""
    from agent.attempt import build_context
    from agent.policy import PolicySpec, incumbent
    from agent.solver import Solver

    spec = PolicySpec.model_validate(incumbent(store).spec)
    solver = Solver(model, [t for t in tools if t.name in spec.tools], max_steps=spec.max_steps,
                    max_tokens_per_task=settings.loop.max_tokens_per_task)
    return solver.solve(question, spec, build_context(store, spec, question), on_event=on_event)


def check(question: str, expected: str, answer: str) -> tuple[bool, str]:
    from agent.tasks.base import verify_qa
    from memory.models import Task

    verdict = verify_qa(Task(id="demo", suite="demo", split="train", question=question, answer=expected), answer)
    return verdict.correct, verdict.detail


def run_demo(settings: Settings, question: str, console: Console, *, expected: str | None = None,
             model: ChatModel | None = None, store=None, tools: list | None = None) -> int:
    """Returns 0 when the answer is right (or no answer is expected), 1 when it is wrong."""
    from agent.surfaces.chat import reasoning_line

    if expected is None and question == QUESTION:
        expected = ANSWER
    if store is None:
        from memory.store import Store

        store = Store(settings)
    if tools is None:
        from tools.calculator import calculator

        tools = [calculator]
    console.print(f"[bold]model[/bold] {escape(settings.model.backend)}:{escape(settings.model.model)}")
    if model is None:
        with console.status("loading the model (first run assembles and verifies the weights)"):
            model = make_model(settings)
    console.print(f"[dim]fingerprint {escape(model.fingerprint)}[/dim]")
    console.print(f"[bold]question[/bold] {escape(question)}")

    def show(kind: str, data: dict) -> None:
        if kind == "thought" and reasoning_line(str(data.get("text", ""))):
            console.print(f"[dim]thinking[/dim] {escape(reasoning_line(str(data['text']), 200))}")
        elif kind == "action" and data.get("action") != "final_answer":
            console.print(f"[cyan]call[/cyan] {escape(str(data['action']))}({escape(str(data.get('input', '')))})")
        elif kind == "observation":
            console.print(f"  [cyan]→[/cyan] {escape(' '.join(str(data.get('content', '')).split())[:200])}")

    with console.status("working"):
        result = solve(settings, model, question, store, tools, show)
    answer = result.final_answer or "(no answer)"
    console.print(f"[green bold]answer[/green bold] {escape(answer)}")
    code = 0
    if expected is not None:
        right, detail = check(question, expected, result.final_answer)
        console.print(f"[bold]{'right' if right else 'wrong'}[/bold]: {escape(detail)}")
        code = 0 if right else 1
    u = model.usage
    console.print(f"[dim]{u.calls} model calls, {u.prompt_tokens} prompt + {u.completion_tokens} "
                  f"completion tokens, {u.latency_s:.1f}s in the model[/dim]")
    return code
