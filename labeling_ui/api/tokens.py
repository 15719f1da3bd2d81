"""API tokens: what a program presents instead of a login (`Authorization: Bearer rt_...`).

A token belongs to one account and acts with that account's role; it is shown once, when made,
and only its SHA-256 is stored (like session cookies: a copy of the database gives no working
token). Revoking keeps the row (who made it, when, when it was last used) for the audit.
The table is new on the store's Base, so an existing store gets it without a version bump.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import DateTime, ForeignKey, Integer, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from labeling_ui.accounts import ReviewerInfo
from labeling_ui.db import Database, utcnow
from labeling_ui.schema import AuditEntry, Base, Reviewer
from ranktune.errors import InputError

PREFIX = "rt_"
MAX_LABEL_CHARS = 64
LAST_USED_EVERY = timedelta(minutes=10)  # last_used_at is a write: refreshed this rarely, not per request


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"), index=True)
    label: Mapped[str] = mapped_column(String(MAX_LABEL_CHARS))  # what it is for: "generation job", "notebook"
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    shown: Mapped[str] = mapped_column(String(16))  # the first characters, so a person can tell tokens apart
    created_at: Mapped[datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(128))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    id: int
    reviewer: str
    is_admin: bool
    label: str
    shown: str
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokens:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow):
        self.db, self.clock = db, clock
        Base.metadata.create_all(db.write_engine, tables=[ApiToken.__table__])
        # Moves on every revoke made through this object: the gate's token cache is then dropped,
        # so a revoked token stops working at once in this process (from the CLI, within the cache's seconds).
        self.changes = 0

    def create(self, reviewer: str, label: str, actor: str) -> tuple[TokenInfo, str]:
        """A new token for `reviewer` (name): its record and the token itself, which is not kept."""
        label = (label or "").strip() or "api"
        if len(label) > MAX_LABEL_CHARS:
            raise InputError(f"at most {MAX_LABEL_CHARS} characters", field="label")
        token = PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        with self.db.write() as s:
            who = s.scalar(select(Reviewer).where(Reviewer.name == reviewer))
            if who is None:
                raise InputError(f"no reviewer '{reviewer}' (add one with add-reviewer)", field="name")
            if who.disabled:
                raise InputError(f"reviewer '{reviewer}' is disabled: enable them first", field="name")
            row = ApiToken(reviewer_id=who.id, label=label, token_hash=token_hash(token), shown=token[:10],
                           created_at=now, created_by=actor[:128])
            s.add(row)
            s.flush()
            s.add(AuditEntry(at=now, actor=actor[:128], action="create-token", target=reviewer,
                             detail={"token_id": row.id, "label": label}))
            return _info(row, who), token

    def revoke(self, token_id: int, actor: str) -> TokenInfo:
        now = self.clock()
        with self.db.write() as s:
            row = s.get(ApiToken, token_id)
            if row is None:
                raise InputError(f"no API token with id {token_id}", field="token_id")
            if row.revoked_at is None:
                row.revoked_at = now
                s.add(AuditEntry(at=now, actor=actor[:128], action="revoke-token", target=str(token_id),
                                 detail={"label": row.label}))
            who = s.get(Reviewer, row.reviewer_id)
            self.changes += 1
            return _info(row, who)

    def all(self) -> list[TokenInfo]:
        with self.db.read() as s:
            rows = s.execute(select(ApiToken, Reviewer).join(Reviewer, Reviewer.id == ApiToken.reviewer_id)
                             .order_by(ApiToken.id)).all()
            return [_info(t, r) for t, r in rows]

    def user(self, token: str | None) -> ReviewerInfo | None:
        """The account a live token acts for; None for a missing, unknown or revoked token or a disabled account."""
        if not token or not token.startswith(PREFIX) or len(token) > 128:
            return None
        with self.db.read() as s:
            found = s.execute(select(ApiToken.id, ApiToken.last_used_at, Reviewer)
                              .join(Reviewer, Reviewer.id == ApiToken.reviewer_id)
                              .where(ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None),
                                     Reviewer.disabled.is_(False))).first()
        if found is None:
            return None
        token_id, last_used, who = found
        now = self.clock()
        if last_used is None or now - last_used > LAST_USED_EVERY:
            with self.db.write() as s:
                s.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
        return ReviewerInfo(who.id, who.name, who.is_admin)


def _info(t: ApiToken, r: Reviewer) -> TokenInfo:
    return TokenInfo(t.id, r.name, r.is_admin, t.label, t.shown, t.created_at, t.created_by, t.last_used_at,
                     t.revoked_at)
