"""The store's plumbing: engine, sessions, embedder and index handles, shared by every noun module.

Each noun (tasks and episodes, experiences, policies, runs, the queue, export, index upkeep)
is a mixin over `StoreBase`; memory/store.py composes them into the one `Store` the agent uses.
Only memory/ opens sessions.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
from sqlmodel import Session

from memory.db import make_engine, session_scope
from memory.index import ExperienceIndex


def vec_to_bytes(v: np.ndarray) -> bytes:
    return np.asarray(v, dtype="<f4").tobytes()


def vec_from_bytes(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<f4")


class StoreBase:
    def __init__(self, settings, embedder=None) -> None:
        self.settings = settings
        settings.ensure_dirs()
        self.engine = make_engine(settings)
        self._embedder = embedder
        self._index: ExperienceIndex | None = None
        self._index_checked = False

    # -- plumbing -------------------------------------------------------------------------

    @property
    def embedder(self):
        if self._embedder is None:
            from memory.embeddings import default_embedder

            self._embedder = default_embedder(self.settings)
        return self._embedder

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        vecs = np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.maximum(norms, 1e-12)

    @property
    def index(self) -> ExperienceIndex:
        """The index, checked against the database the first time it is used."""
        if self._index is None:
            # We always hand Chroma vectors, never texts, so the collections carry no embedding
            # function: one persisted in a collection's config would clash with the next
            # embedder. Which embedder made the vectors is kept in collection metadata instead.
            self._index = ExperienceIndex(
                self.settings,
                embedder_id=lambda: self.embedder.model_id,
                dim=lambda: self.embedder.dim,
            )
        if not self._index_checked:
            self._index_checked = True
            self.check_index()
        return self._index

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        with session_scope(self.engine, read_only=read_only) as s:
            yield s

    def add(self, row):
        """Insert any table row (EvalRun, EvalResult, Promotion, Cycle, QueueItem, ...)."""
        with self.session() as s:
            s.add(row)
            s.flush()
            s.refresh(row)
        return row

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
        self.engine.dispose()
