"""`evolve tool calc|python|fetch`: the agent's tools from the shell. A failing tool exits non-zero."""

from __future__ import annotations

import sys

import typer

from agent.cli.common import check_text, plain, read_user_text, settings

app = typer.Typer(no_args_is_help=True, help="Run the agent's tools from the shell.")


@app.command("calc")
def tool_calc(expression: str) -> None:
    """Evaluate an arithmetic expression with the agent's calculator."""
    from tools.registry import main_calc

    code, text = main_calc(check_text(expression, what="expression"))
    _emit(code == 0, text)
    raise typer.Exit(code)


def _emit(ok: bool, text: str) -> None:
    """Tool output verbatim on stdout (never re-wrapped); a failure as one line on stderr."""
    if ok:
        sys.stdout.write(plain(text).rstrip("\n") + "\n")
    else:
        sys.stderr.write(" ".join(plain(text).split()) + "\n")


@app.command("python")
def tool_python(file: str = typer.Argument(..., help="A Python file, or - for standard input.")) -> None:
    """Run a Python program in the OS-isolated sandbox."""
    from tools.registry import main_python

    code_text = read_user_text(file, what="Python file")
    code, text = main_python(code_text, settings())
    # A program that ran (even one that failed) prints its report; a sandbox that cannot run is one line.
    _emit(code != 2, text)
    raise typer.Exit(code)


@app.command("fetch")
def tool_fetch(url: str) -> None:
    """Fetch a web page through the SSRF-guarded browser and print its text."""
    from tools.registry import main_fetch

    code, text = main_fetch(check_text(url, what="URL"), settings())
    _emit(code == 0, text)
    raise typer.Exit(code)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="tool")
