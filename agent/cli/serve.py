"""`evolve serve`: the verified embedded model as one OpenAI-compatible endpoint.

Several workers and the improver then share one model process (one copy of the weights in
memory, one llama.cpp context) instead of loading the model each. The server is
llama-cpp-python's own (the optional extra `evolve[serve]`); evolve only chooses and verifies
the weights, binds it to loopback unless told otherwise, and prints the settings clients need.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Optional

import typer

from agent.config import ConfigError, Settings, load_settings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def alias_for(settings: Settings, sha256: str = "", lora_sha256: str = "") -> str:
    """The model id clients send: the preset name (or the GGUF file's stem) with the weights'
    hash and the adapter's. A client records `openai:<url>#<model id>` as the fingerprint of
    every answer (agent/model/openai_backend.py), so the id must change when the weights do: a
    server restarted with another adapter on the same port is then another model to the store."""
    from agent.model.local_model import PRESETS

    name = settings.model.model
    alias = name if name in PRESETS else Path(name).expanduser().stem
    if sha256:
        alias += f"@{sha256[:16]}"
    if lora_sha256:
        alias += f"+lora-{lora_sha256[:16]}"
    return alias


def _adapter(settings: Settings, lora: Optional[str | Path], base: Path) -> Optional[Path]:
    """The adapter to serve: a stored one by reference (`sha256:<hex>`, hash-verified) or a file,
    either way checked against the base first: llama.cpp crashes on an adapter made for another
    model instead of refusing it (agent/model/adapters.py)."""
    from agent.model import adapters

    if lora is None:
        return None
    if str(lora).startswith("sha256:"):
        return adapters.adapter_for_base(settings.home, str(lora), base)
    file = Path(lora).expanduser()
    if not file.is_file():
        raise ConfigError(f"--lora {lora}: no such adapter file; give a GGUF LoRA file or a stored "
                          f"adapter as sha256:<hex> (see `evolve policy show`)")
    return adapters.check_fits_base(file, base, name=f"--lora {lora}",
                                    fix="give an adapter trained for this model")


def server_plan(settings: Settings, *, host: str, port: int, lora: Optional[str | Path]) -> dict:
    """Everything `serve` hands llama-cpp-python's server, after checking it (no model loaded)."""
    from agent.model import local_model

    if settings.model.backend != "embedded":
        raise ConfigError("evolve serve runs the embedded model; unset EVOLVE_MODEL__BACKEND (or set it to "
                          "embedded) in the serving process, and point the workers at it instead")
    key = settings.model.api_key.get_secret_value()
    if not _is_loopback(host) and not key:
        raise ConfigError(f"--host {host} exposes the model beyond this machine; set EVOLVE_MODEL__API_KEY "
                          f"so clients must present it, or serve on 127.0.0.1")
    path, sha = local_model.resolve_weights(settings.model, settings.models_dir)  # hash-checked
    stored = lora is not None and str(lora).startswith("sha256:")
    lora = _adapter(settings, lora, path)
    # A stored adapter's file is named by its SHA-256, which resolve_adapter has just verified:
    # hashing it a second time would only cost start-up time.
    lora_sha = (lora.stem if stored else local_model.sha256_file(lora)) if lora else ""
    threads = local_model.choose_threads(settings.model.n_threads)
    return {
        "model": str(path), "sha256": sha, "alias": alias_for(settings, sha, lora_sha), "host": host, "port": port,
        "n_ctx": settings.model.n_ctx, "threads": threads, "seed": settings.model.seed,
        "api_key": key or None, "lora": str(lora) if lora else None,
    }


def client_env(plan: dict) -> str:
    host = "127.0.0.1" if plan["host"] in ("0.0.0.0", "::") else plan["host"]
    url = f"http://{host}:{plan['port']}/v1"
    return f"EVOLVE_MODEL__BACKEND=openai EVOLVE_MODEL__BASE_URL={url} EVOLVE_MODEL__MODEL={plan['alias']}"


def run_server(plan: dict) -> None:
    from agent.model.local_model import apply_openmp_defaults

    apply_openmp_defaults(plan["threads"])  # before llama_cpp (and libgomp) loads
    try:
        import uvicorn
        from llama_cpp.server.app import create_app
        from llama_cpp.server.settings import ModelSettings, ServerSettings
    except ImportError as exc:
        raise ConfigError('evolve serve needs the server extra: pip install "evolve[serve]" '
                          f'(llama-cpp-python[server]); missing {exc.name}') from None
    model = ModelSettings(
        model=plan["model"], model_alias=plan["alias"], n_ctx=plan["n_ctx"], n_threads=plan["threads"],
        n_threads_batch=plan["threads"], seed=plan["seed"], lora_path=plan["lora"], verbose=False,
    )
    server = ServerSettings(host=plan["host"], port=plan["port"], api_key=plan["api_key"])
    app = create_app(server_settings=server, model_settings=[model])
    # uvicorn's "Uvicorn running on ..." line (stderr) is the readiness signal scripts wait for.
    uvicorn.run(app, host=plan["host"], port=plan["port"], access_log=False, log_level="info")


def serve(
    host: str = typer.Option("127.0.0.1", help="Listen address; anything but loopback needs EVOLVE_MODEL__API_KEY."),
    port: int = typer.Option(8011, help="Listen port."),
    lora: Optional[str] = typer.Option(None, "--lora", help="A GGUF LoRA adapter file, or a stored adapter "
                                                             "as sha256:<hex>, to apply."),
) -> None:
    """Serve the configured embedded model (verified weights) as an OpenAI-compatible endpoint."""
    settings = load_settings()
    settings.ensure_dirs()
    plan = server_plan(settings, host=host, port=port, lora=lora)
    sys.stderr.write(f"serving {plan['alias']} (gguf-sha256:{plan['sha256'][:16]}…, {plan['threads']} "
                     f"thread(s)) on http://{plan['host']}:{plan['port']}/v1\n"
                     f"clients: {client_env(plan)}\n")
    sys.stderr.flush()
    run_server(plan)
