"""Index upkeep: the Chroma index is derived from the experience table and kept in step with it.

On first use the store compares counts, a sample of ids and the embedder per bucket, and repairs
what differs; `reindex` rebuilds everything from the vectors stored in the table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func
from sqlmodel import col, select

from memory.base import StoreBase, vec_from_bytes, vec_to_bytes
from memory.index import bucket_name, parse_bucket
from memory.models import Experience

SAMPLE_CHECK = 16


class IndexUpkeep(StoreBase):
    # -- index upkeep ---------------------------------------------------------------------

    def _embed_missing(self) -> int:
        """Give every active row a vector from the current embedder; returns how many changed."""
        model_id = self.embedder.model_id
        changed = 0
        batch = max(32, self.settings.memory.embedding_batch * 8)
        while True:
            with self.session(read_only=True) as s:
                rows = s.exec(select(Experience.id, Experience.key, Experience.content)
                              .where(Experience.active == True,  # noqa: E712
                                     (Experience.embedding == None) | (Experience.embedding_model != model_id))  # noqa: E711
                              .limit(batch)).all()
            if not rows:
                return changed
            vecs = self._embed([key or content for _, key, content in rows])
            with self.session() as s:
                for (rid, _, _), v in zip(rows, vecs):
                    row = s.get(Experience, rid)
                    row.embedding = vec_to_bytes(v)
                    row.embedding_model = model_id
                    s.add(row)
            changed += len(rows)

    def _expected_buckets(self) -> dict[str, int]:
        with self.session(read_only=True) as s:
            rows = s.exec(select(Experience.kind, Experience.split, Experience.trust, func.count())
                          .where(Experience.active == True)  # noqa: E712
                          .group_by(Experience.kind, Experience.split, Experience.trust)).all()
        return {bucket_name(k, sp, t): int(n) for k, sp, t, n in rows}

    def _bucket_ids(self, bucket: str, *, sample: int | None = None) -> list[int]:
        kind, split, trust = parse_bucket(bucket)
        with self.session(read_only=True) as s:
            q = select(Experience.id).where(Experience.active == True, Experience.kind == kind,  # noqa: E712
                                            Experience.split == split, Experience.trust == trust)
            if sample is None:
                return list(s.exec(q).all())
            # The newest rows are the likeliest to be missing after a crash; add random ones.
            newest = list(s.exec(q.order_by(col(Experience.id).desc()).limit(sample // 2)).all())
            rand = list(s.exec(q.order_by(func.random()).limit(sample - len(newest))).all())
            return sorted(set(newest + rand))

    def _vectors_for(self, ids: list[int]) -> np.ndarray:
        out = np.empty((len(ids), self.embedder.dim), dtype=np.float32)
        with self.session(read_only=True) as s:
            rows = {rid: emb for rid, emb in s.exec(select(Experience.id, Experience.embedding)
                                                     .where(col(Experience.id).in_(ids))).all()}
        for i, rid in enumerate(ids):
            out[i] = vec_from_bytes(rows[rid])
        return out

    def check_index(self) -> dict[str, Any]:
        """Compare the index with the database (counts, a sample of ids, embedder) and repair
        what differs. Returns what was done."""
        index = self._index
        assert index is not None
        report: dict[str, Any] = {"embedded": self._embed_missing(), "repaired": {}, "rebuilt": False}
        expected = self._expected_buckets()
        present = index.counts()
        if any(index.embedder_of(b) not in (None, self.embedder.model_id) for b in present):
            report["rebuilt"] = True
            report["indexed"] = self._rebuild()
            return report
        for bucket in sorted(set(expected) | set(present)):
            ok = expected.get(bucket, 0) == present.get(bucket, 0)
            if ok and expected.get(bucket, 0):
                sample = self._bucket_ids(bucket, sample=SAMPLE_CHECK)
                ok = index.contains(bucket, sample) == set(sample)
            if not ok:
                want = set(self._bucket_ids(bucket))
                report["repaired"][bucket] = index.reconcile(bucket, want, self._vectors_for)
        return report

    def _rebuild(self) -> int:
        index = self._index
        with index.writing():
            index.drop_all()
            total = 0
            for bucket in self._expected_buckets():
                ids = self._bucket_ids(bucket)
                for start in range(0, len(ids), 5000):
                    chunk = ids[start : start + 5000]
                    index.upsert(bucket, chunk, self._vectors_for(chunk))
                total += len(ids)
        return total

    def reindex(self) -> int:
        """Rebuild the whole index from the database; returns the number of experiences indexed."""
        if self._index is None:
            self._index_checked = True  # about to rebuild anyway; skip the open-time check
            _ = self.index
        with self._index.writing():
            self._embed_missing()
            return self._rebuild()

