"""In-weight self-training end to end: verified train experience -> LoRA -> stored GGUF adapter.

Training data comes only from episodes that passed their verifier on train tasks. A task whose
id, row or parent (for self-proposed variations) says dev or test is skipped, whatever the
episode claims: held-out items must never shape the weights that are then evaluated on them.

Adapters are stored content-addressed under EVOLVE_HOME/adapters/<sha256>.gguf, with a JSON
beside each giving its provenance (base weights hash, example ids, training settings). A policy
names its adapter by that digest (`PolicySpec.adapter`); the embedded backend resolves and
verifies it before loading base plus adapter.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ConfigError, IntegrityError
from agent.model.local_model import sha256_file

_DIGEST = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")


@dataclass(frozen=True)
class TrainExample:
    id: str  # content hash of the messages: the same solution twice is one example
    task_id: str
    episode_id: int | None
    messages: tuple[dict[str, str], ...]
    # verified (a greedy acquisition pass) | sampled (an extra sampled acquisition attempt) |
    # rationalised (STaR: written with the reference as a hint)
    source: str = "verified"


# Episode.source of the extra sampled acquisition attempts (agent/loop/acquire.py).
SAMPLED_SOURCE = "acquire-sample"


def _example_id(messages: Sequence[dict[str, str]]) -> str:
    canonical = json.dumps(list(messages), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _task_split(task_id: str) -> str | None:
    parts = task_id.split("/")
    return parts[1] if len(parts) >= 3 and parts[1] in ("train", "dev", "test") else None


def is_train_only(store, task, episode=None) -> bool:
    """True only when nothing about the task, its lineage or the episode is held out."""
    if task is None or task.split != "train" or _task_split(task.id) not in (None, "train"):
        return False
    if episode is not None and (episode.split != "train" or episode.task_id != task.id):
        return False
    seen = {task.id}
    parent_id = task.parent_task_id
    while parent_id:
        if parent_id in seen or _task_split(parent_id) not in (None, "train"):
            return False
        seen.add(parent_id)
        parent = store.get_task(parent_id)
        if parent is None or parent.split != "train":
            return False  # unknown lineage is not proof of train
        parent_id = parent.parent_task_id
    return True


def episode_messages(episode, task, spec, tools: Sequence = ()) -> list[dict[str, str]] | None:
    """The chat an episode's solution amounts to, in the turns the solver sent for `spec`'s mode
    (agent/model/rows.py): the stored system message, the question, each model turn, tool
    results as the solver fed them back. None when that shape cannot be rebuilt exactly."""
    from agent.model.rows import inference_messages
    from memory.trajectory import Trajectory

    msgs = inference_messages(Trajectory.from_stored(episode.trajectory), spec, tools, kind=task.kind,
                              entry_point=task.entry_point or "")
    if not msgs or msgs[-1]["role"] != "assistant" or not msgs[-1]["content"].strip():
        return None
    return msgs


def row_renderer(store, tools: Sequence = ()) -> Callable[[Any, Any], list[dict[str, str]] | None]:
    """`render` for the store's training export: an episode as the turns the solver sends, or
    None (held-out lineage, unknown policy, a shape that cannot be rebuilt)."""
    from agent.policy import PolicySpec

    specs: dict[str, Any] = {}

    def render(episode, task):
        if not is_train_only(store, task, episode):
            return None
        if episode.policy_id not in specs:
            policy = store.get_policy(episode.policy_id)
            specs[episode.policy_id] = PolicySpec.model_validate(policy.spec) if policy is not None else None
        spec = specs[episode.policy_id]
        return None if spec is None else episode_messages(episode, task, spec, tools)

    return render


def _normalised_answer(messages: Sequence[dict[str, str]]) -> str:
    return " ".join("\n".join(m["content"] for m in messages if m["role"] == "assistant").split()).lower()


def verified_examples(store, tools: Sequence = (), *, max_per_task: int = 4) -> list[TrainExample]:
    """Distinct verified solutions of train tasks, at most `max_per_task` per task.

    Distinct by normalised solution text (the assistant turns, whitespace and case folded):
    the same greedy solution stored by two runs is one example. `tools` are the solver's tool
    objects (the act request lists them). An episode whose policy is not stored is skipped:
    without its mode the inference shape is unknown.
    """
    from agent.policy import PolicySpec

    per_task: dict[str, set[str]] = {}
    out: list[TrainExample] = []
    tasks: dict[str, Any] = {}
    specs: dict[str, Any] = {}
    for ep in store.episodes(split="train", verdict="pass"):
        if ep.task_id not in tasks:
            tasks[ep.task_id] = store.get_task(ep.task_id)
        task = tasks[ep.task_id]
        if not is_train_only(store, task, ep):
            continue
        if ep.policy_id not in specs:
            policy = store.get_policy(ep.policy_id)
            specs[ep.policy_id] = PolicySpec.model_validate(policy.spec) if policy is not None else None
        if specs[ep.policy_id] is None:
            continue
        msgs = episode_messages(ep, task, specs[ep.policy_id], tools)
        if msgs is None:
            continue
        seen = per_task.setdefault(task.id, set())
        key = _normalised_answer(msgs)
        if key in seen or len(seen) >= max_per_task:
            continue
        seen.add(key)
        source = {SAMPLED_SOURCE: "sampled", RATIONALISED_SOURCE: "rationalised"}.get(ep.source, "verified")
        out.append(TrainExample(id=_example_id(msgs), task_id=task.id, episode_id=ep.id, messages=tuple(msgs),
                                source=source))
    return out


RATIONALE_HINT = ("(A hint for you alone: the correct final answer is {answer}. Solve the problem step by "
                  "step as if you had worked it out yourself; do not mention the hint.)")
RATIONALISED_SOURCE = "rationalised"


def rationalise(model, suite, store, task, spec, tools: Sequence = (), *, max_tokens: int = 400):
    """STaR rationalisation of a failed train task: the model writes a solution with the
    reference answer as a hint; kept only when the verifier accepts the answer the solver would
    take from it. Returns the trajectory to store (system message and question as the solver
    sends them, hint removed; the reasoning; its answer), or None.

    Only reasoning-first shapes can be rationalised (act with think-first, reason): their first
    model turn is free text, and a text that states its answer ends the episode there, so the
    row is exactly the solver's. The reference never enters the stored trajectory.
    """
    from agent import prompts
    from agent.tasks.answers import extract_answer, marked_answer
    from memory.trajectory import Action, Prompt, Thought, Trajectory

    if not is_train_only(store, task) or not task.answer or task.kind == "code":
        return None
    if spec.mode == "act" and spec.think_first and spec.samples == 1:
        chosen = [t for t in tools if t.name in spec.tools]
        system = prompts.system_message(spec, chosen, insights=spec.insights)
    elif spec.mode == "reason" and spec.samples == 1:
        system = prompts.strategy_system(spec.system_prompt, spec, insights=spec.insights)
    else:
        return None
    hinted = [{"role": "system", "content": system},
              {"role": "user", "content": f"{task.question}\n\n{RATIONALE_HINT.format(answer=task.answer)}"}]
    text = model.complete(hinted, max_tokens=max_tokens, temperature=0.0).text
    # The solver ends on a marked answer ("The answer is 12"); a text without one would have
    # been followed by an act turn the row does not have.
    answer = extract_answer(text) if marked_answer(text) is not None else ""
    if not answer or "hint" in text.lower() or not suite.verify(task, answer).correct:
        return None
    return Trajectory(steps=[Prompt(system=system, question=task.question), Thought(text=text),
                             Action(action="final_answer", input=answer, source="thought")])


def rationalised_episode(model, suite, store, task, policy, tools: Sequence = (), *, run_key: str,
                         cycle: int | None = None):
    """`rationalise` as a stored episode (source "rationalised", so its provenance says the
    reference was a hint), or None. Idempotent by run_key."""
    from agent.policy import PolicySpec
    from memory.models import Episode

    existing = store.episode_by_key(run_key)
    if existing is not None:
        return existing
    trajectory = rationalise(model, suite, store, task, PolicySpec.model_validate(policy.spec), tools)
    if trajectory is None:
        return None
    final = trajectory.steps[-1].input
    return store.add_episode(Episode(
        run_key=run_key, task_id=task.id, split="train", policy_id=policy.id,
        model_fingerprint=getattr(model, "fingerprint", "unknown"), cycle=cycle, source=RATIONALISED_SOURCE,
        trajectory=trajectory.to_stored(), final_answer=final, reward=1.0, verdict="pass",
        feedback="rationalised: written with the reference answer as a hint (STaR)"))


# ---------------------------------------------------------------- the adapter store


def adapters_dir(home: Path) -> Path:
    return Path(home) / "adapters"


def save_adapter(home: Path, adapter, provenance: dict[str, Any], measured: dict[str, Any] | None = None) -> str:
    """Write the adapter GGUF (provenance embedded and beside it); return its digest.

    `measured` (timings, losses) goes only into the JSON: the same training reproduced must
    give the same file, hence the same address.
    """
    from agent.model.lora_gguf import write_adapter

    folder = adapters_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    record = json.dumps(provenance, sort_keys=True)
    adapter.meta["provenance"] = record
    tmp = write_adapter(adapter, folder / f".incoming-{hashlib.sha256(record.encode()).hexdigest()[:12]}.gguf")
    digest = sha256_file(tmp)
    final = folder / f"{digest}.gguf"
    tmp.replace(final)
    (folder / f"{digest}.json").write_text(json.dumps({"sha256": digest, **provenance, "measured": measured or {}}, indent=2, sort_keys=True))
    return f"sha256:{digest}"


def resolve_adapter(home: Path, ref: str) -> Path:
    """The verified file for a policy's adapter reference (`sha256:<hex>`)."""
    m = _DIGEST.match(ref.strip())
    if m is None:
        raise ConfigError(f"adapter reference {ref!r} is not sha256:<64 hex>; name a stored adapter")
    path = adapters_dir(home) / f"{m.group(1)}.gguf"
    if not path.is_file():
        raise ConfigError(f"adapter {ref} is not in {adapters_dir(home)}; retrain it or roll the policy back")
    actual = sha256_file(path)
    if actual != m.group(1):
        raise IntegrityError(f"{path} has SHA-256 {actual}, expected {m.group(1)}; delete it and retrain")
    return path


