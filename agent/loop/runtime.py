"""What the loop's nodes share that cannot live in checkpointed state: model, store, tools."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config import Settings
from agent.model.llm import ChatModel
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
    _solvers: dict[tuple, Solver] = field(default_factory=dict)

    def solver(self, max_steps: int, tool_names: tuple[str, ...], model_id: str = "", adapter: str = "") -> Solver:
        key = (max_steps, tool_names, model_id, adapter)
        if key not in self._solvers:
            chosen = [t for t in self.tools if t.name in tool_names]
            model = self.model
            if (model_id and model_id != getattr(self.model, "name", "")) or adapter:
                # A fine-tuned policy runs on its own model id at the same endpoint, or on the
                # embedded model with its LoRA adapter applied.
                from agent.model.llm import make_model

                model = make_model(self.settings, model_id=model_id, adapter=adapter)
            self._solvers[key] = Solver(model, chosen, max_steps=max_steps,
                                        max_tokens_per_task=self.settings.loop.max_tokens_per_task,
                                        input_chars=1500 if self._code else 400,
                                        numeric_answers=not self._code)
        return self._solvers[key]

    @property
    def _code(self) -> bool:
        return getattr(self.suite, "name", "") == "code"


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
