"""The label store's tables (SQLAlchemy 2, SQLite or PostgreSQL).

    prompts ─┬─ items (one prompt's K answers from one round) ── candidates (the K answers)
             │     └─ assignments (item x reviewer: a claim, then done / skipped / released)
             │     │      └─ rankings (every submission, kept forever; undo sets withdrawn_at)
             │     │             ├─ flags, comments, demonstrations ── demonstration_reviews
             │     ├─ gold_items (a known answer: the item checks reviewers and never trains)
             │     └─ flag_reviews (an admin confirms or clears the flags raised so far)
    reviewers ── sessions, login_attempts;  audit_log (who did which admin action when)
    arena (labeling_ui/arena/schema.py, same Base; new tables only, so no version bump):
        arena_models;  arena_conversations (reviewer x model_a x model_b) ── arena_turns ── arena_votes

Reviewers' hours are the expensive part of the pipeline, so nothing a reviewer sent is ever
deleted: an undone submission is marked withdrawn, and exports read only the active ones.
Times are naive UTC datetimes (SQLite keeps no time zone).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_VERSION = 5
# Versions this code opens and upgrades in place: 1 -> 2 only added tables (create_all makes them);
# 2 -> 3, 3 -> 4 and 4 -> 5 added nullable (or defaulted) columns, which db.py adds with ALTER TABLE
# (UPGRADE_COLUMNS), then fills (BACKFILL) and indexes; indexes an upgrade replaces are dropped (DROP_INDEXES).
UPGRADABLE_FROM = ("1", "2", "3", "4")
UPGRADE_COLUMNS = {"items": ("question", "done_count", "priority", "selection"),
                   "assignments": ("shown", "order_seed"), "rankings": ("shown", "response")}
DROP_INDEXES = ("ix_items_done_count",)  # v4's (done_count, id): ix_items_claim_order serves its queries since v5
BACKFILL = {("items", "done_count"): "UPDATE items SET done_count = (SELECT count(*) FROM assignments "
                                     "WHERE assignments.item_id = items.id AND assignments.status = 'done')"}

# Assignment states. An "open" claim counts toward an item's overlap until it expires.
OPEN, DONE, SKIPPED, RELEASED = "open", "done", "skipped", "released"
FLAG_KINDS = ("unsafe", "broken", "off-topic")
CONFIRMED, CLEARED = "confirmed", "cleared"  # an admin's decision on an item's flags
APPROVED, REJECTED = "approved", "rejected"  # an admin's decision on a written answer


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Prompt(Base):
    __tablename__ = "prompts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the prompt's JSON
    prompt: Mapped[str | list] = mapped_column(JSON)  # text, or chat messages as in the prompts file
    text: Mapped[str] = mapped_column(Text)  # readable one-string form, for people
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Item(Base):
    """What one reviewer ranks at once: K answers to one prompt, written in one round."""

    __tablename__ = "items"
    # ix_items_claim_order (below the class: it has DESC columns): the claim's free-item search and
    # the progress count look items up by done_count without walking every finished item first (with
    # the query's other conditions that was O(items) per click), and the index is in serving order,
    # started items first, then priority DESC, then id, so the claim reads the first 50 free items
    # without sorting every one (queries.py: ClickSQL.free_items).
    __table_args__ = (UniqueConstraint("prompt_id", "round"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    round: Mapped[int] = mapped_column(Integer, index=True)
    policy: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # What reviewers are asked (labeling_ui/questions/): "ranking", "pairwise", "rating"
    question: Mapped[str] = mapped_column(String(16), default="ranking", server_default="ranking")
    # Assignments of this item in state "done", kept by the store in the same transaction as each change
    # (submit, undo, import): what makes finding free items and counting what is left cheap.
    done_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Served first when higher (then oldest first): generate --select gives its chosen items 1/rank,
    # everything else has 0 (labeling_ui/selection.py).
    priority: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # How the item was chosen: {"method", "score", "pool", "rank"}; None when it was not (select order).
    selection: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    prompt_row: Mapped[Prompt] = relationship()
    candidates: Mapped[list["Candidate"]] = relationship(order_by="Candidate.position")


Index("ix_items_claim_order", Item.done_count.desc(), Item.priority.desc(), Item.id)


class Candidate(Base):
    __tablename__ = "candidates"
    __table_args__ = (UniqueConstraint("item_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # 0..K-1, the generated order (reviewers see their own)
    text: Mapped[str] = mapped_column(Text)
    policy: Mapped[str] = mapped_column(Text)
    round: Mapped[int] = mapped_column(Integer)
    ended: Mapped[bool] = mapped_column(Boolean)  # the model emitted EOS (not cut off at max_new_tokens)
    num_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    generation: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # sampling settings
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Reviewer(Base):
    __tablename__ = "reviewers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))  # scrypt$n$r$p$salt$hash, never the password
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Assignment(Base):
    __tablename__ = "assignments"
    # One row per (item, reviewer): an item never goes to the same reviewer twice.
    __table_args__ = (UniqueConstraint("item_id", "reviewer_id"), Index("ix_assignments_item_status", "item_id", "status"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    claimed_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The order this reviewer sees the answers in: candidate positions in display order, drawn
    # from `order_seed` at the first claim and kept for every later claim and undo of the row.
    shown: Mapped[list | None] = mapped_column(JSON, nullable=True)
    order_seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    item: Mapped[Item] = relationship()


class Ranking(Base):
    """One submission: a ranking (dense ranks, 1 = best, ties allowed) or a skip."""

    __tablename__ = "rankings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # also the order submissions arrived in
    uid: Mapped[str] = mapped_column(String(32), unique=True)  # the exported ranking_id
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"), index=True)
    # By candidate position (never by display order); None = skipped. Every question type gives
    # ranks (a rating's scores, a pairwise choice), which is what agreement and training read.
    ranks: Mapped[list | None] = mapped_column(JSON, nullable=True)
    response: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the question's own answer, by position
    shown: Mapped[list | None] = mapped_column(JSON, nullable=True)  # the display order it was given in
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    # The client's token for this submission: a retried or double-clicked submit finds its row here.
    submit_token: Mapped[str] = mapped_column(String(64), unique=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # claim to submit
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # undone by its reviewer
    assignment: Mapped[Assignment] = relationship()
    flags: Mapped[list["Flag"]] = relationship()
    comments: Mapped[list["Comment"]] = relationship()
    demonstrations: Mapped[list["Demonstration"]] = relationship()


class Flag(Base):
    __tablename__ = "flags"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))


class Comment(Base):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    text: Mapped[str] = mapped_column(Text)


class Demonstration(Base):
    """A reviewer's own better answer to the prompt: SFT data."""

    __tablename__ = "demonstrations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    text: Mapped[str] = mapped_column(Text)


