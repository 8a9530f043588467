"""What every `evolve` command shares: the consoles, settings and store, progress bars, and
the helpers that turn a bad file or argument into one `error:` line."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from agent.config import ConfigError, Settings, load_settings
from agent.errors import InputError

# Piped output (logs, CI) gets a wide console so result tables are not cut to 80 columns.
out = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True)


def settings() -> Settings:
    """Settings with their directories made; an unwritable home is a config error, not a traceback."""
    s = load_settings()
    try:
        s.ensure_dirs()
    except OSError as exc:
        raise ConfigError(f"EVOLVE_HOME={str(s.home)!r} cannot be used ({exc.strerror or exc}); "
                          f"point EVOLVE_HOME at a writable directory") from None
    return s


def store(s: Settings | None = None):
    from memory.store import Store

    return Store(s or settings())


def read_user_text(path: str, *, what: str = "file") -> str:
    """The UTF-8 text of PATH (or of stdin for `-`), or an InputError saying what is wrong."""
    if path == "-":
        data = sys.stdin.buffer.read()
        where = "standard input"
    else:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{what} {path!r} does not exist or is not a file")
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise InputError(f"{what} {path!r} cannot be read: {exc.strerror or exc}") from None
        where = repr(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {where} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def check_text(text: str, *, what: str = "question") -> str:
    """Command-line text with bytes that are not UTF-8 (Python keeps them as surrogates) refused."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"the {what} contains bytes that are not UTF-8 text; retype it or fix the "
                         f"terminal's encoding (locale)") from None
    return text


def plain(text: str) -> str:
    """Untrusted text (model output, stored answers, pages) without escape sequences or control
    characters, so it cannot retitle, recolour or rewrite the terminal."""
    from tools.text import terminal_safe

    return terminal_safe(text)


class Bars:
    """Rich progress bars fed by the loop's (phase, done, total) callback. Where stderr is not a
    terminal (a log file, nohup, a service) rich draws nothing until the end, so each step is one
    plain line instead: a long run on a slow model shows that it is alive and how far it got."""

    def __init__(self, progress, clock=None) -> None:
        import time

        self.progress = progress
        self.tasks: dict[str, int] = {}
        self.clock = clock or time.monotonic
        self.started = self.clock()
        self.lines = not progress.console.is_terminal

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.lines:
            self.progress.console.print(f"{plain(phase)} {done}/{total} ({self.clock() - self.started:.0f} s)",
                                        markup=False, highlight=False)
            return
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(phase, total=total)
        self.progress.update(self.tasks[phase], completed=done, total=total)


def progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=False)