def adapter_for_base(home: Path, ref: str, base_gguf: Path) -> Path:
    """`resolve_adapter`, then checked against the base it is about to be applied to.

    llama.cpp does not refuse an adapter made for another architecture: it crashes the process
    (a segfault in decode, reproduced on the qwen2 default with a llama-tagged adapter, which
    was the "successive adapter loads" crash). So the architecture, tensor names and shapes are
    checked here, and a misfit is one line naming the adapter, not a dead process.
    """
    return check_fits_base(resolve_adapter(home, ref), base_gguf, name=ref)


def check_fits_base(path: Path, base_gguf: Path, *, name: str,
                    fix: str = "train one for this model or roll the policy back") -> Path:
    """`path` if it is a LoRA adapter GGUF made for `base_gguf` (see adapter_for_base); a
    ConfigError naming `name` and `fix` otherwise."""
    from agent.model import lora_gguf
    from agent.model.train import ENABLE_HINT

    try:
        lora_gguf.check_fits(lora_gguf.read_adapter(path), lora_gguf.read_base_info(base_gguf))
    except ImportError as exc:
        raise ConfigError(f"applying a LoRA adapter checks it with the gguf package; {ENABLE_HINT}") from exc
    except (lora_gguf.LoraFormatError, ValueError, OSError) as exc:
        raise ConfigError(f"adapter {name} does not fit {Path(base_gguf).name}: {exc}; {fix}") from exc
    return path


