"""SQLModel tables: the source of truth. The Chroma index is derived from `Experience` rows.

Provenance rule: every Episode/Experience row names its split, source task(s), model
fingerprint and policy version. Anything whose split is not "train" must never be retrieved
or exported as training data (enforced in memory/store.py).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


SPLITS = ("train", "dev", "test")
EXPERIENCE_KINDS = ("exemplar", "insight", "skill")
TRUST_LEVELS = ("verified", "unverified", "untrusted")


class Task(SQLModel, table=True):
    id: str = Field(primary_key=True)  # stable: "<suite>/<split>/<native id>"
    suite: str = Field(index=True)
    split: str = Field(index=True)  # train | dev | test
    origin: str = "suite"  # suite | user | self-proposed
    kind: str = "qa"  # qa (numeric/exact answer) | code (unit tests)
    question: str
    answer: str = ""  # reference answer (qa) or reference solution (code), may be empty
    tests: str = ""  # code tasks: test code run in the sandbox
    entry_point: str = ""
    parent_task_id: Optional[str] = None  # self-proposed tasks: what they vary
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class Episode(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("run_key", name="uq_episode_run_key"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    # Idempotency key, e.g. "cycle3/acquire/<task_id>/0": a resumed node does not duplicate.
    run_key: str = Field(index=True)
    task_id: str = Field(index=True, foreign_key="task.id")
    split: str = Field(index=True)
    policy_id: str = Field(index=True)
    model_fingerprint: str
    cycle: Optional[int] = Field(default=None, index=True)
    source: str = "acquire"  # acquire | eval | chat | worker
    trajectory: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    final_answer: str = ""
    reward: float = 0.0
    verdict: str = "pending"  # pass | fail | error | pending
    feedback: str = ""
    error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    shown_experience_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class Experience(SQLModel, table=True):
    # The pool the retriever reads (kind, split, trust, active) is one index lookup.
    __table_args__ = (Index("ix_experience_pool", "kind", "split", "trust", "active"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str = Field(index=True)  # exemplar | insight | skill
    content: str  # what enters the prompt (exemplar: Q + worked solution; insight: a rule)
    key: str = ""  # text used for similarity search (the question for exemplars)
    digest: str = Field(index=True)  # sha256 of normalised content: exact-duplicate guard
    split: str = Field(default="train", index=True)
    trust: str = Field(default="verified", index=True)  # verified | unverified | untrusted
    source_task_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    source_episode_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    model_fingerprint: str = ""
    policy_id: str = ""
    importance: int = 1  # ExpeL-style counter for insights
    uses: int = 0
    successes: int = 0
    active: bool = Field(default=True, index=True)
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Schema v2. The vector of `key or content` (float32, little endian) and the embedder that
    # produced it: the Chroma index is rebuilt from these without re-embedding anything.
    embedding: Optional[bytes] = Field(default=None, repr=False, sa_column=Column(LargeBinary, nullable=True))
    embedding_model: str = ""

    @property
    def usefulness(self) -> float:
        # Laplace-smoothed success rate when shown; unknown experiences sit at 0.5.
        return (self.successes + 1) / (self.uses + 2)


class ExperienceUsage(SQLModel, table=True):
    """Schema v2: experience shown in an episode, and how the episode ended.

    One row per (episode, experience), so recording the same episode twice (a resumed node)
    does not count twice; `Experience.uses/successes` are kept in step with these rows."""

    __table_args__ = (UniqueConstraint("episode_id", "experience_id", name="uq_usage_episode_experience"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    episode_id: int = Field(index=True)
    experience_id: int = Field(index=True)
    success: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class Policy(SQLModel, table=True):
    id: str = Field(primary_key=True)  # "p<version>-<digest8>"
    version: int = Field(index=True)
    parent_id: Optional[str] = None
    digest: str  # sha256 of the canonical JSON of `spec`
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    note: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class Pointer(SQLModel, table=True):
    """Named pointers such as "incumbent"; promotion and rollback move them."""

    name: str = Field(primary_key=True)
    policy_id: str
    updated_at: datetime = Field(default_factory=utcnow)


class EvalRun(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    run_key: str = Field(index=True, unique=True)
    policy_id: str = Field(index=True)
    split: str
    task_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    seed: int = 0
    cycle: Optional[int] = None
    accuracy: Optional[float] = None
    n: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class EvalResult(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("eval_run_id", "task_id", "seed", name="uq_evalresult"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    eval_run_id: int = Field(index=True, foreign_key="evalrun.id")
    policy_id: str = Field(index=True)
    task_id: str = Field(index=True)
    seed: int = 0
    correct: bool = False
    episode_id: Optional[int] = None
    tokens: int = 0
    latency_s: float = 0.0


class Promotion(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    cycle: Optional[int] = Field(default=None, index=True)
    candidate_id: str
    incumbent_before: str  # the rollback target
    incumbent_after: str
    decision: str  # promote | reject | rollback
    delta: float = 0.0
    ci_low: float = 0.0
    ci_high: float = 0.0
    p_value: float = 1.0
    n: int = 0
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class Cycle(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    number: int
    status: str = "running"  # running | done | stopped
    stop_reason: str = ""
    phase_seconds: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON))
    tokens: int = 0
    model_seconds: float = 0.0
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: Optional[datetime] = None


class QueueItem(SQLModel, table=True):
    """Tasks submitted to the long-running worker (`evolve submit`)."""

    id: Optional[int] = Field(default=None, primary_key=True)
    task_id: str = Field(index=True)
    status: str = Field(default="queued", index=True)  # queued | running | done | error
    error: str = ""
    episode_id: Optional[int] = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Schema v3. Who holds a running item and until when: several workers share one queue, and
    # a claim whose lease ran out (its worker died) is taken over by the next claimer.
    worker: str = ""
    lease_until: Optional[datetime] = Field(default=None, index=True)
    claims: int = 0
