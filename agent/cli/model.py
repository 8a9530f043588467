"""`evolve model info|ask` and `evolve demo`: the model backend on its own."""

from __future__ import annotations

import typer

from agent.cli.common import check_text, err, out, plain, settings

app = typer.Typer(no_args_is_help=True, help="The model backend: inspect and try it.")


@app.command("info")
def model_info() -> None:
    """Show the configured model, where its weights are and their hash."""
    s = settings()
    if s.model.backend == "openai":
        from agent.model.llm import OpenAIModel

        m = OpenAIModel(s.model, cache_path=s.home / "endpoints.json")
        out.print_json(data=m.describe())  # probes the endpoint's structured-output form once
        return
    from agent.model import local_model

    out.print_json(data={"backend": "embedded", **local_model.describe(s)})


@app.command("ask")
def model_ask(prompt: str, stream: bool = typer.Option(True, help="Stream tokens as they come.")) -> None:
    """Send one prompt to the configured model and print the answer."""
    from agent.model.llm import make_model

    prompt = check_text(prompt, what="prompt")
    model = make_model(settings())
    messages = [{"role": "user", "content": prompt}]
    if stream:
        for piece in model.stream(messages):
            out.print(plain(piece), end="", markup=False, highlight=False)
        out.print()
    else:
        out.print(plain(model.complete(messages).text), markup=False, highlight=False)
    err.print(f"[dim]{model.usage.prompt_tokens} prompt + {model.usage.completion_tokens} completion "
              f"tokens in {model.usage.latency_s:.2f}s · {model.fingerprint}[/dim]")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="model")

    @root.command()
    def demo(
        question: str = typer.Argument(None, help="A word problem (default: the pencil problem, answer 411)."),
        answer: str = typer.Option(None, help="The expected answer, to check the agent's against."),
    ) -> None:
        """Solve one word problem the way chat and the worker do, and check the answer."""
        from agent.surfaces.demo import QUESTION, run_demo

        text = check_text(question, what="question") if question else QUESTION
        raise typer.Exit(run_demo(settings(), text, out, expected=answer))
