"""The one place that reads the environment and config files.

Everything else in evolve receives a `Settings` object. Sources, highest priority first:
explicit keyword arguments, `EVOLVE_*` environment variables (nested groups use a double
underscore: `EVOLVE_MODEL__BASE_URL`), `evolve.toml` (path from `EVOLVE_CONFIG`, else
`./evolve.toml`, else `<home>/evolve.toml`), then the defaults below.

A `./evolve.toml` comes with whatever directory the user is in, e.g. a cloned project, so it
may not set the keys that decide where the API key goes, what the browser may reach or whether
model code runs unisolated (`LOCAL_CONFIG_GUARDED`) unless EVOLVE_TRUST_LOCAL_CONFIG=1; the
files the user chose (EVOLVE_CONFIG, <EVOLVE_HOME>/evolve.toml) may.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agent.errors import ConfigError
from memory.settings import MemorySettings
from tools.settings import BrowserSettings, SandboxSettings

__all__ = ["BrowserSettings", "ConfigError", "LoopSettings", "MemorySettings", "ModelSettings",
           "SandboxSettings", "Settings", "load_settings"]


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var)
    return Path(base) if base else Path.home() / fallback


class ModelSettings(BaseModel):
    # "embedded": llama.cpp in-process; "openai": any OpenAI-compatible endpoint.
    backend: Literal["embedded", "openai"] = "embedded"
    # Embedded: a preset name ("qwen2.5-coder-1.5b" the default, "qwen2.5-coder-0.5b" the fast
    # one, "smollm2-135m" for tests) or a path to a GGUF file.
    model: str = "qwen2.5-coder-1.5b"
    # Expected SHA-256 of a custom GGUF (presets carry their own); empty means "do not check".
    sha256: str = ""
    n_ctx: int = 4096
    # 0 = choose from the measured policy in agent/model/local_model.py (see docs/benchmarks.md).
    n_threads: int = 0
    seed: int = 0
    # OpenAI-compatible endpoint.
    base_url: str = ""
    api_key: SecretStr = SecretStr("")
    # "native": send tools=...; "json": constrain output to a tool-call JSON schema;
    # "auto": native for endpoints that take OpenAI's json_schema form (the probe below), json for
    # the rest (llama.cpp's servers do not parse tool calls in auto mode) and the embedded model.
    tool_mode: Literal["auto", "native", "json"] = "auto"
    # How an endpoint is asked for schema-shaped JSON: "auto" probes once and caches the result
    # (EVOLVE_HOME/endpoints.json); or force "json_schema" (OpenAI), "json_object" (llama.cpp's
    # server, schema inside), "tools" (a forced tool call), "prompt" (schema in the prompt only).
    structured_output: Literal["auto", "json_schema", "json_object", "tools", "prompt"] = "auto"
    timeout_s: float = 120.0
    max_retries: int = 5
    retry_max_wait_s: float = 30.0
    temperature: float = 0.0
    max_tokens: int = 512


class LoopSettings(BaseModel):
    suite: str = "gsm8k"
    cycles: int = 3
    train_per_cycle: int = 8
    dev_size: int = 50
    attempts: int = 1
    max_tokens_per_task: int = 2048
    token_budget: int = 0  # 0 = unlimited
    wall_time_s: float = 0.0  # 0 = unlimited
    patience: int = 3
    exemplars_k: int = 2
    insights_max: int = 8
    significance: float = 0.05
    min_delta: float = 0.0
    bootstrap_samples: int = 2000
    recursion_limit: int = 10_007
    self_propose: bool = False
    # The candidate search (agent/loop/proposers.py, gate.py). 1 candidate and no screening is
    # the single in-context update per cycle; more candidates are each one mutation of the
    # incumbent, screened on `screen_size` train items (0: no screening), the best `survivors`
    # evaluated on dev, Holm-corrected. `max_cost_ratio` (0: off) caps a promoted candidate's
    # tokens per task relative to the incumbent's.
    candidates_per_cycle: int = Field(default=1, ge=1)
    screen_size: int = Field(default=0, ge=0)
    survivors: int = Field(default=2, ge=1)
    futility_stop: bool = True
    # Early success (Haybittle-Peto, agent/loop/gate.py): a candidate whose exact McNemar p on
    # the dev items run so far is below this (and below significance / candidates on dev, so the
    # gate is sure to accept it) stops there and goes to the gate. 0: off.
    efficacy_p: float = Field(default=0.001, ge=0.0, lt=1.0)
    max_cost_ratio: float = Field(default=0.0, ge=0.0)
    # 0: off. Otherwise the gate's winner must also beat the incumbent, significantly, on this
    # many further dev items it was not chosen on (agent/loop/evaluate.py `_confirm`).
    confirm_size: int = Field(default=0, ge=0)
    # Which proposers fill the candidate slots, in order (names in agent/loop/proposers.py).
    proposers: tuple[Literal["context", "mixed_vote", "program", "program_with_reasoning", "vote", "program_vote",
                             "reason", "tools", "instruction"], ...] = (
        "context", "mixed_vote", "program", "program_vote", "program_with_reasoning", "vote", "reason",
        "tools", "instruction")
    # In-weight update: "off"; "export" writes verified train episodes as chat fine-tuning
    # JSONL at each update; "openai" also submits a fine-tuning job to the configured
    # OpenAI-compatible endpoint, waits for it, and puts the new model id in the candidate;
    # "local" trains a LoRA adapter for the embedded model on the CPU (needs evolve[train]).
    finetune: Literal["off", "export", "openai", "local"] = "off"
    finetune_steps: int = 30
    finetune_minutes: float = 0.0  # 0: the step budget alone
    finetune_min_rows: int = 10
    finetune_poll_s: float = 30.0
    finetune_timeout_s: float = 6 * 3600.0
    # With finetune on ("export", "openai", "local"), acquisition adds this many sampled attempts
    # per train task at `finetune_temperature` (distinct verified solutions to learn from), and
    # STaR-rationalises train tasks none of whose attempts passed (marked in provenance).
    finetune_samples: int = Field(default=2, ge=0, le=16)
    finetune_temperature: float = Field(default=0.7, gt=0.0, le=2.0)
    finetune_rationalise: bool = True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EVOLVE_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    home: Path = Field(default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share") / "evolve")
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "evolve")
    database_url: str = ""
    log_level: str = "INFO"

    model: ModelSettings = Field(default_factory=ModelSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    browser: BrowserSettings = Field(default_factory=BrowserSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _config_file()
        if toml is not None and toml == Path("evolve.toml"):
            _check_local_config(toml)
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @model_validator(mode="after")
    def _fill_derived(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'evolve.db'}"
        if self.model.backend == "openai" and not self.model.api_key.get_secret_value():
            # The OpenAI SDK's conventional variable is honoured too, here and only here.
            fallback = os.environ.get("OPENAI_API_KEY", "")
            if fallback:
                self.model.api_key = SecretStr(fallback)
        return self

    # Paths derived from home/cache, kept here so no other module invents its own.
    @property
    def chroma_dir(self) -> Path:
        return self.home / "chroma"

    @property
    def checkpoint_path(self) -> Path:
        return self.home / "checkpoints.sqlite"

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def locks_dir(self) -> Path:
        return self.home / "locks"

    def ensure_dirs(self) -> None:
        for path in (self.home, self.cache_dir, self.locks_dir):
            path.mkdir(parents=True, exist_ok=True)


def _config_file() -> Path | None:
    explicit = os.environ.get("EVOLVE_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"EVOLVE_CONFIG={explicit!r} does not exist; point it at an evolve.toml file")
        return path
    local = Path("evolve.toml")
    if local.is_file():
        return local
    home = os.environ.get("EVOLVE_HOME")
    if home and (Path(home) / "evolve.toml").is_file():
        return Path(home) / "evolve.toml"
    return None


# Keys a working-directory evolve.toml may not set without EVOLVE_TRUST_LOCAL_CONFIG=1.
LOCAL_CONFIG_GUARDED = (
    "model.base_url", "model.api_key", "browser.allow_hosts", "browser.chromium_path",
    "sandbox.allow_unsafe", "database_url",
)
TRUST_LOCAL_VARIABLE = "EVOLVE_TRUST_LOCAL_CONFIG"


def _check_local_config(path: Path) -> None:
    if os.environ.get(TRUST_LOCAL_VARIABLE, "") == "1":
        return
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path.resolve()} cannot be read as TOML ({exc}); fix or remove it") from None
    for key in LOCAL_CONFIG_GUARDED:
        node: object = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            raise ConfigError(
                f"{path.resolve()} (in the current directory) sets {key}, which only a config file "
                f"you chose may set: set {TRUST_LOCAL_VARIABLE}=1 to trust it, or move the key to "
                "the file named by EVOLVE_CONFIG or to <EVOLVE_HOME>/evolve.toml"
            )


def runtime_threads_env() -> dict[str, str]:
    """OpenMP variables the embedded runtime should see, read from the process environment."""
    return {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_"))}


def load_settings(**overrides) -> Settings:
    """Read settings from the environment and config file, with keyword overrides on top."""
    import tomllib

    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{_config_file()} is not valid TOML ({exc}); fix that line or point "
                          f"EVOLVE_CONFIG at another file") from None
    except SettingsError as exc:
        # pydantic-settings parses complex values (lists, tables) from the environment as JSON.
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise ConfigError(f"{exc}{cause}; list and table settings given in the environment are JSON, "
                          f'e.g. EVOLVE_BROWSER__ALLOW_HOSTS=\'["localhost"]\'') from None
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = [str(part) for part in e["loc"]]
            var = "EVOLVE_" + "__".join(part.upper() for part in loc)
            problems.append(f"{var}={e.get('input')!r}: {e['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
