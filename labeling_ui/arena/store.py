"""The Arena's side of the label store: the model registry, conversations, turns and votes.

`ArenaStore(store_or_db)` works on the label store's own `Database` (SQLite or PostgreSQL) and
in its style: every write is one transaction run through `db.retry`, so a double click or a race
between two tabs lands once. A page calls, in order:

    arena = ArenaStore(label_store, rate_limit_per_minute=6, max_turns=8)
    conv = arena.start(reviewer)                          # two enabled models, sides A/B at random
    conv, msgs_a, msgs_b = arena.prepare_turn(conv.id, reviewer, text)
                     # before generating: owner, limits; each side's own history + the new message
    job = engine.submit(msgs_a, msgs_b, conv.model_a, conv.model_b)     # models.ArenaEngine
    for state in job.stream(): ...                        # partial texts for A and B
    turn = arena.add_turn(conv.id, reviewer, text, state=job.result())
    arena.vote(turn.id, reviewer, "a", reason)            # a | b | tie | both_bad, once per turn
    conv = arena.reveal(conv.id, reviewer)                # names shown; the conversation is over

Rules, each refused with an `ArenaError` (a `SubmitError`: its message is for the reviewer):
- a conversation is its reviewer's alone: another reviewer can neither read it nor add to it
  nor vote on it (the message does not say whether it exists);
- one vote per turn; sending the same vote again answers `duplicate=True`, a different one is
  refused;
- at most `rate_limit_per_minute` turns per reviewer in any 60 seconds (None or 0: no limit;
  `prepare_turn` / `check_turn` say so before anything is generated), and at most `max_turns` turns per
  conversation;
- once the names are revealed the conversation takes no more turns or votes: later votes would
  not be blind.

Which pair: `labeling_ui.arena.leaderboard.next_pair(votes, models, rng)` (few votes and close
pairs first), then the sides are shuffled again, so a model is as often A as B.
"""

from __future__ import annotations

import importlib.util
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labeling_ui.arena.models import ArenaError, check_model_spec, discover_run_models
from labeling_ui.arena.schema import (ARENA_TABLES, MAX_NAME_CHARS, OUTCOMES, ArenaConversation, ArenaModel,
                                      ArenaTurn, ArenaVote)
from labeling_ui.db import Database, utcnow
from labeling_ui.schema import AuditEntry, Base, Reviewer
from labeling_ui.tasks import UnknownReviewer
from ranktune.errors import InputError

if TYPE_CHECKING:
    from labeling_ui.arena.leaderboard import Vote
    from labeling_ui.arena.models import JobState
    from labeling_ui.store import LabelStore

MAX_MESSAGE_CHARS = 4_000
MAX_REASON_CHARS = 1_000
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@/+-]{0,%d}$" % (MAX_NAME_CHARS - 1))
NOT_YOURS = "This conversation is not one of yours."


@dataclass(frozen=True)
class ArenaModelInfo:
    name: str
    path: str
    source: str  # "run" or "admin"
    added_at: datetime
    enabled: bool


@dataclass(frozen=True)
class SideStats:
    num_tokens: int | None = None
    ttft_s: float | None = None
    tokens_per_s: float | None = None


@dataclass(frozen=True)
class ConversationTurn:
    id: int
    turn: int  # 1, 2, ...
    message: str
    answer_a: str
    answer_b: str
    ended_a: bool
    ended_b: bool
    stats_a: SideStats
    stats_b: SideStats
    created_at: datetime
    vote: str | None = None  # a | b | tie | both_bad; None: not voted
    reason: str = ""


@dataclass(frozen=True)
class Conversation:
    id: int
    reviewer: str
    model_a: str  # server side only: the page must not show these before `revealed`
    model_b: str
    created_at: datetime
    revealed_at: datetime | None
    turns: tuple[ConversationTurn, ...] = ()

    @property
    def revealed(self) -> bool:
        return self.revealed_at is not None

    def history(self, side: str) -> list[dict]:
        """The conversation as side `side` ("a" or "b") had it: every user message and that side's
        own answers. After turn 1 the two sides' histories differ."""
        if side not in ("a", "b"):
            raise ValueError(f"side is 'a' or 'b', not {side!r}")
        out: list[dict] = []
        for t in self.turns:
            out += [{"role": "user", "content": t.message},
                    {"role": "assistant", "content": t.answer_a if side == "a" else t.answer_b}]
        return out

    def next_messages(self, message: str) -> tuple[list[dict], list[dict]]:
        """What each side answers next: its own history and the new user message."""
        ask = {"role": "user", "content": message}
        return self.history("a") + [ask], self.history("b") + [ask]


