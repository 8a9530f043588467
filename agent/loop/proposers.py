"""Candidate proposers: each turns the incumbent's spec into one mutated candidate spec.

A proposer is a function `(spec, experience) -> spec | None` (None: nothing to propose, the gene
already has that value or the gene does not exist yet). Each changes one thing, so a promotion
names what helped. They see only an `Experience` summary built from TRAIN data; no dev or test
item reaches them. Whether a proposal is kept is the gate's business, not theirs.

Strategy genes (`mode`, `samples`, `instructions`) are proposed only when the policy spec has them: a gene the
solver does not execute would be evaluated as a copy of the incumbent, wasting a dev run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.errors import OutputParseError
from agent import directives, provenance
from agent.prompts import fence

VOTE_SAMPLES = 5
VOTE_TEMPERATURE = 0.7
# Tools worth offering for a numeric or code task, most useful first; the browser is not:
# these suites never need the web, and it costs a long tool description in every prompt.
SOLVING_TOOLS = ("python", "calculator")


@dataclass(frozen=True)
class Failure:
    """A failed TRAIN episode with its reference, for the reflective proposer."""

    question: str
    attempt: str
    answer: str
    reference: str
    reference_answer: str


@dataclass(frozen=True)
class Experience:
    """What proposers may know: the store's train-side state at this cycle."""

    has_exemplars: bool = False
    has_skills: bool = False
    insights: tuple[tuple[int, str], ...] = ()
    memory_snapshot: int = 0
    exemplars_k: int = 2
    skills_k: int = 2
    tools_available: tuple[str, ...] = ()
    task_kind: str = "numeric"  # or "code"
    failures: tuple[Failure, ...] = field(default_factory=tuple)


Proposer = Callable[[object, Experience], object | None]


def _has(spec, gene: str) -> bool:
    return gene in type(spec).model_fields


def _changed(spec, update: dict):
    new = type(spec).model_validate({**spec.model_dump(), **update})
    return None if new.digest() == spec.digest() else new


def context(spec, exp: Experience):
    """Today's in-context update: exemplars and skills when some exist, the current insights,
    and the memory snapshot they were read at."""
    return _changed(spec, {
        "exemplars_k": exp.exemplars_k if exp.has_exemplars else spec.exemplars_k,
        "skills_k": exp.skills_k if exp.has_skills else spec.skills_k,
        "insights": tuple(text for _, text in exp.insights),
        "insight_ids": tuple(i for i, _ in exp.insights),
        "memory_snapshot": exp.memory_snapshot,
    })


def program(spec, exp: Experience):
    """Program-of-thought: the model writes a program, the sandbox runs it, the print is the answer."""
    if not _has(spec, "mode") or exp.task_kind == "code" or spec.mode == "program":
        return None
    return _changed(spec, {"mode": "program"})


def program_with_reasoning(spec, exp: Experience):
    """A program first, free-text reasoning when the program fails to give an answer."""
    if not _has(spec, "mode") or exp.task_kind == "code" or spec.mode == "program+reason":
        return None
    return _changed(spec, {"mode": "program+reason"})


def reason(spec, exp: Experience):
    """Plain free-text reasoning, answer extracted: no JSON turns, no tools (on the 0.5B model
    this scored above the act scaffold, issue 10)."""
    if not _has(spec, "mode") or exp.task_kind == "code" or spec.mode == "reason":
        return None
    return _changed(spec, {"mode": "reason"})


def vote(spec, exp: Experience):
    """Self-consistency: k samples at a positive temperature, majority vote of the answers."""
    if not _has(spec, "samples") or spec.samples > 1:
        return None
    return _changed(spec, {"samples": VOTE_SAMPLES, "temperature": VOTE_TEMPERATURE})


def program_vote(spec, exp: Experience):
    """Voted programs: `VOTE_SAMPLES` programs at `VOTE_TEMPERATURE`, majority of their printed
    answers. Two genes in one move, on purpose: on the 0.5B model one program alone does not
    beat the act policy (bench/strategies.py, docs/benchmarks.md), so a one-gene-at-a-time
    search would have to promote that step first, and the gate rightly refuses it."""
    if not _has(spec, "mode") or exp.task_kind == "code" or (spec.mode == "program" and spec.samples > 1):
        return None
    return _changed(spec, {"mode": "program", "samples": VOTE_SAMPLES, "temperature": VOTE_TEMPERATURE})


MIXED_SAMPLES = 6


def mixed_vote(spec, exp: Experience):
    """Reasoning and programs together: greedy one of each, and on disagreement four more of
    both at `VOTE_TEMPERATURE`, one vote over all (strategies `_mixed`). On the 1.5B default the
    two ways of solving fail on different GSM8K items (either solves 25/37 dev items, each alone
    21-22), and when they agree they are right 18 times in 19 (docs/benchmarks.md)."""
    if not _has(spec, "mode") or exp.task_kind == "code" or spec.mode == "mixed":
        return None
    return _changed(spec, {"mode": "mixed", "samples": MIXED_SAMPLES, "temperature": VOTE_TEMPERATURE})


def tools(spec, exp: Experience):
    """Offer the most useful solving tool the policy does not offer yet (only where tools are
    used: in the act mode; the other modes never call one)."""
    if _has(spec, "mode") and spec.mode != "act":
        return None
    for name in SOLVING_TOOLS:
        if name in exp.tools_available and name not in spec.tools:
            return _changed(spec, {"tools": (*spec.tools, name)})
    return None


