"""The store: the only memory API the agent uses.

The database is the source of truth; the Chroma index (memory/index.py) is derived from it.

The firewall, enforced here rather than trusted to callers:
- An experience's split is the most restrictive of the split it is given and the splits of the
  tasks and episodes it names as sources (train < dev < test); a task's split comes from the
  database, or from its id ("<suite>/<split>/<id>") when the task is unknown. Only split
  "train" is ever retrieved or exported, and no update can move a row back towards "train".
- Trust: only "verified" experiences are retrieved. "untrusted" (derived from web pages and
  other tool output) and "unverified" ones are quarantined until `confirm_experience` (or a
  successful train episode that showed them, via `record_usage`) confirms them. No update can
  raise trust by hand.
- Usefulness counts only train episodes, so held-out results never steer which experiences
  are shown.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import func, text
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlmodel import Session, col, select

from memory.errors import IntegrityError
from memory.db import make_engine, session_scope
from memory.index import ExperienceIndex, bucket_name, parse_bucket
from memory.migrations import current_version
from memory.trajectory import Trajectory
from memory.models import (
    EXPERIENCE_KINDS,
    SPLITS,
    TRUST_LEVELS,
    Episode,
    Experience,
    ExperienceUsage,
    Policy,
    Pointer,
    Task,
)

_SPLIT_RANK = {s: i for i, s in enumerate(SPLITS)}  # train < dev < test
_TRUST_RANK = {"untrusted": 0, "unverified": 1, "verified": 2}
# Similarities this close count as a tie, which usefulness then breaks.
TIE_MARGIN = 0.01
SAMPLE_CHECK = 16


def now() -> datetime:
    return datetime.now(timezone.utc)


def digest_of(content: str) -> str:
    return hashlib.sha256(" ".join(content.split()).encode()).hexdigest()


def split_from_task_id(task_id: str) -> str | None:
    parts = task_id.split("/")
    return parts[1] if len(parts) >= 3 and parts[1] in _SPLIT_RANK else None


def most_restrictive(*splits: str | None) -> str:
    known = [s for s in splits if s is not None]
    for s in known:
        if s not in _SPLIT_RANK:
            raise ValueError(f"unknown split {s!r}; expected one of {SPLITS}")
    return max(known, key=_SPLIT_RANK.__getitem__) if known else "train"


def _vec_to_bytes(v: np.ndarray) -> bytes:
    return np.asarray(v, dtype="<f4").tobytes()


def _vec_from_bytes(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<f4")


class Store:
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

    # -- tasks ----------------------------------------------------------------------------

    def upsert_tasks(self, tasks: Iterable[Task]) -> int:
        n = 0
        with self.session() as s:
            for t in tasks:
                if t.split not in _SPLIT_RANK:
                    raise ValueError(f"task {t.id!r} has split {t.split!r}; expected one of {SPLITS}")
                existing = s.get(Task, t.id)
                if existing is not None and existing.split != t.split:
                    # Moving a held-out task into train would leak it; renaming is the fix.
                    raise IntegrityError(
                        f"task {t.id!r} is stored with split {existing.split!r}, not {t.split!r}; "
                        "give the task a new id instead of changing its split"
                    )
                s.merge(Task.model_validate(t.model_dump()))
                n += 1
        return n

    def get_task(self, task_id: str) -> Task | None:
        with self.session(read_only=True) as s:
            return s.get(Task, task_id)

    def tasks(self, suite: str | None = None, split: str | None = None, limit: int | None = None) -> list[Task]:
        with self.session(read_only=True) as s:
            q = select(Task).order_by(Task.id)
            if suite is not None:
                q = q.where(Task.suite == suite)
            if split is not None:
                q = q.where(Task.split == split)
            if limit is not None:
                q = q.limit(limit)
            return list(s.exec(q).all())

    # -- episodes -------------------------------------------------------------------------

    def add_episode(self, ep: Episode) -> Episode:
        """Insert an episode; if its run_key exists, return the stored one unchanged."""
        try:
            with self.session() as s:
                found = s.exec(select(Episode).where(Episode.run_key == ep.run_key)).first()
                if found is not None:
                    return found
                task = s.get(Task, ep.task_id)
                row = Episode.model_validate(ep.model_dump(exclude={"id"}))
                row.split = most_restrictive(row.split, task.split if task else None, split_from_task_id(ep.task_id))
                s.add(row)
                s.flush()
                s.refresh(row)
                return row
        except SAIntegrityError:
            # Another writer (a database without write serialisation) inserted the key first.
            found = self.episode_by_key(ep.run_key)
            if found is None:
                raise
            return found

    def episode_by_key(self, run_key: str) -> Episode | None:
        with self.session(read_only=True) as s:
            return s.exec(select(Episode).where(Episode.run_key == run_key)).first()

    def get_episode(self, episode_id: int) -> Episode | None:
        with self.session(read_only=True) as s:
            return s.get(Episode, episode_id)

    def episodes(self, *, task_id: str | None = None, split: str | None = None, policy_id: str | None = None,
                 cycle: int | None = None, verdict: str | None = None, source: str | None = None,
                 limit: int | None = None) -> list[Episode]:
        with self.session(read_only=True) as s:
            q = select(Episode).order_by(Episode.id)
            for column, value in ((Episode.task_id, task_id), (Episode.split, split), (Episode.policy_id, policy_id),
                                  (Episode.cycle, cycle), (Episode.verdict, verdict), (Episode.source, source)):
                if value is not None:
                    q = q.where(column == value)
            if limit is not None:
                q = q.limit(limit)
            return list(s.exec(q).all())

    # -- experiences: writing -------------------------------------------------------------

    def _effective_split(self, s: Session, split: str, task_ids: Sequence[str], episode_ids: Sequence[int]) -> str:
        found: list[str | None] = [split]
        for tid in task_ids:
            task = s.get(Task, tid)
            found.append(task.split if task is not None else None)
            found.append(split_from_task_id(tid))
        for eid in episode_ids:
            ep = s.get(Episode, eid)
            if ep is not None:
                found.append(ep.split)
                task = s.get(Task, ep.task_id)
                found.append(task.split if task is not None else split_from_task_id(ep.task_id))
        return most_restrictive(*found)

    def add_experience(self, kind: str, content: str, *, key: str = "", source_task_ids: Sequence[str] = (),
                       source_episode_ids: Sequence[int] = (), split: str = "train", trust: str = "verified",
                       model_fingerprint: str = "", policy_id: str = "", meta: dict[str, Any] | None = None,
                       importance: int = 1) -> Experience | None:
        """Store a new experience and index it. Returns None for a duplicate.

        A duplicate is an active experience of the same kind and split with the same normalised
        content, or whose vector has cosine >= `memory.dedup_threshold` with this one and whose
        trust is at least as high. The duplicate absorbs the new provenance and, for insights,
        one more importance count (ExpeL's "agree"). A less trusted near-duplicate is instead
        superseded: deactivated, with the new row taking its place.

        The stored split may be more restrictive than `split` (see the module docstring); a row
        whose split is not "train" is kept for audit but never retrieved."""
        if kind not in EXPERIENCE_KINDS:
            raise ValueError(f"unknown experience kind {kind!r}; expected one of {EXPERIENCE_KINDS}")
        if trust not in TRUST_LEVELS:
            raise ValueError(f"unknown trust level {trust!r}; expected one of {TRUST_LEVELS}")
        if not content.strip():
            raise ValueError("an experience needs content")
        vec = self._embed([key or content])[0]
        dig = digest_of(content)
        index = self.index
        with index.writing():
            with self.session() as s:
                eff_split = self._effective_split(s, split, source_task_ids, source_episode_ids)
                dup = s.exec(select(Experience).where(Experience.kind == kind, Experience.digest == dig,
                                                      Experience.split == eff_split, Experience.active == True)  # noqa: E712
                             ).first()
                superseded: list[Experience] = []
                if dup is None:
                    buckets = [bucket_name(kind, eff_split, t) for t in TRUST_LEVELS]
                    for hit_id, sim in index.query(buckets, vec, 5):
                        if sim < self.settings.memory.dedup_threshold:
                            break
                        other = s.get(Experience, hit_id)
                        if other is None or not other.active:
                            continue
                        if _TRUST_RANK[other.trust] >= _TRUST_RANK[trust]:
                            dup = other
                            break
                        superseded.append(other)
                if dup is not None:
                    dup.source_task_ids = sorted(set(dup.source_task_ids) | set(source_task_ids))
                    dup.source_episode_ids = sorted(set(dup.source_episode_ids) | set(source_episode_ids))
                    if kind == "insight":
                        dup.importance += 1
                    dup.updated_at = now()
                    s.add(dup)
                    return None
                row = Experience(
                    kind=kind, content=content, key=key, digest=dig, split=eff_split, trust=trust,
                    source_task_ids=list(source_task_ids), source_episode_ids=list(source_episode_ids),
                    model_fingerprint=model_fingerprint, policy_id=policy_id, importance=importance,
                    meta=dict(meta or {}), embedding=_vec_to_bytes(vec), embedding_model=self.embedder.model_id,
                )
                if eff_split != split:
                    row.meta["declared_split"] = split
                s.add(row)
                s.flush()
                for other in superseded:
                    other.active = False
                    other.meta = {**other.meta, "superseded_by": row.id}
                    other.updated_at = now()
                    s.add(other)
                s.refresh(row)
            # Committed first: a crash before the index write leaves a row the open-time
            # check adds back, never an index entry without a row.
            index.upsert(bucket_name(kind, row.split, row.trust), [row.id], vec[None, :])
            for other in superseded:
                index.delete(bucket_name(other.kind, other.split, other.trust), [other.id])
        return row

    def update_experience(self, exp_id: int, **fields) -> Experience:
        """Edit content, key, importance, meta, active, or lower trust / restrict split.

        importance <= 0 deactivates the experience (ExpeL removes insights that lose all
        their votes)."""
        allowed = {"content", "key", "importance", "meta", "active", "trust", "split", "policy_id", "model_fingerprint"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; allowed: {sorted(allowed)}")
        index = self.index
        with index.writing():
            with self.session() as s:
                row = s.get(Experience, exp_id)
                if row is None:
                    raise KeyError(f"no experience with id {exp_id}")
                old_bucket = bucket_name(row.kind, row.split, row.trust) if row.active else None
                if "trust" in fields:
                    if fields["trust"] not in TRUST_LEVELS:
                        raise ValueError(f"unknown trust level {fields['trust']!r}")
                    if _TRUST_RANK[fields["trust"]] > _TRUST_RANK[row.trust]:
                        raise IntegrityError(
                            f"experience {exp_id} is {row.trust!r}; trust is raised only by confirm_experience"
                        )
                if "split" in fields and most_restrictive(fields["split"], row.split) != fields["split"]:
                    raise IntegrityError(f"experience {exp_id} is split {row.split!r}; a split can only get stricter")
                new_vec = None
                if "content" in fields or "key" in fields:
                    content = fields.get("content", row.content)
                    key = fields.get("key", row.key)
                    new_vec = self._embed([key or content])[0]
                    row.digest = digest_of(content)
                    row.embedding = _vec_to_bytes(new_vec)
                    row.embedding_model = self.embedder.model_id
                for name, value in fields.items():
                    setattr(row, name, value)
                if row.importance <= 0:
                    row.active = False
                row.updated_at = now()
                s.add(row)
                s.flush()
                s.refresh(row)
            new_bucket = bucket_name(row.kind, row.split, row.trust) if row.active else None
            if old_bucket and old_bucket != new_bucket:
                index.delete(old_bucket, [row.id])
            if new_bucket and (new_bucket != old_bucket or new_vec is not None):
                vec = new_vec if new_vec is not None else self._row_vector(row)
                index.upsert(new_bucket, [row.id], vec[None, :])
        return row

    def deactivate_experience(self, exp_id: int) -> Experience:
        return self.update_experience(exp_id, active=False)

    def confirm_experience(self, exp_id: int, episode_id: int) -> Experience:
        """Lift quarantine: `episode_id` must be a passing train episode that showed the experience."""
        with self.session(read_only=True) as s:
            row = s.get(Experience, exp_id)
            ep = s.get(Episode, episode_id)
            if row is None or ep is None:
                raise KeyError(f"no experience {exp_id} or episode {episode_id}")
            shown = exp_id in (ep.shown_experience_ids or []) or s.exec(
                select(ExperienceUsage).where(ExperienceUsage.episode_id == episode_id,
                                              ExperienceUsage.experience_id == exp_id)).first() is not None
            task = s.get(Task, ep.task_id)
        ep_split = most_restrictive(ep.split, task.split if task else None, split_from_task_id(ep.task_id))
        if ep.verdict != "pass" or ep_split != "train" or not shown:
            raise IntegrityError(
                f"episode {episode_id} (verdict {ep.verdict!r}, split {ep_split!r}, showed it: {shown}) "
                f"cannot confirm experience {exp_id}: it must be a passing train episode that showed it"
            )
        return self._set_trust(exp_id, "verified", confirmed_by=episode_id)

    def _set_trust(self, exp_id: int, trust: str, **meta) -> Experience:
        index = self.index
        with index.writing():
            with self.session() as s:
                row = s.get(Experience, exp_id)
                old = bucket_name(row.kind, row.split, row.trust)
                row.trust = trust
                row.meta = {**row.meta, **meta}
                row.updated_at = now()
                s.add(row)
                s.flush()
                s.refresh(row)
            if row.active:
                index.delete(old, [row.id])
                index.upsert(bucket_name(row.kind, row.split, row.trust), [row.id], self._row_vector(row)[None, :])
        return row

    def _row_vector(self, row: Experience) -> np.ndarray:
        if row.embedding is not None and row.embedding_model == self.embedder.model_id:
            return _vec_from_bytes(row.embedding)
        return self._embed([row.key or row.content])[0]

    # -- experiences: reading -------------------------------------------------------------

    def get_experience(self, exp_id: int) -> Experience | None:
        with self.session(read_only=True) as s:
            return s.get(Experience, exp_id)

    def experiences(self, *, kind: str | None = None, split: str | None = None, trust: str | None = None,
                    active: bool | None = True, limit: int | None = None) -> list[Experience]:
        with self.session(read_only=True) as s:
            q = select(Experience).order_by(Experience.id)
            for column, value in ((Experience.kind, kind), (Experience.split, split), (Experience.trust, trust),
                                  (Experience.active, active)):
                if value is not None:
                    q = q.where(column == value)
            if limit is not None:
                q = q.limit(limit)
            return list(s.exec(q).all())

    def _rows_by_id(self, ids: Sequence[int], *, retrievable_kind: str | None = None) -> dict[int, Experience]:
        if not ids:
            return {}
        with self.session(read_only=True) as s:
            q = select(Experience).where(col(Experience.id).in_(list(ids)), Experience.active == True)  # noqa: E712
            if retrievable_kind is not None:
                # The index is derived data; the database decides what may be shown.
                q = q.where(Experience.kind == retrievable_kind, Experience.split == "train",
                            Experience.trust == "verified")
            return {r.id: r for r in s.exec(q).all()}

    def retrieve(self, kind: str, query: str, k: int, *, exclude_task_ids: Iterable[str] = ()) -> list[Experience]:
        """The k best active, train, verified experiences of `kind` for `query`.

        Ranked by cosine similarity; similarities within TIE_MARGIN are ties, broken by measured
        usefulness. `exclude_task_ids` drops experiences derived from those tasks."""
        return [row for row, _ in self.retrieve_scored(kind, query, k, exclude_task_ids=exclude_task_ids)]

    def retrieve_scored(self, kind: str, query: str, k: int, *,
                        exclude_task_ids: Iterable[str] = ()) -> list[tuple[Experience, float]]:
        if kind not in EXPERIENCE_KINDS:
            raise ValueError(f"unknown experience kind {kind!r}; expected one of {EXPERIENCE_KINDS}")
        if k <= 0:
            return []
        return self.retrieve_by_vector(kind, self._embed([query])[0], k, exclude_task_ids=exclude_task_ids)

    def retrieve_by_vector(self, kind: str, vec: np.ndarray, k: int, *,
                           exclude_task_ids: Iterable[str] = ()) -> list[tuple[Experience, float]]:
        """`retrieve_scored` for a query already embedded (benchmarks, batch callers)."""
        if k <= 0:
            return []
        excluded = set(exclude_task_ids)
        index = self.index
        bucket = bucket_name(kind, "train", "verified")
        # Fetch a few extra so ties at the cut can be broken by usefulness, and more when
        # exclusions may remove some.
        n = 2 * k + 4
        while True:
            hits = index.query([bucket], vec, n)
            rows = self._rows_by_id([i for i, _ in hits], retrievable_kind=kind)
            scored = [(rows[i], sim) for i, sim in hits
                      if i in rows and not (excluded and excluded.intersection(rows[i].source_task_ids))]
            if len(scored) >= k + 2 or len(hits) < n:
                break
            n *= 4
        scored.sort(key=lambda rs: (-round(rs[1] / TIE_MARGIN), -rs[0].usefulness, rs[0].id))
        return scored[:k]

    def search_scored(self, text_: str, k: int = 10) -> list[tuple[Experience, float]]:
        """Every active experience, any kind, split or trust: for people inspecting memory."""
        index = self.index
        vec = self._embed([text_])[0]
        hits = index.query(index.bucket_names(), vec, k)
        rows = self._rows_by_id([i for i, _ in hits])
        return [(rows[i], sim) for i, sim in hits if i in rows]

    def search(self, text_: str, k: int = 10) -> list[Experience]:
        return [row for row, _ in self.search_scored(text_, k)]

    # -- usefulness -----------------------------------------------------------------------

    def record_usage(self, episode_id: int, experience_ids: Iterable[int], success: bool) -> int:
        """Record that `experience_ids` were shown in `episode_id`; returns how many were new.

        Idempotent per (episode, experience). Counts move only for train episodes. A quarantined
        experience shown in a passing train episode is confirmed by it."""
        ids = sorted(set(int(i) for i in experience_ids))
        to_confirm: list[int] = []
        new = 0
        with self.session() as s:
            ep = s.get(Episode, episode_id)
            if ep is None:
                raise KeyError(f"no episode with id {episode_id}")
            task = s.get(Task, ep.task_id)
            counts = most_restrictive(ep.split, task.split if task else None, split_from_task_id(ep.task_id)) == "train"
            for eid in ids:
                row = s.get(Experience, eid)
                if row is None:
                    continue
                seen = s.exec(select(ExperienceUsage).where(ExperienceUsage.episode_id == episode_id,
                                                            ExperienceUsage.experience_id == eid)).first()
                if seen is not None:
                    continue
                s.add(ExperienceUsage(episode_id=episode_id, experience_id=eid, success=bool(success)))
                new += 1
                if counts:
                    row.uses += 1
                    row.successes += int(bool(success))
                    row.updated_at = now()
                    s.add(row)
                    if success and ep.verdict == "pass" and row.trust != "verified" and row.active:
                        to_confirm.append(eid)
            shown = sorted(set(ep.shown_experience_ids or []) | set(ids))
            if shown != list(ep.shown_experience_ids or []):
                ep.shown_experience_ids = shown
                s.add(ep)
        for eid in to_confirm:
            self._set_trust(eid, "verified", confirmed_by=episode_id)
        return new

    def prune(self, min_uses: int = 5, max_usefulness: float = 0.2) -> int:
        """Deactivate experiences shown at least `min_uses` times whose usefulness is at most
        `max_usefulness`; returns how many."""
        with self.session(read_only=True) as s:
            rows = s.exec(select(Experience).where(Experience.active == True, Experience.uses >= min_uses)).all()  # noqa: E712
            doomed = [r for r in rows if r.usefulness <= max_usefulness]
        if not doomed:
            return 0
        index = self.index
        with index.writing():
            with self.session() as s:
                for r in doomed:
                    row = s.get(Experience, r.id)
                    row.active = False
                    row.meta = {**row.meta, "pruned": {"uses": row.uses, "successes": row.successes}}
                    row.updated_at = now()
                    s.add(row)
            by_bucket: dict[str, list[int]] = {}
            for r in doomed:
                by_bucket.setdefault(bucket_name(r.kind, r.split, r.trust), []).append(r.id)
            for bucket, ids in by_bucket.items():
                index.delete(bucket, ids)
        return len(doomed)

    # -- training data --------------------------------------------------------------------

    def export_training_data(self, path: str | Path) -> int:
        """Write passing train episodes as OpenAI chat fine-tuning JSONL; returns lines written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        seen: set[str] = set()
        n = 0
        tmp = path.with_suffix(path.suffix + ".tmp")
        with self.session(read_only=True) as s, open(tmp, "w", encoding="utf-8") as out:
            q = (select(Episode, Task).join(Task, Task.id == Episode.task_id)
                 .where(Episode.split == "train", Task.split == "train", Episode.verdict == "pass")
                 .order_by(Episode.id))
            for ep, task in s.exec(q):
                if split_from_task_id(task.id) not in (None, "train"):
                    continue
                messages = _chat_messages(ep, task)
                if messages is None:
                    continue
                line = json.dumps({"messages": messages}, ensure_ascii=False, sort_keys=True)
                if line in seen:
                    continue
                seen.add(line)
                out.write(line + "\n")
                n += 1
        tmp.replace(path)
        return n

    # -- policies -------------------------------------------------------------------------

    def save_policy(self, policy: Policy) -> Policy:
        """Store an immutable policy; saving the same id again must carry the same digest."""
        with self.session() as s:
            existing = s.get(Policy, policy.id)
            if existing is not None:
                if existing.digest != policy.digest:
                    raise IntegrityError(f"policy {policy.id!r} exists with digest {existing.digest}, not {policy.digest}")
                return existing
            row = Policy.model_validate(policy.model_dump())
            s.add(row)
            s.flush()
            s.refresh(row)
            return row

    def get_policy(self, policy_id: str) -> Policy | None:
        with self.session(read_only=True) as s:
            return s.get(Policy, policy_id)

    def policies(self) -> list[Policy]:
        with self.session(read_only=True) as s:
            return list(s.exec(select(Policy).order_by(Policy.version, Policy.id)).all())

    def get_pointer(self, name: str) -> str | None:
        with self.session(read_only=True) as s:
            row = s.get(Pointer, name)
            return row.policy_id if row else None

    def set_pointer(self, name: str, policy_id: str) -> None:
        with self.session() as s:
            if s.get(Policy, policy_id) is None:
                raise KeyError(f"no policy {policy_id!r}; save it before pointing {name!r} at it")
            row = s.get(Pointer, name) or Pointer(name=name, policy_id=policy_id)
            row.policy_id = policy_id
            row.updated_at = now()
            s.add(row)

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
                    row.embedding = _vec_to_bytes(v)
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
            out[i] = _vec_from_bytes(rows[rid])
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

    # -- reporting ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts for `evolve memory stats`: plain data, ready to print or dump as JSON."""
        with self.session(read_only=True) as s:
            def grouped(*cols, where=None):
                q = select(*cols, func.count()).group_by(*cols)
                if where is not None:
                    q = q.where(where)
                return {"/".join(str(v) for v in row[:-1]): int(row[-1]) for row in s.exec(q).all()}

            with self.engine.connect() as conn:
                version = current_version(conn)
            out: dict[str, Any] = {
                "database": self.engine.url.render_as_string(hide_password=True),
                "schema_version": version,
                "tasks": grouped(Task.split),
                "episodes": grouped(Episode.split, Episode.verdict),
                "experiences_active": grouped(Experience.kind, Experience.split, Experience.trust,
                                              where=Experience.active == True),  # noqa: E712
                "experiences_inactive": int(s.exec(select(func.count()).select_from(Experience)
                                                   .where(Experience.active == False)).one()),  # noqa: E712
                "usage_records": int(s.exec(select(func.count()).select_from(ExperienceUsage)).one()),
                "policies": int(s.exec(select(func.count()).select_from(Policy)).one()),
                "pointers": {p.name: p.policy_id for p in s.exec(select(Pointer)).all()},
            }
        out["index"] = self.index.counts()
        out["embedder"] = self.embedder.model_id
        return out


def _chat_messages(ep: Episode, task: Task) -> list[dict[str, Any]] | None:
    # The episode's own reasoning, tool calls and results, as chat messages.
    msgs = Trajectory.from_stored(ep.trajectory).to_messages(final_answer=ep.final_answer, question=task.question)
    if not msgs or msgs[-1]["role"] != "assistant" or msgs[-1].get("tool_calls"):
        return None
    return msgs
