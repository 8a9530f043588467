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

from typing import Any, Iterable, Sequence

import numpy as np
from sqlalchemy import func
from sqlmodel import Session, col, select

from memory.base import StoreBase, vec_from_bytes, vec_to_bytes
from memory.errors import IntegrityError
from memory.export import TrainingExport
from memory.firewall import TRUST_RANK, digest_of, most_restrictive, now, split_from_task_id
from memory.index import bucket_name
from memory.models import EXPERIENCE_KINDS, TRUST_LEVELS, Episode, Experience, ExperienceUsage, Task
from memory.policies import PolicyRecords
from memory.queue import QueueRecords
from memory.runs import RunRecords
from memory.tasks import TaskRecords
from memory.upkeep import IndexUpkeep
from memory.usefulness import UsageRecords

# Older import paths (bench/, tests) keep working.
_vec_to_bytes = vec_to_bytes
__all__ = ["Store", "digest_of", "most_restrictive", "split_from_task_id", "TIE_MARGIN"]

# Similarities this close count as a tie, which usefulness then breaks.
TIE_MARGIN = 0.01


class ExperienceRecords(StoreBase):
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
                        if TRUST_RANK[other.trust] >= TRUST_RANK[trust]:
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
                    meta=dict(meta or {}), embedding=vec_to_bytes(vec), embedding_model=self.embedder.model_id,
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
                    if TRUST_RANK[fields["trust"]] > TRUST_RANK[row.trust]:
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
                    row.embedding = vec_to_bytes(new_vec)
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
            return vec_from_bytes(row.embedding)
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

    def policy_insights(self, limit: int = 12) -> list[Experience]:
        """The insights a policy may carry into its prompts: active, train and verified only.

        Model-written rules arrive "unverified" and stay out until a passing train episode that
        showed them confirms them (`record_usage`); "untrusted" ones never come in."""
        return self._insights(("verified",), limit)

    def insight_pool(self, limit: int = 12) -> list[Experience]:
        """Every rule the refiner may agree with, edit or remove: verified and quarantined
        (unverified) insights, never untrusted ones. Not for prompts of a policy."""
        return self._insights(("verified", "unverified"), limit)

    def trial_insights(self, limit: int = 4) -> list[Experience]:
        """Quarantined insights to try on train tasks, where a pass can confirm them."""
        return self._insights(("unverified",), limit)

    def _insights(self, trust: Sequence[str], limit: int) -> list[Experience]:
        with self.session(read_only=True) as s:
            rows = list(s.exec(select(Experience).where(
                Experience.kind == "insight", Experience.split == "train", Experience.active == True,  # noqa: E712
                col(Experience.trust).in_(list(trust)))).all())
        rows.sort(key=lambda r: (-r.importance, -r.usefulness, r.id))
        return rows[:limit]

    def max_experience_id(self) -> int:
        """The newest experience id (0 when there is none): a policy's memory snapshot."""
        with self.session(read_only=True) as s:
            return int(s.exec(select(func.max(Experience.id))).one() or 0)

    def _rows_by_id(self, ids: Sequence[int], *, retrievable_kind: str | None = None,
                    max_id: int | None = None) -> dict[int, Experience]:
        if not ids:
            return {}
        with self.session(read_only=True) as s:
            q = select(Experience).where(col(Experience.id).in_(list(ids)), Experience.active == True)  # noqa: E712
            if retrievable_kind is not None:
                # The index is derived data; the database decides what may be shown.
                q = q.where(Experience.kind == retrievable_kind, Experience.split == "train",
                            Experience.trust == "verified")
            if max_id is not None:
                q = q.where(col(Experience.id) <= max_id)
            return {r.id: r for r in s.exec(q).all()}

    def retrieve(self, kind: str, query: str, k: int, *, exclude_task_ids: Iterable[str] = (),
                 max_id: int | None = None) -> list[Experience]:
        """The k best active, train, verified experiences of `kind` for `query`.

        Ranked by cosine similarity; similarities within TIE_MARGIN are ties, broken by measured
        usefulness. `exclude_task_ids` drops experiences derived from those tasks; `max_id`
        keeps only experiences with id <= max_id (a policy's memory snapshot), and the search
        widens until it has k of them, so a snapshot never gets fewer than exist."""
        return [row for row, _ in self.retrieve_scored(kind, query, k, exclude_task_ids=exclude_task_ids,
                                                       max_id=max_id)]

    def retrieve_scored(self, kind: str, query: str, k: int, *, exclude_task_ids: Iterable[str] = (),
                        max_id: int | None = None) -> list[tuple[Experience, float]]:
        if kind not in EXPERIENCE_KINDS:
            raise ValueError(f"unknown experience kind {kind!r}; expected one of {EXPERIENCE_KINDS}")
        if k <= 0:
            return []
        return self.retrieve_by_vector(kind, self._embed([query])[0], k, exclude_task_ids=exclude_task_ids,
                                       max_id=max_id)

    def retrieve_by_vector(self, kind: str, vec: np.ndarray, k: int, *, exclude_task_ids: Iterable[str] = (),
                           max_id: int | None = None) -> list[tuple[Experience, float]]:
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
            rows = self._rows_by_id([i for i, _ in hits], retrievable_kind=kind, max_id=max_id)
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


class Store(ExperienceRecords, UsageRecords, TaskRecords, PolicyRecords, RunRecords, QueueRecords, TrainingExport, IndexUpkeep):
    """The one memory API the agent uses: every noun's records over one engine and one index."""
