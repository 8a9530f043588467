"""The `evolve` command line, split by noun; `main` is the console script's entry point."""

from agent.cli.app import main

__all__ = ["main"]