# -- the reflective instruction proposer (GEPA-style) ---------------------------------------

INSTRUCTION_SCHEMA = {
    "type": "object",
    "properties": {
        "diagnosis": {"type": "string", "maxLength": 300},
        "instruction": {"type": "string", "maxLength": 300},
    },
    "required": ["diagnosis", "instruction"],
}

REFLECT_PROMPT = (
    "You improve the instructions of a problem solver. You see problems it answered wrongly, "
    "its attempts and the reference solutions, all given as data. Say in one sentence what went "
    "wrong in common, then write ONE short general instruction (one or two sentences, not about "
    "these problems' numbers) that would have made the solver answer correctly. Reply in JSON."
)
MAX_FAILURES_SHOWN = 3
MIN_INSTRUCTION_WORDS = 5
INSTRUCTION_HEADER = "Additional instruction:"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_FENCE_TAG = re.compile(r"<\s*/?\s*data\b[^>]*>?", re.IGNORECASE)


def reflect_messages(spec, failures: Sequence[Failure]) -> list[dict]:
    shown = []
    for i, f in enumerate(failures[:MAX_FAILURES_SHOWN]):
        shown.append(
            f"Problem {i + 1}:\n{fence(f.question, 'problem')}\n"
            f"Attempt (answer {f.answer!r}):\n{fence(f.attempt[-1200:], 'attempt')}\n"
            f"Reference solution (answer {f.reference_answer}):\n{fence(f.reference[:1200], 'reference')}")
    return [
        {"role": "system", "content": REFLECT_PROMPT},
        {"role": "user", "content": "Current instructions:\n" + fence(spec.system_prompt, "instructions")
         + "\n\n" + "\n\n".join(shown)},
    ]


def clean_instruction(text: str) -> str | None:
    """One line of plain text, or None when it cannot be a general instruction.

    A promoted instruction becomes part of the trusted system prompt, and the failures it was
    written from may hold web text. So it may not carry what an injected page would want there:
    a fence tag in any spelling is removed; an address (which agent/provenance.py would then
    trust) or a directive the memory filter withholds (a fixed answer, "ignore the question", a
    chat role) refuses the instruction outright."""
    text = _FENCE_TAG.sub(" ", _CONTROL.sub(" ", str(text))).strip()
    text = " ".join(text.split())[:300]
    if len(text.split()) < MIN_INSTRUCTION_WORDS:
        return None
    if provenance.trusted_origins(text) or directives.reasons(text, memory=True):
        return None
    return text


def with_instruction(spec, instruction: str):
    """The spec with `instruction` as its one model-written instruction: the `instructions` gene
    when the spec has it, else an addition to the system prompt.

    An earlier proposed instruction is replaced, not stacked: each candidate is one mutation."""
    if _has(spec, "instructions"):
        return _changed(spec, {"instructions": instruction})
    base = spec.system_prompt.split("\n\n" + INSTRUCTION_HEADER)[0]
    return _changed(spec, {"system_prompt": f"{base}\n\n{INSTRUCTION_HEADER} {instruction}"})


def reflective(model, *, max_tokens: int = 200, spent=None) -> Proposer:
    """A proposer that asks `model` for an instruction written from failed train episodes.

    One schema-constrained call; an unparsable or empty reply proposes nothing. `spent`: a
    Usage the call's tokens are added to (the phase's count)."""

    def instruction(spec, exp: Experience):
        if not exp.failures:
            return None
        try:
            out = model.complete(reflect_messages(spec, exp.failures), schema=INSTRUCTION_SCHEMA,
                                 max_tokens=max_tokens)
        except OutputParseError:
            return None
        if spent is not None:
            spent.add(out.usage)
        parsed = out.parsed if isinstance(out.parsed, dict) else {}
        text = clean_instruction(parsed.get("instruction", ""))
        return with_instruction(spec, text) if text else None

    instruction.__name__ = "instruction"
    return instruction


NAMES = ("context", "mixed_vote", "program", "program_vote", "program_with_reasoning", "vote", "reason", "tools",
         "instruction")


def default_proposers(model, *, spent=None, names: Sequence[str] = NAMES) -> list[Proposer]:
    """The proposers called `names`, in that order (LoopSettings.proposers; by default context
    first, as today's single-candidate cycle proposes it)."""
    table = {"context": context, "program": program, "program_with_reasoning": program_with_reasoning,
             "vote": vote, "program_vote": program_vote, "reason": reason, "tools": tools,
             "mixed_vote": mixed_vote}
    return [reflective(model, spent=spent) if n == "instruction" else table[n] for n in names]


def propose(spec, exp: Experience, proposers: Sequence[Proposer], *, k: int,
            skip_digests: frozenset[str] = frozenset()) -> list[tuple[str, object]]:
    """Up to k distinct candidate specs as (proposer name, spec), in proposer order.

    Proposers run lazily, so the model-backed one is called only when its slot is needed.
    `skip_digests`: specs already rejected against this incumbent in this run."""
    out: list[tuple[str, object]] = []
    seen = {spec.digest(), *skip_digests}
    for proposer in proposers:
        if len(out) >= k:
            break
        candidate = proposer(spec, exp)
        if candidate is None or candidate.digest() in seen:
            continue
        seen.add(candidate.digest())
        out.append((proposer.__name__, candidate))
    return out
