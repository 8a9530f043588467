"""How a policy's strategy genes solve one task (PolicySpec.mode, samples, temperature, instructions).

- "reason": free-text reasoning, the answer extracted from it (agent/tasks/answers.py);
- "program": the model writes a Python program, the real sandbox runs it and the last printed
  line is the answer; an error or no output goes back to the model for `repairs` turns (1);
- "program+reason": the program, and reasoning when it still gives no answer;
- "act": the think-then-act tool graph of agent/solver.py;
- "mixed": greedy reasoning and a greedy program; their answer when they agree, otherwise more
  samples of both at the temperature and one vote over all (see `_mixed`);
- code tasks (kind "code", from any suite or task file) are solved by writing the function,
  whatever the mode: candidates are checked on the examples their prompt shows.

With `samples` k > 1 each sample runs the whole strategy and the answers are majority-voted
(normalised; ties go to the answer seen first). Code candidates are voted by behaviour on
the visible examples instead. The k samples' first turns share one prompt and go to the model
as one `complete_many` call: the embedded backend evaluates the prompt once and decodes the k
samples together in one llama.cpp batch (agent/model/batch_decode.py); repairs and fallbacks stay
per sample. Greedy decoding (temperature 0) would give k copies of one answer, so it runs one.
"""

from __future__ import annotations

import doctest
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent import prompts
from agent.model.llm import ChatModel, Usage, complete_many
from agent.policy import PROGRAM_MODES, PolicySpec
from agent.solver import FINAL, Context, SolveResult
from agent.tasks.answers import canonical_number, extract_answer, normalise_text
from agent.tasks.base import SandboxLike, extract_code
from memory.trajectory import Action, Observation, Prompt, Thought, Trajectory, Vote
from memory.trajectory import Step as TypedStep

# The same budget as a think-first act turn (Solver max_tokens_per_step), so "reason" is
# exactly the act policy without its act turn: an ablation of the JSON action machinery.
REASON_MAX_TOKENS = 400
PROGRAM_MAX_TOKENS = 400
CODE_MAX_TOKENS = 700
PROGRAM_TIMEOUT_S = 10.0
MAX_EXAMPLES = 8

Step = TypedStep
ActFn = Callable[[float], SolveResult]  # one run of the act graph at a temperature


@dataclass
class Attempt:
    """One sample's result: its answer ("" when it found none) and what it did."""

    answer: str
    steps: list[Step] = field(default_factory=list)
    error: str = ""
    behaviour: tuple = ()  # code: (passed examples, outputs on them)


class _Calls:
    """Model calls of one solve, their usage summed per call (no counter subtraction)."""

    def __init__(self, model: ChatModel, temperature: float, on_event=None) -> None:
        self.model = model
        self.temperature = temperature
        self.usage = Usage()
        # The solver's event hook (the chat shows these as they happen).
        self.emit = on_event or (lambda kind, data: None)
        # Samples decoded greedily whatever the policy's temperature (mixed mode's first pair).
        self.greedy: set[int] = set()
        self._firsts: dict[str, dict[int, str]] = {}

    @staticmethod
    def _key(messages: list[dict[str, Any]], max_tokens: int) -> str:
        return json.dumps([messages, max_tokens], sort_keys=True)

    def sample_first_turns(self, messages: list[dict[str, Any]], max_tokens: int,
                           samples: Sequence[int]) -> None:
        """The first turns of `samples` (sample indices) in one complete_many call; each of those
        samples' first call with these messages then takes its text instead of calling the model."""
        outs = complete_many(self.model, messages, len(samples), max_tokens=max_tokens,
                             temperature=self.temperature, seed=self._seed(samples[0]))
        for out in outs:
            self.usage.add(out.usage)
        self._firsts[self._key(messages, max_tokens)] = {s: out.text for s, out in zip(samples, outs)}

    def _seed(self, sample: int) -> int | None:
        # A sampled run gets its own seed per sample, so k samples differ and reruns repeat.
        return sample + 1 if self.temperature > 0 and sample not in self.greedy else None

    def __call__(self, messages: list[dict[str, Any]], max_tokens: int, sample: int) -> str:
        batched = self._firsts.get(self._key(messages, max_tokens), {})
        if sample in batched:
            return batched.pop(sample)
        temperature = 0.0 if sample in self.greedy else self.temperature
        out = self.model.complete(messages, max_tokens=max_tokens, temperature=temperature,
                                  seed=self._seed(sample))
        self.usage.add(out.usage)
        return out.text


# ---------------------------------------------------------------- voting

