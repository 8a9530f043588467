"""Progress of long commands: bars on a terminal, one plain line per step in a log."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from agent.cli.common import Bars
from tests.fakes import TickClock


def test_a_log_gets_one_line_per_step_with_the_elapsed_time() -> None:
    buf = io.StringIO()
    bars = Bars(Progress(console=Console(file=buf, force_terminal=False, width=200)),
                clock=TickClock(step=1.0))
    bars("acquire", 1, 2)
    bars("evaluate p2-abc\x1b]0;pwned\x07", 1, 67)  # a phase name never retitles the terminal
    assert buf.getvalue().splitlines() == ["acquire 1/2 (1 s)", "evaluate p2-abc 1/67 (2 s)"]


def test_a_terminal_gets_bars_not_lines() -> None:
    buf = io.StringIO()
    progress = Progress(console=Console(file=buf, force_terminal=True, width=80))
    bars = Bars(progress, clock=TickClock())
    bars("acquire", 1, 2)
    assert [t.completed for t in progress.tasks] == [1] and buf.getvalue() == ""
