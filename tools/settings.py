"""The settings sections the tools own. `agent/config.py` composes them into `Settings`; the
tools never read the environment themselves."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SandboxSettings(BaseModel):
    # Running model-written code without OS isolation must be asked for explicitly.
    allow_unsafe: bool = False
    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 512
    max_file_mb: int = 16
    max_open_files: int = 64
    max_procs: int = 32
    max_output_bytes: int = 20_000
    # Sizes of the sandbox's writable tmpfs mounts (they live in RAM): /work, /tmp, /dev/shm.
    work_mb: int = 64
    tmp_mb: int = 64
    shm_mb: int = 16


class BrowserSettings(BaseModel):
    # Hosts admitted even when they resolve to private or loopback addresses.
    allow_hosts: list[str] = Field(default_factory=list)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    max_bytes: int = 2_000_000
    max_redirects: int = 10
    javascript: bool = False
    chromium_path: str = "/usr/bin/chromium"
    max_page_chars: int = 6_000
    # Extraction of hostile HTML is bounded: tags kept, CPU time and memory of the parser.
    max_tags: int = 20_000
    extract_timeout_s: float = 5.0
    extract_memory_mb: int = 512


def sandbox_environment() -> dict[str, str]:
    """A minimal environment for child processes: no keys, no EVOLVE_* values."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