def answer_key(answer: str) -> str:
    """Answers that mean the same count as one vote: 18, 18.0 and $18 are one number."""
    number = canonical_number(answer)
    return number if number is not None else normalise_text(answer)


def majority(answers: Sequence[str]) -> int:
    """Index of the winning sample: most common normalised non-empty answer; a tie goes to the
    answer whose first occurrence has the lowest sample index. All empty: sample 0."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, answer in enumerate(answers):
        if not answer.strip():
            continue
        key = answer_key(answer)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, i)
    if not counts:
        return 0
    best = max(counts, key=lambda k: (counts[k], -first[k]))
    return first[best]


def behaviour_vote(attempts: Sequence[Attempt]) -> int:
    """Code candidates: most visible examples passed, then the largest group behaving alike on
    them, then the lowest sample index."""
    groups: dict[tuple, int] = {}
    for a in attempts:
        groups[a.behaviour] = groups.get(a.behaviour, 0) + 1

    def rank(i: int) -> tuple:
        b = attempts[i].behaviour
        passed = b[0] if b else -1
        return (passed, groups[b] if b else 0, -i)

    return max(range(len(attempts)), key=rank)


# ---------------------------------------------------------------- reason and program

def _reason_messages(system: str, question: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def _program_messages(system: str, question: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system},
            {"role": "user", "content": prompts.program_request(question)}]


def _code_messages(system: str, question: str, entry_point: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system},
            {"role": "user", "content": prompts.code_request(question, entry_point)}]


def _reason(calls: _Calls, system: str, question: str, sample: int) -> Attempt:
    text = calls(_reason_messages(system, question), REASON_MAX_TOKENS, sample)
    calls.emit("thought", {"text": text})
    answer = extract_answer(text)
    return Attempt(answer, [Thought(text=text)], "" if answer else "no answer found in the reasoning")


def _printed_answer(stdout: str) -> str:
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    return extract_answer(lines[-1]) if lines else ""


def _program(calls: _Calls, system: str, question: str, sample: int, sandbox: SandboxLike,
             repairs: int) -> Attempt:
    messages = _program_messages(system, question)
    steps: list[Step] = []
    problem = ""
    for turn in range(1 + repairs):  # the program, then the bounded repairs
        text = calls(messages, PROGRAM_MAX_TOKENS, sample)
        code = extract_code(text)
        calls.emit("action", {"action": "python", "input": code})
        result = sandbox.run(code, timeout_s=PROGRAM_TIMEOUT_S)
        calls.emit("observation", {"tool": "python", "ok": result.ok,
                                   "content": result.stdout if result.ok else result.stderr})
        answer = _printed_answer(result.stdout) if result.ok else ""
        # The program is a python tool call and its output the result, so the trajectory's chat
        # messages (fine-tuning rows) and worked examples show it like any tool use.
        call_id = f"py{sample}_{turn}"
        steps += [Action(action="python", input=code[:4000], call_id=call_id,
                         arguments=json.dumps({"code": code[:4000]})),
                  Observation(tool="python", ok=result.ok, call_id=call_id,
                              content=(result.stdout if result.ok else result.stderr or result.stdout)[-2000:])]
        if answer:
            return Attempt(answer, steps)
        if result.timed_out:
            problem = f"the program timed out after {PROGRAM_TIMEOUT_S:.0f} s"
        elif not result.ok:
            problem = (result.stderr.strip() or f"exit code {result.exit_code}")[-1500:]
        else:
            problem = ("it printed nothing" if not result.stdout.strip()
                       else f"it printed no number: {result.stdout.strip()[-300:]}")
        messages += [{"role": "assistant", "content": text},
                     {"role": "user", "content": prompts.program_repair(problem)}]
    return Attempt("", steps, f"the program gave no answer: {problem[:300]}")


# ---------------------------------------------------------------- code tasks

def visible_examples(prompt: str) -> list[tuple[str, str]]:
    """(call, expected) pairs from doctest-style examples (`>>> f(2)` then `4`) in a prompt."""
    try:
        found = doctest.DocTestParser().get_examples(prompt)
    except ValueError:
        return []
    return [(e.source.strip(), e.want.strip()) for e in found if e.want.strip()][:MAX_EXAMPLES]


def _harness(code: str, examples: list[tuple[str, str]], marker: str) -> str:
    # Runs in the sandbox after the candidate: each example is evaluated on its own, so one
    # crash does not hide the others; the marker tells a finished check from an early exit.
    return (f"{code}\n\nimport json as _json\n_results = []\n"
            f"for _call, _want in {examples!r}:\n"
            "    try:\n"
            "        _got = eval(_call)\n"
            "        try:\n"
            "            _ok = _got == eval(_want)\n"
            "        except Exception:\n"
            "            _ok = repr(_got) == _want\n"
            "        _results.append([bool(_ok), repr(_got)[:200]])\n"
            "    except Exception as _exc:\n"
            "        _results.append([False, type(_exc).__name__ + ': ' + str(_exc)[:200]])\n"
            f"print({marker!r} + _json.dumps(_results))\n")


def _check_code(code: str, entry_point: str, examples: list[tuple[str, str]],
                sandbox: SandboxLike) -> tuple[tuple, str]:
    """(behaviour, problem): behaviour is (passed, outputs) or () when the code does not run."""
    import re

    if entry_point and not re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", code):
        return (), f"the reply does not define `def {entry_point}(...)`"
    marker = "examples-" + secrets.token_hex(6) + ":"
    result = sandbox.run(_harness(code, examples, marker), timeout_s=PROGRAM_TIMEOUT_S)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith(marker)), None)
    if line is None:
        if result.timed_out:
            return (), f"it timed out after {PROGRAM_TIMEOUT_S:.0f} s"
        return (), (result.stderr.strip() or "it exited before the checks finished")[-1500:]
    outcomes = json.loads(line[len(marker):])
    passed = sum(1 for ok, _ in outcomes if ok)
    failures = [f"{call} returned {got}, expected {want}"
                for (call, want), (ok, got) in zip(examples, outcomes) if not ok]
    return (passed, tuple(got for _, got in outcomes)), "\n".join(failures[:4])


def _passed(attempt: Attempt) -> int:
    return attempt.behaviour[0] if attempt.behaviour else -1


def _code(calls: _Calls, system: str, question: str, entry_point: str, sample: int,
          sandbox: SandboxLike | None, repairs: int) -> Attempt:
    messages = _code_messages(system, question, entry_point)
    examples = visible_examples(question)
    steps: list[Step] = []
    best: Attempt | None = None
    for turn in range(1 + repairs):  # the function, then the bounded repairs
        text = calls(messages, CODE_MAX_TOKENS, sample)
        code = extract_code(text, entry_point)
        calls.emit("action", {"action": "python", "input": code})
        if sandbox is None:  # nothing to check with: the first function is the answer
            steps.append(Thought(text=code[:6000]))
            return Attempt(code, steps)
        behaviour, problem = _check_code(code, entry_point, examples, sandbox)
        call_id = f"code{sample}_{turn}"
        passed = behaviour[0] if behaviour else 0
        steps += [Action(action="python", input=code[:6000], call_id=call_id,
                         arguments=json.dumps({"code": code[:6000]})),
                  Observation(tool="python", ok=not problem, call_id=call_id,
                              content=(problem[:1000] if problem
                                       else f"passed {passed}/{len(examples)} visible examples"))]
        attempt = Attempt(code, list(steps), "" if behaviour else problem[:300], behaviour)
        # The repair replaces the first try unless it passes fewer examples.
        if best is None or _passed(attempt) >= _passed(best):
            best = attempt
        if not problem or turn == repairs:
            break
        messages += [{"role": "assistant", "content": text},
                     {"role": "user", "content": prompts.code_repair(problem, entry_point)}]
    assert best is not None
    best.steps = steps
    return best


# ---------------------------------------------------------------- mixed: reasoning and programs

def _mixed(calls: _Calls, systems: dict[str, str], question: str, sandbox: SandboxLike,
           spec: PolicySpec) -> tuple[list[Attempt], list[str]]:
    """Greedy reasoning and a greedy program first. When their answers agree, that is the
    answer (two independent ways of solving rarely agree on a wrong number); otherwise
    `samples - 2` more at the temperature, half reasoning and half programs, and one majority vote
    over all of them (adaptive consistency: the extra samples are spent only on doubtful items).
    Returns the attempts and each one's kind."""
    calls.greedy = {0, 1}
    attempts = [_reason(calls, systems["reason"], question, 0),
                _program(calls, systems["program"], question, 1, sandbox, spec.repairs)]
    kinds = ["reason", "program"]
    first, second = (a.answer for a in attempts)
    if spec.temperature <= 0 or spec.samples <= 2 or (
            first and second and answer_key(first) == answer_key(second)):
        return attempts, kinds
    # Half reasoning (the odd one out, if any, too), half programs; contiguous sample numbers
    # keep every sample's seed distinct across the two batches.
    extra = spec.samples - 2
    reasons = list(range(2, 2 + (extra + 1) // 2))
    programs = list(range(2 + len(reasons), spec.samples))
    kinds += ["reason"] * len(reasons) + ["program"] * len(programs)
    if len(reasons) > 1:
        calls.sample_first_turns(_reason_messages(systems["reason"], question), REASON_MAX_TOKENS, reasons)
    if len(programs) > 1:
        calls.sample_first_turns(_program_messages(systems["program"], question), PROGRAM_MAX_TOKENS,
                                 programs)
    for i in range(2, spec.samples):
        attempts.append(_reason(calls, systems["reason"], question, i) if kinds[i] == "reason"
                        else _program(calls, systems["program"], question, i, sandbox, spec.repairs))
    return attempts, kinds


# ---------------------------------------------------------------- entry point

def solve(model: ChatModel, question: str, spec: PolicySpec, context: Context, *,
          kind: str = "qa", entry_point: str = "", sandbox: SandboxLike | None = None,
          act: ActFn | None = None, on_event=None) -> SolveResult:
    """Run `spec`'s strategy on one task; the Solver's entry point calls this for every mode
    except a single-sample "act" on a non-code task."""
    calls = _Calls(model, spec.temperature, on_event)
    code_task = kind == "code"
    if not code_task and spec.mode in PROGRAM_MODES and sandbox is None:
        raise ValueError(f"mode {spec.mode!r} runs programs: the solver needs a sandbox")
    kind_of = "code" if code_task else "reason" if spec.mode in ("reason", "act") else "program"
    # Only the system messages this mode sends (each one filters the retrieved memories).
    needed = ("reason", "program") if spec.mode in ("mixed", "program+reason") and not code_task else (kind_of,)
    bases = {"code": prompts.CODE_SYSTEM, "reason": spec.system_prompt, "program": prompts.PROGRAM_SYSTEM}
    systems = {k: prompts.strategy_system(bases[k], spec, insights=context.insights,
                                          exemplars=context.exemplars, skills=context.skills)
               for k in needed}
    system = systems[kind_of]
    attempts: list[Attempt] = []
    kinds: list[str] = []
    act_steps = 0
    samples = spec.samples if spec.temperature > 0 else 1
    if spec.mode == "mixed" and not code_task:
        attempts, kinds = _mixed(calls, systems, question, sandbox, spec)
        samples = 0  # the loop below has nothing left to draw
    elif samples > 1 and (code_task or spec.mode != "act"):  # act runs its own graph per sample
        if code_task:
            first = _code_messages(system, question, entry_point), CODE_MAX_TOKENS
        elif spec.mode == "reason":
            first = _reason_messages(system, question), REASON_MAX_TOKENS
        else:
            first = _program_messages(system, question), PROGRAM_MAX_TOKENS
        calls.sample_first_turns(*first, range(samples))
    for i in range(samples):
        if code_task:
            attempt = _code(calls, system, question, entry_point, i, sandbox, spec.repairs)
        elif spec.mode == "act":
            assert act is not None, "mode act needs the solver's act graph"
            result = act(spec.temperature)
            calls.usage.add(result.usage)
            act_steps += result.steps
            attempt = Attempt(result.final_answer, list(result.trajectory.steps[1:]), result.error)
        elif spec.mode == "reason":
            attempt = _reason(calls, system, question, i)
        else:
            attempt = _program(calls, system, question, i, sandbox, spec.repairs)
            if not attempt.answer and spec.mode == "program+reason":
                fallback = _reason(calls, systems["reason"], question, i)
                attempt = Attempt(fallback.answer, attempt.steps + fallback.steps, fallback.error)
        attempts.append(attempt)
    if code_task:
        chosen = behaviour_vote(attempts)
    else:
        chosen = majority([a.answer for a in attempts])
    winner = attempts[chosen]
    # Only the chosen sample's steps are kept, under the system message that sample was sent:
    # one coherent solution for every reader (and a training row in the turns it was made in).
    system = systems[kinds[chosen]] if kinds else system
    trajectory: list[Step] = [Prompt(system=system, question=question), *winner.steps]
    if len(attempts) > 1:
        trajectory.append(Vote(answers=[a.answer[:200] for a in attempts], chosen=chosen))
    calls.emit("final", {"answer": winner.answer})
    if not any(isinstance(s, Action) and s.action == FINAL for s in winner.steps):
        trajectory.append(Action(action=FINAL, input=winner.answer))
    return SolveResult(final_answer=winner.answer, trajectory=Trajectory(steps=trajectory),
                       steps=act_steps or len(trajectory) - 1, usage=calls.usage,
                       error="" if winner.answer else (winner.error or "no answer"))
