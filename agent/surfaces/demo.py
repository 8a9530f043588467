"""`evolve demo`: the model layer answering a word problem through a tool-call schema."""

from __future__ import annotations

from rich.console import Console

from agent.config import Settings
from agent.model.llm import ChatModel, make_model

SYSTEM = (
    "You solve arithmetic word problems. First call the calculator with one expression that "
    "computes the answer. After you see the calculator's result, reply with the final number "
    'only: {"tool": "reply", "content": "<number>"}.'
)


def solve_with_calculator(model: ChatModel, question: str, max_steps: int = 4):
    """Yield (event, text) pairs while the model works; returns when it replies."""
    from tools.calculator import calculator

    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    tools = [calculator.openai_schema()]
    for step in range(max_steps):
        # The first turn must call the tool: left free, the 0.5B model guessed a number instead.
        result = model.complete(messages, tools=tools, max_tokens=128,
                                tool_choice="required" if step == 0 else "auto")
        if not result.tool_calls:
            yield "answer", result.text
            return
        call = result.tool_calls[0]
        observation = calculator.invoke(call.arguments)
        yield "call", f"{call.name}({call.arguments}) -> {observation.content}"
        messages.append({"role": "assistant", "content": "", "tool_calls": [call.as_message_part()]})
        messages.append({"role": "tool", "name": call.name, "tool_call_id": call.id,
                         "content": observation.content})
        # Small models loop on the tool unless told how to finish (measured on the 0.5B).
        messages.append({"role": "user", "content": 'If that result answers the question, reply now: '
                                                    '{"tool": "reply", "content": "<number>"}.'})
    yield "answer", "(no answer within the step budget)"


def run_demo(settings: Settings, question: str, console: Console) -> int:
    console.print(f"[bold]model[/bold] {settings.model.backend}:{settings.model.model}")
    with console.status("loading the model (first run assembles and verifies the weights)"):
        model = make_model(settings)
    console.print(f"[dim]fingerprint {model.fingerprint}[/dim]")
    console.print(f"[bold]question[/bold] {question}")
    for event, text in solve_with_calculator(model, question):
        style = "cyan" if event == "call" else "green bold"
        console.print(f"[{style}]{event}[/{style}] ", end="")
        console.print(text, markup=False, highlight=False)
    u = model.usage
    console.print(f"[dim]{u.calls} model calls, {u.prompt_tokens} prompt + {u.completion_tokens} "
                  f"completion tokens, {u.latency_s:.1f}s in the model[/dim]")
    return 0