class Session(Base):
    __tablename__ = "sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie value
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class LoginAttempt(Base):
    __tablename__ = "login_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)


class GoldItem(Base):
    """An item with a known answer: served now and then like any other, scored, never exported for training."""

    __tablename__ = "gold_items"
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True)
    pairs: Mapped[list] = mapped_column(JSON)  # [[better_position, worse_position], ...] that must hold
    expected: Mapped[str] = mapped_column(Text)  # as the admin gave it, for people: "ranks 1,2,2,3" / "D last"
    created_at: Mapped[datetime] = mapped_column(DateTime)


class FlagReview(Base):
    """An admin's decision on the flags of one item raised up to `last_flag_id`; later flags wait for another."""

    __tablename__ = "flag_reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))  # CONFIRMED (out of training for good) or CLEARED
    last_flag_id: Mapped[int] = mapped_column(Integer)
    admin_id: Mapped[int | None] = mapped_column(ForeignKey("reviewers.id"), nullable=True)  # None: the CLI
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime)


class DemonstrationReview(Base):
    __tablename__ = "demonstration_reviews"
    demonstration_id: Mapped[int] = mapped_column(ForeignKey("demonstrations.id"), primary_key=True)
    decision: Mapped[str] = mapped_column(String(16))  # APPROVED or REJECTED
    admin_id: Mapped[int | None] = mapped_column(ForeignKey("reviewers.id"), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    actor: Mapped[str] = mapped_column(String(128))  # an admin's name, or "cli:<system user>"
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)
