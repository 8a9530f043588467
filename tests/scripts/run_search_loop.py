"""The multi-candidate loop in a subprocess: `run_search_loop.py HOME KILL_AFTER RESUME`.
After KILL_AFTER model calls the process SIGKILLs itself (0 = never)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.config import Settings  # noqa: E402
from agent.loop.graph import run_improve  # noqa: E402
from memory.embeddings import HashEmbedder  # noqa: E402
from memory.store import Store  # noqa: E402
from tests.loop_fakes import answers_by_question  # noqa: E402
from tests.search_fakes import search_model  # noqa: E402

home, kill_after, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
settings = Settings(home=home, loop={"suite": "arith", "train_per_cycle": 3, "dev_size": 20, "patience": 5,
                                     "exemplars_k": 2, "candidates_per_cycle": 3, "screen_size": 3,
                                     # The proposers this run was recorded with (the strategy genes came later).
                                     "proposers": ("context", "tools", "instruction"),
                                     "survivors": 2})
store = Store(settings, embedder=HashEmbedder(64))
model = search_model(answers_by_question("arith"), kill_after=kill_after or None)
summary = run_improve(settings, cycles=2, model=model, store=store, resume=resume,
                      run_id=None if resume else "stest")
print(json.dumps({**{k: summary[k] for k in ("run_id", "stop_reason", "cycles", "incumbent")},
                  "decisions": [h["decision"] for h in summary["history"]], "model_calls": model.usage.calls}))
