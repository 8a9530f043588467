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

out = Console()
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
        from agent.llm import OpenAIModel

        m = OpenAIModel(settings.model)
        out.print_json(data={"backend": "openai", "model": m.name, "fingerprint": m.fingerprint})
        return
    from agent import local_model

    out.print_json(data={"backend": "embedded", **local_model.describe(settings)})


@model_app.command("ask")
def model_ask(prompt: str, stream: bool = typer.Option(True, help="Stream tokens as they come.")) -> None:
    """Send one prompt to the configured model and print the answer."""
    from agent.llm import make_model

    model = make_model(_settings())
    messages = [{"role": "user", "content": prompt}]
    if stream:
        for piece in model.stream(messages):
            out.print(piece, end="", markup=False, highlight=False)
        out.print()
    else:
        out.print(model.complete(messages).text, markup=False, highlight=False)
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
    from agent.demo import run_demo

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
    code, text = main_python(_settings(), code_text)
    out.print(text, markup=False, highlight=False)
    raise typer.Exit(code)


@tool_app.command("fetch")
def tool_fetch(url: str) -> None:
    """Fetch a web page through the SSRF-guarded browser and print its text."""
    from tools.registry import main_fetch

    code, text = main_fetch(_settings(), url)
    (out if code == 0 else err).print(text, markup=False, highlight=False)
    raise typer.Exit(code)


# ---------------------------------------------------------------- entry point


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: configuration and integrity problems print one line, no traceback."""
    from agent.errors import EvolveError

    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (ConfigError, EvolveError) as exc:
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
