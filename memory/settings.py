"""The settings section the memory layer owns; `agent/config.py` composes it into `Settings`.

The store is handed the composed settings object and reads only these attributes from it:
`database_url`, `home`, `chroma_dir`, `locks_dir`, `cache_dir`, `ensure_dirs()` and `memory`.
"""

from __future__ import annotations

from pydantic import BaseModel


class MemorySettings(BaseModel):
    # Chroma server URL (http://host:port); empty means an embedded persistent store.
    chroma_url: str = ""
    dedup_threshold: float = 0.95
    embedding_batch: int = 32
    # How long a worker's claim on a queue item lasts without renewal (it renews at every
    # solver step); after that another worker may take the item over.
    queue_lease_s: float = 900.0
