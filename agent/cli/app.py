"""The `evolve` command line: the root app, its version and the entry point.

Commands live in one module per noun (model, tool, improve, evaluate, policy, memory, worker,
chat, report); heavy imports stay inside commands so `--help` is instant. `run(argv)` returns
the exit code, `main` exits with it. Every error a user can cause ends in ONE line on stderr:
usage mistakes exit 2, configuration and input problems exit 2, a busy lock exits 3.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from agent.cli import chat, evaluate, improve, memory, model, policy, report, tool, worker

CONTEXT = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(add_completion=False, no_args_is_help=True, context_settings=CONTEXT,
                  pretty_exceptions_enable=False,
                  help="evolve: a self-evolving LLM agent that learns from its own experience.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"evolve {version('evolve')}")
        except PackageNotFoundError:
            print("evolve (not installed; run from a source tree)")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                      help="Print the version and exit."),
) -> None:
    """evolve: a self-evolving LLM agent that learns from its own experience."""


for _module in (model, tool, improve, evaluate, policy, memory, worker, chat, report):
    _module.register(app)

from agent.cli.serve import serve as _serve  # noqa: E402  (light: the server loads inside it)

app.command("serve")(_serve)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run(argv: Optional[list[str]] = None) -> int:
    """Run the app on ARGV (default: sys.argv[1:]) and return its exit code; never raises for
    anything a user can cause."""
    from agent.errors import USER_ERRORS, LockBusy

    try:
        code = app(args=argv, prog_name="evolve", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        sys.stderr.write("aborted\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except LockBusy as exc:
        sys.stderr.write(f"error: {_one_line(exc)}\n")
        return 3
    except USER_ERRORS as exc:
        # One line, unwrapped, so scripts and people can both read it.
        sys.stderr.write(f"error: {_one_line(exc)}\n")
        return 2
    except typer.TyperException as exc:  # usage errors from the (vendored) click parser
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())
            return 2
        where = f"`{ctx.command_path} --help`" if ctx is not None else "`evolve --help`"
        sys.stderr.write(f"error: {_one_line(exc.format_message())} ({where} shows the usage)\n")
        return getattr(exc, "exit_code", 2) or 2
    return code if isinstance(code, int) else 0


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point."""
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
