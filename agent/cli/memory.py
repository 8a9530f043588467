"""`evolve memory stats|search|reindex`."""

from __future__ import annotations

import typer

from agent.cli.common import check_text, out, plain, store

app = typer.Typer(no_args_is_help=True, help="Inspect and maintain the experience store.")


@app.command("stats")
def memory_stats() -> None:
    """Counts of tasks, episodes and experiences by kind, split and trust."""
    out.print_json(data=store().stats())


@app.command("search")
def memory_search(text: str, k: int = typer.Option(5, help="How many results.")) -> None:
    """Experiences most similar to TEXT (all kinds, retrievable ones only)."""
    st = store()
    for exp, score in st.search_scored(check_text(text, what="query"), k):
        out.print(f"#{exp.id} {exp.kind} {score:.3f} uses={exp.uses} usefulness={exp.usefulness:.2f}",
                  markup=False, highlight=False)
        out.print("  " + plain(exp.content[:300]).replace("\n", "\n  "), markup=False, highlight=False)


@app.command("reindex")
def memory_reindex() -> None:
    """Rebuild the Chroma index from the database (the source of truth)."""
    out.print(f"reindexed {store().reindex()} experiences")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="memory")