@dataclass(frozen=True)
class Voted:
    turn_id: int
    outcome: str
    duplicate: bool  # the same vote was already stored; nothing new was written


class ArenaStore:
    def __init__(self, store: "LabelStore | Database", rate_limit_per_minute: int | None = 6, max_turns: int = 8,
                 clock: Callable[[], datetime] | None = None, rng: random.Random | None = None):
        if max_turns < 1:
            raise InputError("must be at least 1", field="max_turns")
        if rate_limit_per_minute is not None and rate_limit_per_minute < 0:
            raise InputError("must be 0 (no limit) or more", field="rate_limit_per_minute")
        self.db: Database = store if isinstance(store, Database) else store.db
        self.clock = clock or getattr(store, "clock", None) or utcnow
        self.rate_limit = rate_limit_per_minute or None
        self.max_turns = max_turns
        self.rng = rng or random.Random()
        Base.metadata.create_all(self.db.write_engine, tables=ARENA_TABLES)  # an older store gets them here

    # ---- the model registry ------------------------------------------------------------------

    def models(self, enabled_only: bool = True) -> list[ArenaModelInfo]:
        with self.db.read() as s:
            q = select(ArenaModel).order_by(ArenaModel.id)
            if enabled_only:
                q = q.where(ArenaModel.enabled.is_(True))
            return [ArenaModelInfo(m.name, m.path, m.source, m.added_at, m.enabled) for m in s.scalars(q)]

    def model_path(self, name: str) -> str:
        """What the engine loads for model `name` (a folder or a bundled model's name)."""
        with self.db.read() as s:
            path = s.scalar(select(ArenaModel.path).where(ArenaModel.name == name))
        if path is None:
            raise ArenaError(f"The model '{name}' is not in the arena.")
        return path

    def refresh_models(self, run: str | Path) -> dict:
        """Sync the run's checkpoints (models.discover_run_models) into the registry: new ones are
        added enabled, moved ones get their new path, ones gone from disk are disabled (their votes
        stay). Admin-registered models are left alone, and win a name clash."""
        found = {m.name: m for m in discover_run_models(run)}
        now = self.clock()

        def sync(s: Session) -> dict:
            stats = {"added": [], "disabled": [], "shadowed": []}
            rows = {m.name: m for m in s.scalars(select(ArenaModel))}
            for name, m in found.items():
                row = rows.get(name)
                if row is None:
                    s.add(ArenaModel(name=name, path=m.path, source="run", added_at=now, enabled=True))
                    stats["added"].append(name)
                elif row.source != "run":
                    stats["shadowed"].append(name)
                elif row.path != m.path:
                    row.path = m.path
            for name, row in rows.items():
                if row.source == "run" and name not in found and row.enabled:
                    row.enabled = False
                    stats["disabled"].append(name)
            return stats

        return self.db.retry(sync)

    def add_model(self, name: str, path: str, actor: str, update: bool = False) -> ArenaModelInfo:
        """An admin's model: a local model folder or a bundled model (`smollm2-135m`), under `name`."""
        name = (name or "").strip()
        if not MODEL_NAME_RE.match(name):
            raise InputError(f"model names are 1-{MAX_NAME_CHARS} letters, digits or _ . @ / + - (starting with a "
                             "letter or digit)", field="name")
        spec = check_model_spec(path)
        now = self.clock()

        def add(s: Session) -> ArenaModelInfo:
            row = s.scalar(select(ArenaModel).where(ArenaModel.name == name))
            if row is not None and not update:
                raise InputError(f"the arena already has a model named '{name}'", field="name")
            if row is None:
                row = ArenaModel(name=name, path=spec, source="admin", added_at=now, enabled=True)
                s.add(row)
            else:
                row.path, row.source, row.enabled = spec, "admin", True
            s.add(AuditEntry(at=now, actor=actor[:128], action="arena-add-model", target=name, detail={"path": spec}))
            s.flush()
            return ArenaModelInfo(row.name, row.path, row.source, row.added_at, row.enabled)

        return self.db.retry(add)

    def set_model_enabled(self, name: str, enabled: bool, actor: str) -> None:
        def change(s: Session) -> None:
            row = s.scalar(select(ArenaModel).where(ArenaModel.name == name))
            if row is None:
                raise InputError(f"the arena has no model named '{name}'", field="name")
            row.enabled = bool(enabled)
            s.add(AuditEntry(at=self.clock(), actor=actor[:128],
                             action="arena-enable-model" if enabled else "arena-disable-model", target=name))

        self.db.retry(change)

    # ---- conversations -----------------------------------------------------------------------

    def start(self, reviewer: str, models: Sequence[str] | None = None) -> Conversation:
        """A new conversation of `reviewer` with two distinct models drawn from `models` (default:
        every enabled model of the registry; each must be an enabled registered model)."""
        enabled = [m.name for m in self.models()]
        names = list(dict.fromkeys(models if models is not None else enabled))
        unknown = [n for n in names if n not in enabled]
        if unknown:
            raise ArenaError(f"The model '{unknown[0]}' is not in the arena (or is disabled).")
        if len(names) < 2:
            raise ArenaError("The arena needs at least two models; ask an admin to add some.")
        with self.db.read() as s:
            self._reviewer_id(s, reviewer)  # an unknown or disabled reviewer fails before the draw
        model_a, model_b, how = self._draw(names)
        now = self.clock()

        def add(s: Session) -> Conversation:
            row = ArenaConversation(reviewer_id=self._reviewer_id(s, reviewer), model_a=model_a, model_b=model_b,
                                    created_at=now, revealed_at=None, draw=how)
            s.add(row)
            s.flush()
            return Conversation(row.id, reviewer, model_a, model_b, now, None, ())

        return self.db.retry(add)

    def _draw(self, names: list[str]) -> tuple[str, str, str]:
        if importlib.util.find_spec("labeling_ui.arena.leaderboard") is not None:
            from labeling_ui.arena.leaderboard import next_pair

            a, b = next_pair(self.votes(), names, self.rng)
            how = "next_pair"
        else:  # without the leaderboard module: uniform over the pairs
            a, b = self.rng.sample(names, 2)
            how = "uniform"
        if self.rng.random() < 0.5:  # sides at random whatever the draw's own order
            a, b = b, a
        return a, b, how

    def conversation(self, conversation_id: int, reviewer: str) -> Conversation:
        """The reviewer's own conversation with every turn and vote; ArenaError for anyone else's."""
        with self.db.read() as s:
            row = self._own(s, conversation_id, self._reviewer_id(s, reviewer))
            return self._conversation(s, row, reviewer)

    def conversations(self, reviewer: str, limit: int = 20) -> list[Conversation]:
        """The reviewer's latest conversations, newest first."""
        with self.db.read() as s:
            me = self._reviewer_id(s, reviewer)
            rows = s.scalars(select(ArenaConversation).where(ArenaConversation.reviewer_id == me)
                             .order_by(ArenaConversation.id.desc()).limit(limit)).all()
            return [self._conversation(s, r, reviewer) for r in rows]

    def check_turn(self, conversation_id: int, reviewer: str) -> None:
        """Raise ArenaError if `reviewer` may not add a turn now (not theirs, revealed, too long, too
        fast). Call it before generating: generation is the expensive part."""
        with self.db.read() as s:
            self._may_add(s, conversation_id, self._reviewer_id(s, reviewer), self.clock())

    def prepare_turn(self, conversation_id: int, reviewer: str, message: str) -> tuple[Conversation, list, list]:
        """`check_turn`, then the conversation and what each side answers next (its own history and
        `message`): everything `ArenaEngine.submit` needs, read in one transaction."""
        message = _message(message)
        with self.db.read() as s:
            conv = self._may_add(s, conversation_id, self._reviewer_id(s, reviewer), self.clock())
            whole = self._conversation(s, conv, reviewer)
        return (whole, *whole.next_messages(message))

    def add_turn(self, conversation_id: int, reviewer: str, message: str, answer_a: str | None = None,
                 answer_b: str | None = None, *, ended_a: bool = True, ended_b: bool = True,
                 stats_a: SideStats | dict | None = None, stats_b: SideStats | dict | None = None,
                 generation: dict | None = None, state: "JobState | None" = None) -> ConversationTurn:
        """Store one turn: the reviewer's message and both answers (or a finished engine job's `state`,
        which brings the answers, ended flags and speed figures). Checks what `check_turn` checks."""
        if state is not None:
            answer_a, answer_b, ended_a, ended_b = state.a.text, state.b.text, state.a.ended, state.b.ended
            stats_a, stats_b = SideStats(**state.a.stats()), SideStats(**state.b.stats())
        if answer_a is None or answer_b is None:
            raise ArenaError("Both answers are needed to store a turn.")
        message = _message(message)
        a, b = _stats(stats_a), _stats(stats_b)
        now = self.clock()

        def add(s: Session) -> ConversationTurn:
            conv = self._may_add(s, conversation_id, self._reviewer_id(s, reviewer), now)
            n = s.scalar(select(func.count(ArenaTurn.id)).where(ArenaTurn.conversation_id == conv.id))
            row = ArenaTurn(conversation_id=conv.id, turn=n + 1, message=message, answer_a=answer_a,
                            answer_b=answer_b, ended_a=bool(ended_a), ended_b=bool(ended_b), tokens_a=a.num_tokens,
                            tokens_b=b.num_tokens, ttft_a_s=a.ttft_s, ttft_b_s=b.ttft_s,
                            tokens_per_s_a=a.tokens_per_s, tokens_per_s_b=b.tokens_per_s, generation=generation,
                            created_at=now)
            s.add(row)
            s.flush()
            return _turn(row, None)

        return self.db.retry(add)

    def vote(self, turn_id: int, reviewer: str, outcome: str, reason: str = "") -> Voted:
        """The reviewer's verdict on one turn of their own conversation: a, b, tie or both_bad."""
        outcome = (outcome or "").strip().lower().replace("-", "_").replace(" ", "_")
        if outcome not in OUTCOMES:
            raise ArenaError(f"A vote is one of {', '.join(OUTCOMES)}, not {outcome!r}.")
        reason = (reason or "").strip()
        if len(reason) > MAX_REASON_CHARS:
            raise ArenaError(f"Reasons are limited to {MAX_REASON_CHARS} characters.")
        now = self.clock()

        def cast(s: Session) -> Voted:
            me = self._reviewer_id(s, reviewer)
            turn = s.get(ArenaTurn, tid) if (tid := _id(turn_id)) is not None else None
            conv = s.get(ArenaConversation, turn.conversation_id) if turn is not None else None
            if conv is None or conv.reviewer_id != me:
                raise ArenaError(NOT_YOURS)
            earlier = s.scalar(select(ArenaVote).where(ArenaVote.turn_id == tid))
            if earlier is not None:
                if earlier.outcome == outcome and earlier.reason == reason:
                    return Voted(tid, outcome, duplicate=True)
                raise ArenaError("You already voted on this turn; a vote cannot be changed.")
            if conv.revealed_at is not None:
                raise ArenaError("The models of this conversation were revealed: start a new one to vote again.")
            s.add(ArenaVote(turn_id=tid, reviewer_id=me, outcome=outcome, reason=reason, created_at=now))
            s.flush()
            return Voted(tid, outcome, duplicate=False)

        return self.db.retry(cast)

    def reveal(self, conversation_id: int, reviewer: str) -> Conversation:
        """Show the reviewer which models they talked to; the conversation then takes no more turns or
        votes. Revealing again returns the same conversation."""
        now = self.clock()

        def show(s: Session) -> Conversation:
            row = self._own(s, conversation_id, self._reviewer_id(s, reviewer))
            if row.revealed_at is None:
                row.revealed_at = now
                s.flush()
            return self._conversation(s, row, reviewer)

        return self.db.retry(show)

    # ---- read-outs -----------------------------------------------------------------------------

    def votes(self) -> list["Vote"]:
        """Every vote as the leaderboard takes it (labeling_ui.arena.leaderboard.Vote), oldest first."""
        from labeling_ui.arena.leaderboard import Vote

        return [Vote(r["model_a"], r["model_b"], r["outcome"]) for r in self.vote_records()]

    def vote_records(self) -> list[dict]:
        """Every vote with where it came from, oldest first: vote_id, turn_id, conversation_id, turn,
        reviewer, reviewer_disabled, model_a, model_b, outcome, reason, created_at."""
        with self.db.read() as s:
            rows = s.execute(
                select(ArenaVote.id, ArenaVote.turn_id, ArenaTurn.conversation_id, ArenaTurn.turn, Reviewer.name,
                       Reviewer.disabled, ArenaConversation.model_a, ArenaConversation.model_b, ArenaVote.outcome,
                       ArenaVote.reason, ArenaVote.created_at)
                .join(ArenaTurn, ArenaTurn.id == ArenaVote.turn_id)
                .join(ArenaConversation, ArenaConversation.id == ArenaTurn.conversation_id)
                .join(Reviewer, Reviewer.id == ArenaConversation.reviewer_id)
                .order_by(ArenaVote.id)).all()
        keys = ("vote_id", "turn_id", "conversation_id", "turn", "reviewer", "reviewer_disabled", "model_a",
                "model_b", "outcome", "reason", "created_at")
        return [dict(zip(keys, r)) for r in rows]

    def voted_conversations(self) -> list[Conversation]:
        """Every conversation with at least one vote, whole (all turns): what the export reads."""
        with self.db.read() as s:
            ids = select(ArenaTurn.conversation_id).join(ArenaVote, ArenaVote.turn_id == ArenaTurn.id)
            rows = s.execute(select(ArenaConversation, Reviewer.name).join(Reviewer)
                             .where(ArenaConversation.id.in_(ids)).order_by(ArenaConversation.id)).all()
            return [self._conversation(s, row, name) for row, name in rows]

    def counts(self) -> dict:
        """Conversations, turns and votes by outcome: a line for the admin tab."""
        with self.db.read() as s:
            by = dict(s.execute(select(ArenaVote.outcome, func.count(ArenaVote.id)).group_by(ArenaVote.outcome)).all())
            return {"conversations": s.scalar(select(func.count(ArenaConversation.id))),
                    "turns": s.scalar(select(func.count(ArenaTurn.id))),
                    "votes": sum(by.values()), **{o: by.get(o, 0) for o in OUTCOMES}}

    # ---- inside transactions -----------------------------------------------------------------

    @staticmethod
    def _reviewer_id(s: Session, name: str) -> int:
        rid = s.scalar(select(Reviewer.id).where(Reviewer.name == name, Reviewer.disabled.is_(False)))
        if rid is None:
            raise UnknownReviewer(f"Unknown reviewer '{name}'.")
        return rid

    @staticmethod
    def _own(s: Session, conversation_id: int, me: int) -> ArenaConversation:
        row = s.get(ArenaConversation, cid) if (cid := _id(conversation_id)) is not None else None
        if row is None or row.reviewer_id != me:
            raise ArenaError(NOT_YOURS)
        return row

    def _may_add(self, s: Session, conversation_id: int, me: int, now: datetime) -> ArenaConversation:
        conv = self._own(s, conversation_id, me)
        if conv.revealed_at is not None:
            raise ArenaError("This conversation is over (the models were revealed): start a new one.")
        n = s.scalar(select(func.count(ArenaTurn.id)).where(ArenaTurn.conversation_id == conv.id))
        if n >= self.max_turns:
            raise ArenaError(f"This conversation has reached {self.max_turns} turns: vote, then start a new one.")
        if self.rate_limit:
            since = now - timedelta(minutes=1)
            recent = (select(ArenaTurn.created_at).join(ArenaConversation)
                      .where(ArenaConversation.reviewer_id == me, ArenaTurn.created_at > since)
                      .order_by(ArenaTurn.created_at))
            times = s.scalars(recent).all()
            if len(times) >= self.rate_limit:
                wait = max(1, int((times[len(times) - self.rate_limit] + timedelta(minutes=1) - now).total_seconds()
                                  + 0.999))
                raise ArenaError(f"You can send {self.rate_limit} messages a minute in the arena; "
                                 f"wait {wait} s and send it again.")
        return conv

    @staticmethod
    def _conversation(s: Session, row: ArenaConversation, reviewer: str) -> Conversation:
        turns = s.execute(select(ArenaTurn, ArenaVote).outerjoin(ArenaVote, ArenaVote.turn_id == ArenaTurn.id)
                          .where(ArenaTurn.conversation_id == row.id).order_by(ArenaTurn.turn)).all()
        return Conversation(row.id, reviewer, row.model_a, row.model_b, row.created_at, row.revealed_at,
                            tuple(_turn(t, v) for t, v in turns))


def _turn(t: ArenaTurn, v: ArenaVote | None) -> ConversationTurn:
    return ConversationTurn(t.id, t.turn, t.message, t.answer_a, t.answer_b, t.ended_a, t.ended_b,
                            SideStats(t.tokens_a, t.ttft_a_s, t.tokens_per_s_a),
                            SideStats(t.tokens_b, t.ttft_b_s, t.tokens_per_s_b), t.created_at,
                            v.outcome if v is not None else None, v.reason if v is not None else "")


def _id(value) -> int | None:
    """A row id as a page may send it (an int, or its digits as text); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _message(message: str) -> str:
    if not isinstance(message, str) or not message.strip():
        raise ArenaError("Write a message first.")
    message = message.strip()
    if len(message) > MAX_MESSAGE_CHARS:
        raise ArenaError(f"Messages are limited to {MAX_MESSAGE_CHARS} characters.")
    return message


def _stats(stats: SideStats | dict | None) -> SideStats:
    if stats is None:
        return SideStats()
    if isinstance(stats, dict):
        return SideStats(stats.get("num_tokens"), stats.get("ttft_s"), stats.get("tokens_per_s"))
    return stats
