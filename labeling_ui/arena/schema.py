"""The Arena's tables: new tables on the label store's `Base`, so `create_all` makes them in any
existing store (SQLite or PostgreSQL) without a schema version bump. `ArenaStore` creates them
when it opens a store that lacks them.

    arena_models          the models that may be drawn: the run's checkpoints (source "run") and
                          folders or bundled models an admin registered (source "admin")
    arena_conversations   one reviewer's chat with two anonymous models, model_a / model_b fixed
                          for the whole conversation (drawn, then sides assigned at random)
      └─ arena_turns      one user message and both models' answers to it, with speed figures
           └─ arena_votes the reviewer's verdict on that turn: a | b | tie | both_bad (one per turn)

Models are referred to by name (unique in arena_models), so a vote stays readable when a folder
moves. Nothing a reviewer sent is deleted; times are naive UTC, as in the rest of the store.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, JSON, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from labeling_ui.schema import Base

OUTCOMES = ("a", "b", "tie", "both_bad")
SOURCES = ("run", "admin")
MAX_NAME_CHARS = 128


class ArenaModel(Base):
    __tablename__ = "arena_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), unique=True)  # "sft", "rlhf", "round-2/rlhf", ...
    path: Mapped[str] = mapped_column(Text)  # a model folder, or a bundled model's name (smollm2-135m)
    source: Mapped[str] = mapped_column(String(16))  # "run" (found in the run folder) or "admin" (registered)
    added_at: Mapped[datetime] = mapped_column(DateTime)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)  # only enabled models are drawn


class ArenaConversation(Base):
    __tablename__ = "arena_conversations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"), index=True)
    model_a: Mapped[str] = mapped_column(String(MAX_NAME_CHARS))  # arena_models.name, side A for every turn
    model_b: Mapped[str] = mapped_column(String(MAX_NAME_CHARS))
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # The reviewer asked to see the names: the conversation is over (later votes would not be blind).
    revealed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    draw: Mapped[str] = mapped_column(String(16), default="")  # how the pair was chosen: next_pair / uniform


class ArenaTurn(Base):
    __tablename__ = "arena_turns"
    __table_args__ = (UniqueConstraint("conversation_id", "turn"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("arena_conversations.id"), index=True)
    turn: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the conversation
    message: Mapped[str] = mapped_column(Text)  # what the reviewer wrote
    answer_a: Mapped[str] = mapped_column(Text)
    answer_b: Mapped[str] = mapped_column(Text)
    ended_a: Mapped[bool] = mapped_column(Boolean)  # the model emitted EOS (not cut off at max_new_tokens)
    ended_b: Mapped[bool] = mapped_column(Boolean)
    tokens_a: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_b: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ttft_a_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # seconds to the first answer token
    ttft_b_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    tokens_per_s_a: Mapped[float | None] = mapped_column(Float, nullable=True)  # after the first token
    tokens_per_s_b: Mapped[float | None] = mapped_column(Float, nullable=True)
    generation: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # sampling settings
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class ArenaVote(Base):
    __tablename__ = "arena_votes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("arena_turns.id"), unique=True)  # one vote per turn
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(16))  # OUTCOMES
    reason: Mapped[str] = mapped_column(Text, default="")  # at most MAX_REASON_CHARS (store.py)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)


ARENA_TABLES = [ArenaModel.__table__, ArenaConversation.__table__, ArenaTurn.__table__, ArenaVote.__table__]
