"""What the loop's nodes share that cannot live in checkpointed state: model, store, tools."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config import Settings
from agent.llm import ChatModel
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

    def solver(self, max_steps: int, tool_names: tuple[str, ...]) -> Solver:
        key = (max_steps, tool_names)
        if key not in self._solvers:
            chosen = [t for t in self.tools if t.name in tool_names]
            self._solvers[key] = Solver(self.model, chosen, max_steps=max_steps,
                                        max_tokens_per_task=self.settings.loop.max_tokens_per_task,
                                        input_chars=1500 if "code" in getattr(self.suite, "name", "") else 400)
        return self._solvers[key]

    def timed_model_seconds(self) -> float:
        return self.model.usage.latency_s
