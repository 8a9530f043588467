"""`evolve report`: the self-contained HTML report."""

from __future__ import annotations

from pathlib import Path

import typer

from agent.cli.common import out, settings, store


def register(root: typer.Typer) -> None:
    @root.command("report")
    def report(
        output: Path = typer.Option(Path("evolve-report.html"), "--out", "-o", help="Where to write the HTML file."),
    ) -> None:
        """Write one self-contained HTML report: accuracy per run and cycle, promotions, ratings, costs, memory."""
        from agent.surfaces.report import write_report

        s = settings()
        try:
            path = write_report(store(s), output)
        except OSError as exc:
            from agent.errors import InputError

            raise InputError(f"--out {str(output)!r} cannot be written: {exc.strerror or exc}") from None
        out.print(f"wrote {path} ({path.stat().st_size:,} bytes); open it in a browser", markup=False)
