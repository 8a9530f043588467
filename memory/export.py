"""Training export: passing train episodes as OpenAI chat fine-tuning JSONL.

Only train episodes of train tasks are written (the firewall); identical lines are written once.
How an episode becomes chat messages is the caller's `render`: the agent passes one that
rebuilds the turns its solver really sends (agent/model/rows.py), since a model fine-tuned on
another turn structure learns turns it is never asked. Without one, the trajectory's OpenAI
tool-call view (`Trajectory.to_messages`) is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlmodel import select

from memory.base import StoreBase
from memory.firewall import split_from_task_id
from memory.models import Episode, Task
from memory.trajectory import Trajectory

class TrainingExport(StoreBase):
    # -- training data --------------------------------------------------------------------

    def export_training_data(self, path: str | Path,
                             render: Callable[[Episode, Task], list[dict[str, Any]] | None] | None = None) -> int:
        """Write passing train episodes as OpenAI chat fine-tuning JSONL; returns lines written.

        `render(episode, task)` gives an episode's messages, or None to leave it out."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        seen: set[str] = set()
        n = 0
        tmp = path.with_suffix(path.suffix + ".tmp")
        with self.session(read_only=True) as s, open(tmp, "w", encoding="utf-8") as out:
            q = (select(Episode, Task).join(Task, Task.id == Episode.task_id)
                 .where(Episode.split == "train", Task.split == "train", Episode.verdict == "pass")
                 .order_by(Episode.id))
            for ep, task in s.exec(q):
                if split_from_task_id(task.id) not in (None, "train"):
                    continue
                messages = (render or _chat_messages)(ep, task)
                if messages is None:
                    continue
                line = json.dumps({"messages": messages}, ensure_ascii=False, sort_keys=True)
                if line in seen:
                    continue
                seen.add(line)
                out.write(line + "\n")
                n += 1
        tmp.replace(path)
        return n


def _chat_messages(ep: Episode, task: Task) -> list[dict[str, Any]] | None:
    # The episode's own reasoning, tool calls and results, as chat messages.
    msgs = Trajectory.from_stored(ep.trajectory).to_messages(final_answer=ep.final_answer, question=task.question)
    if not msgs or msgs[-1]["role"] != "assistant" or msgs[-1].get("tool_calls"):
        return None
    return msgs
