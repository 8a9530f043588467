"""Policies: immutable, versioned bundles of everything in-context the agent acts with.

The incumbent is a named pointer. Promotion moves it to a candidate; rollback moves it back
to a policy recorded as a rollback target. Policies themselves are never edited.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict

from agent.errors import ConfigError
from memory.models import Policy, Promotion

INCUMBENT = "incumbent"

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful problem solver. Reason step by step in short plain-text sentences "
    "(no LaTeX, no code blocks), computing each intermediate number. End with: The answer is N."
)


class PolicySpec(BaseModel):
    """What a policy contains. Hashable by content: equal specs get equal digests."""

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

    def digest(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


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
