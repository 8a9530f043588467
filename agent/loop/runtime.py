"""What the loop's nodes share that cannot live in checkpointed state: model, store, tools."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from agent.config import Settings
from agent.attempt import Solvers
from agent.model.llm import ChatModel, Usage
from agent.solver import Solver

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class Runtime:
    settings: Settings
    model: ChatModel
    store: Any
    suite: Any
    tools: list
    sandbox: Any = None
    clock: Callable[[], float] = time.monotonic
    progress: Progress = lambda phase, done, total: None
    log: Callable[[str, dict[str, Any]], None] = lambda event, data: None
    # Model usage of the phase in progress: every call a phase makes adds its own usage here.
    usage: Usage = field(default_factory=Usage)
    _solvers: Solvers | None = None

    def solver(self, policy) -> Solver:
        if self._solvers is None:
            self._solvers = Solvers(self.settings, self.model, self.tools)
        return self._solvers.for_policy(policy)

    @contextmanager
    def counting(self) -> Iterator[Usage]:
        """A fresh usage for the block (a phase); afterwards it also counts in the outer one."""
        outer, self.usage = self.usage, Usage()
        try:
            yield self.usage
        finally:
            spent, self.usage = self.usage, outer
            outer.add(spent)


def make_runtime(settings: Settings, *, suite: str, tasks_file=None, model: ChatModel | None = None,
                 store=None, sandbox=None, clock=None, progress=None, log=None) -> Runtime:
    """Wire the real pieces (or the injected ones) together for a loop or an evaluation."""
    from agent.model.llm import make_model
    from agent.tasks import get_suite
    from memory.store import Store
    from tools.registry import default_tools

    suite_obj = get_suite(suite, tasks_file=tasks_file)
    if sandbox is None and suite in ("code", "file"):
        from tools.sandbox import Sandbox

        sandbox = Sandbox(settings.sandbox)
    return Runtime(
        settings=settings,
        model=model if model is not None else make_model(settings),
        store=store if store is not None else Store(settings),
        suite=suite_obj,
        tools=default_tools(settings),
        sandbox=sandbox,
        clock=clock or time.monotonic,
        progress=progress or (lambda *a: None),
        log=log or (lambda *a: None),
    )
