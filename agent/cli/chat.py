"""`evolve chat`: an interactive session with the incumbent policy."""

from __future__ import annotations

import typer

from agent.cli.common import err, out, settings, store


def register(root: typer.Typer) -> None:
    @root.command("chat")
    def chat() -> None:
        """An interactive session with the current policy. /help lists the commands."""
        from agent.model.llm import make_model
        from agent.surfaces.chat import ChatSession, repl
        from tools.registry import default_tools

        s = settings()
        st = store(s)
        with err.status("loading the model"):
            model = make_model(s)  # a fine-tuned incumbent's own model id is built by agent.attempt.Solvers
        session = ChatSession(s, st, model, default_tools(s), console=out)
        raise typer.Exit(repl(session))
