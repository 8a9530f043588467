"""`evolve policy list|show|rollback` through the CLI's `run` (the console script's code path);
they had no test through the entry point."""

from __future__ import annotations

import json

from agent.cli.app import run
from agent.policy import INCUMBENT, PolicySpec, create_candidate, ensure_initial, promote
from memory.embeddings import HashEmbedder
from memory.store import Store


def test_list_show_and_rollback(settings, capsys):
    store = Store(settings, embedder=HashEmbedder())
    base = ensure_initial(store)
    cand = create_candidate(store, base, PolicySpec.model_validate(base.spec).model_copy(
        update={"insights": ("Multiply the count by the price first.",)}), note="cycle 1")
    promote(store, cand, cycle=1, evidence={"delta": 0.2, "p_value": 0.01, "run_id": "r1"}, decision="promote")

    assert run(["policy", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].startswith(f"* {cand.id}  v2") and "insights=1" in listing[0]
    assert listing[1].startswith(f"  {base.id}  v1")

    assert run(["policy", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == cand.id and shown["spec"]["insights"] == ["Multiply the count by the price first."]
    assert run(["policy", "show", "initial"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == base.id

    assert run(["policy", "rollback"]) == 0
    assert f"incumbent {cand.id} -> {base.id} (rolled back)" in capsys.readouterr().out
    assert store.get_pointer(INCUMBENT) == base.id
    # Rolled back to a policy no promotion reached: the next rollback must be named.
    assert run(["policy", "rollback"]) == 2
    assert "--to ID" in capsys.readouterr().err
    assert run(["policy", "rollback", "--to", cand.id]) == 0
    assert store.get_pointer(INCUMBENT) == cand.id
