"""Policies (immutable, content-addressed), the named pointers that select one, and the
promotion log that moves them (promote, reject, rollback: each a row, so every move is undone
by reading the log)."""

from __future__ import annotations

from sqlmodel import col, select

from memory.base import StoreBase
from memory.errors import IntegrityError
from memory.firewall import now
from memory.models import Policy, Pointer, Promotion


class PolicyRecords(StoreBase):
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


    def pointed_policy(self, name: str) -> Policy | None:
        """The policy a pointer names (None when the pointer is unset)."""
        with self.session(read_only=True) as s:
            row = s.get(Pointer, name)
            return s.get(Policy, row.policy_id) if row else None

    # -- promotions -----------------------------------------------------------------------

    def promotions(self, *, cycle: int | None = None, newest_first: bool = False,
                   limit: int | None = None) -> list[Promotion]:
        with self.session(read_only=True) as s:
            q = select(Promotion)
            if cycle is not None:
                q = q.where(Promotion.cycle == cycle)
            q = q.order_by(col(Promotion.id).desc() if newest_first else col(Promotion.id))
            if limit is not None:
                q = q.limit(limit)
            return list(s.exec(q).all())

    def last_promotion_to(self, policy_id: str) -> Promotion | None:
        """The newest promotion that made `policy_id` the incumbent: its rollback target."""
        with self.session(read_only=True) as s:
            return s.exec(select(Promotion).where(Promotion.decision == "promote",
                                                  Promotion.incumbent_after == policy_id)
                          .order_by(col(Promotion.id).desc()).limit(1)).first()