def provenance_of(home: Path, ref: str) -> dict[str, Any]:
    path = resolve_adapter(home, ref)
    return json.loads(path.with_suffix(".json").read_text())


def train_and_store(settings, examples: Sequence[TrainExample], cfg=None, *, progress="default",
                    stop_after: int | None = None):
    """Train a LoRA on the examples for the configured embedded model and store it.

    Returns (adapter reference, TrainResult). A run interrupted after a checkpoint resumes
    when called again with the same examples and settings (the run directory is keyed by them).
    """
    from agent.model import local_model, lora_gguf, train

    train.require_train_extra()
    cfg = cfg or train.TrainConfig()
    if not examples:
        raise ConfigError("no verified train solutions to learn from yet; run acquisition cycles first")
    gguf_path, weights_sha = local_model.resolve_weights(settings.model, settings.models_dir)
    base_dir = train.fp32_base_dir(settings.cache_dir, gguf_path, weights_sha)
    ids = [e.id for e in examples]
    provenance = {
        "kind": "lora",
        "base_model": settings.model.model,
        "base_sha256": weights_sha,
        "example_ids": ids,
        "task_ids": sorted({e.task_id for e in examples}),
        "episode_ids": sorted(e.episode_id for e in examples if e.episode_id is not None),
        "sources": {s: sum(e.source == s for e in examples) for s in sorted({e.source for e in examples})},
        "split": "train",
        "train": cfg.model_dump(mode="json"),
    }
    run_key = hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest()[:16]
    kwargs = {} if progress == "default" else {"progress": progress}
    result = train.train_lora(base_dir, [list(e.messages) for e in examples], cfg,
                              run_dir=Path(settings.home) / "train" / run_key, stop_after=stop_after, **kwargs)
    if result.stopped_by == "stopped":
        return "", result
    base = lora_gguf.read_base_info(gguf_path)
    adapter = lora_gguf.from_peft_state(result.lora_state, base, cfg.alpha)
    provenance["steps"] = result.steps
    measured = {"seconds": round(result.seconds, 2), "tokens": result.tokens,
                "tokens_per_s": round(result.tokens_per_s, 2), "final_loss": result.losses[-1] if result.losses else None,
                "stopped_by": result.stopped_by, "resumed_from": result.resumed_from}
    return save_adapter(settings.home, adapter, provenance, measured), result


def finetune_local(settings, store, *, progress="default") -> str:
    """The loop's in-weight update for the embedded model: a stored adapter reference, or ""
    when there are fewer verified train examples than EVOLVE_LOOP__FINETUNE_MIN_ROWS."""
    from agent.model.train import TrainConfig, require_train_extra

    require_train_extra()
    if settings.model.backend != "embedded":
        raise ConfigError("EVOLVE_LOOP__FINETUNE=local trains the embedded model; set EVOLVE_MODEL__BACKEND=embedded "
                          "or use finetune=openai with an endpoint")
    from tools.registry import default_tools

    examples = verified_examples(store, default_tools(settings))
    if len(examples) < settings.loop.finetune_min_rows:
        return ""
    cfg = TrainConfig(steps=settings.loop.finetune_steps, max_minutes=settings.loop.finetune_minutes,
                      seed=settings.model.seed)
    ref, _ = train_and_store(settings, examples, cfg, progress=progress)
    return ref
