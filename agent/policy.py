"""Policies: immutable, versioned bundles of everything in-context the agent acts with.

The incumbent is a named pointer. Promotion moves it to a candidate; rollback moves it back
to a policy recorded as a rollback target. Policies themselves are never edited.
"""

from __future__ import annotations

import hashlib
import json

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import ConfigError
from memory.models import Policy, Promotion

INCUMBENT = "incumbent"

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful problem solver. Reason step by step in short plain-text sentences "
    "(no LaTeX, no code blocks), computing each intermediate number. End with: The answer is N."
)


MODES = ("act", "reason", "program", "program+reason", "mixed")
Mode = Literal["act", "reason", "program", "program+reason", "mixed"]
# The modes that run the model's programs in the sandbox.
PROGRAM_MODES = ("program", "program+reason", "mixed")


class PolicySpec(BaseModel):
    """What a policy contains. Hashable by content: equal specs get equal digests.

    Strategy genes (agent/strategies.py runs them): `mode` is how a question is solved
    ("act": think, then JSON actions with tools; "reason": free text, answer extracted;
    "program": the model writes a Python program, the sandbox runs it, the printed value is the
    answer; "program+reason": reasoning when the program fails or prints nothing; "mixed":
    greedy reasoning and a greedy program, and when they disagree `samples - 2` more of both
    at `temperature`, all voted together); `samples` answers at `temperature` are majority-voted; `instructions` is extra text for the prompt.
    Code tasks are always solved by writing the function (their kind decides, not the mode).
    """

    model_config = ConfigDict(frozen=True)

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    insights: tuple[str, ...] = ()
    insight_ids: tuple[int, ...] = ()
    exemplars_k: int = 0
    skills_k: int = 0
    tools: tuple[str, ...] = ("calculator",)
    max_steps: int = 4
    # Free-text reasoning before each JSON action (see agent/solver.py for why).
    think_first: bool = True
    temperature: float = 0.0
    # Empty: the configured model. Otherwise a fine-tuned model id (OpenAI-compatible endpoint)
    # or a LoRA adapter path for the embedded model.
    # Retrieval sees only experiences with id <= this (0: all), so a policy's behaviour does not
    # drift as the store grows and its evaluation results stay reusable.
    memory_snapshot: int = 0
    model_id: str = ""
    adapter: str = ""
    mode: Mode = "act"
    samples: int = Field(1, ge=1, le=16)
    # Repair turns of the program and code strategies: an error, no output or a failed visible
    # example goes back to the model this many times.
    repairs: int = Field(1, ge=0, le=3)
    instructions: str = ""

    def digest(self) -> str:
        # Genes at their defaults are left out, so a policy written before they existed keeps
        # its digest (and its id, and its stored evaluation results).
        dumped = self.model_dump(mode="json")
        for name, default in _GENE_DEFAULTS.items():
            if dumped.get(name) == default:
                dumped.pop(name)
        canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


_GENE_DEFAULTS = {"mode": "act", "samples": 1, "repairs": 1, "instructions": ""}

# The bare model: plain step-by-step reasoning (a code task: the function, written once),
# greedy, one sample, no tools, no memory, no repair. Not a stored policy (it never becomes the
# incumbent); `evolve eval --baseline` runs it as a row.
BASELINE_SPEC = PolicySpec(mode="reason", tools=(), max_steps=1, repairs=0)


def baseline_policy() -> Policy:
    """An unsaved Policy row for the baseline, so episodes and eval runs can name it."""
    digest = BASELINE_SPEC.digest()
    return Policy(id=f"baseline-{digest[:8]}", version=0, parent_id=None, digest=digest,
                  spec=BASELINE_SPEC.model_dump(mode="json"), note="baseline: the bare model")


def spec_of(policy: Policy) -> PolicySpec:
    return PolicySpec.model_validate(policy.spec)


def _make(spec: PolicySpec, version: int, parent_id: str | None, note: str) -> Policy:
    digest = spec.digest()
    return Policy(id=f"p{version}-{digest[:8]}", version=version, parent_id=parent_id, digest=digest,
                  spec=spec.model_dump(mode="json"), note=note)


def ensure_initial(store, spec: PolicySpec | None = None) -> Policy:
    """The incumbent policy, creating version 1 from the defaults on first use."""
    current = store.get_pointer(INCUMBENT)
    if current:
        policy = store.get_policy(current)
        if policy is None:
            raise ConfigError(f"incumbent pointer names missing policy {current!r}; run `evolve policy rollback`")
        return policy
    policy = store.save_policy(_make(spec or PolicySpec(), 1, None, "initial"))
    store.set_pointer(INCUMBENT, policy.id)
    return policy


def incumbent(store) -> Policy:
    return ensure_initial(store)


def create_candidate(store, parent: Policy, spec: PolicySpec, note: str = "") -> Policy:
    """A new version derived from `parent`. Re-running with the same inputs returns the same row."""
    if spec.digest() == parent.digest:
        return parent
    candidate = _make(spec, parent.version + 1, parent.id, note)
    existing = store.get_policy(candidate.id)
    return existing or store.save_policy(candidate)


def promote(store, candidate: Policy, *, cycle: int | None, evidence: dict, decision: str) -> Promotion:
    """Record a promote/reject decision; only `promote` moves the incumbent pointer."""
    before = store.get_pointer(INCUMBENT)
    after = candidate.id if decision == "promote" else before
    row = Promotion(
        cycle=cycle, candidate_id=candidate.id, incumbent_before=before, incumbent_after=after,
        decision=decision, delta=evidence.get("delta", 0.0), ci_low=evidence.get("ci_low", 0.0),
        ci_high=evidence.get("ci_high", 0.0), p_value=evidence.get("p_value", 1.0),
        n=evidence.get("n", 0), evidence=evidence,
    )
    store.add(row)
    if decision == "promote":
        store.set_pointer(INCUMBENT, candidate.id)
    return row


def rollback(store, to: str | None = None) -> Promotion:
    """Move the incumbent back: to `to`, or to the policy the last promotion replaced."""
    current = store.get_pointer(INCUMBENT)
    if to is None:
        last = store.last_promotion_to(current)
        if last is None:
            raise ConfigError(f"incumbent {current!r} was not reached by a promotion; name a policy: "
                              f"`evolve policy rollback --to ID`")
        to = last.incumbent_before
    target = store.get_policy(to)
    if target is None:
        raise ConfigError(f"no policy {to!r}; `evolve policy list` shows the known ones")
    row = Promotion(candidate_id=target.id, incumbent_before=current, incumbent_after=target.id,
                    decision="rollback", evidence={"reason": "manual rollback"})
    store.add(row)
    store.set_pointer(INCUMBENT, target.id)
    return row
