"""The label store's API: candidate generation, the web app, simulated reviewers and the export
all read and write through `LabelStore`.

Assignment, in one sentence: an item goes to `overlap` reviewers, never twice to the same one;
a reviewer's claim on an item holds one of its slots until the reviewer submits or skips, or
until `claim_timeout_s` passes, after which the slot is offered again (a closed browser tab
must not hold an item forever). A late submission on an expired claim is still accepted:
an extra label costs nothing, a lost one costs a reviewer's time.

Every method is one transaction. A submission carries a client token; sending the same token
again (a double click, a retry after a dropped connection) returns the first result.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Sequence

from sqlalchemy import and_, exists, func, or_, select, true
from sqlalchemy.orm import Session

from labeling_ui.accounts import Accounts
from labeling_ui.db import Database, sqlite_url, utcnow
from labeling_ui.schema import (DONE, FLAG_KINDS, OPEN, RELEASED, SKIPPED, Assignment, Candidate, Comment,
                                Demonstration, Flag, Item, Prompt, Ranking, Reviewer)
from ranktune.errors import InputError
from ranktune.prompting import prompt_text
from ranktune.runs import run_dir

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_COMMENT_CHARS, MAX_DEMONSTRATION_CHARS = 5_000, 20_000


class SubmitError(ValueError):
    """A submission the store refuses; the message is meant for the reviewer."""


def answer_label(position: int) -> str:
    return chr(ord("A") + position) if position < 26 else str(position + 1)


def prompt_key(prompt: str | list) -> str:
    return hashlib.sha256(json.dumps(prompt, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def check_ranks(ranks: Sequence, k: int) -> list[int]:
    """Dense ranks for k answers: each in 1..k, 1 = best, ties share a rank, no gaps."""
    if ranks is None or len(ranks) != k:
        raise SubmitError(f"Give each of the {k} answers a rank.")
    out = []
    for i, r in enumerate(ranks):
        if r is None or (isinstance(r, str) and not r.strip()):
            raise SubmitError(f"Answer {answer_label(i)} has no rank yet.")
        try:
            value = float(r)
        except (TypeError, ValueError):
            raise SubmitError(f"Answer {answer_label(i)}: '{r}' is not a number.") from None
        if value != int(value) or not 1 <= value <= k:
            raise SubmitError(f"Answer {answer_label(i)}: ranks are whole numbers from 1 (best) to {k}.")
        out.append(int(value))
    missing = sorted(set(range(1, max(out) + 1)) - set(out))
    if missing:
        raise SubmitError(f"No answer has rank {', '.join(map(str, missing))}: ranks must not skip a number "
                          "(answers of equal quality share a rank; the next answer takes the next number).")
    return out


@dataclass(frozen=True)
class Answer:
    position: int
    text: str
    ended: bool  # the model stopped by itself (EOS), rather than being cut off

    @property
    def label(self) -> str:
        return answer_label(self.position)


@dataclass(frozen=True)
class Previous:
    """What the reviewer sent last time for a task reopened by undo."""

    ranks: list[int] | None
    skipped: bool
    flags: list[str] = field(default_factory=list)
    comment: str = ""
    demonstration: str = ""


@dataclass(frozen=True)
class Task:
    """One item claimed by one reviewer: rank `answers` for `prompt`."""

    assignment_id: int
    item_id: int
    round: int
    prompt: str | list
    prompt_text: str
    answers: list[Answer]
    expires_at: datetime
    previous: Previous | None = None


@dataclass(frozen=True)
class Submitted:
    ranking_id: str
    duplicate: bool  # this token was submitted before; nothing new was written
    skipped: bool


@dataclass(frozen=True)
class Progress:
    done: int
    skipped: int
    remaining: int  # items this reviewer may still be given (including the one on screen)

    @property
    def total(self) -> int:
        return self.done + self.remaining


class LabelStore:
    def __init__(self, url: str, overlap: int = 2, claim_timeout_s: float = 1800, round: int | None = None,
                 clock: Callable[[], datetime] = utcnow, **account_settings):
        if overlap < 1:
            raise InputError("must be at least 1", field="overlap")
        self.db = Database(url)
        self.overlap, self.claim_timeout, self.round = overlap, timedelta(seconds=claim_timeout_s), round
        self.clock = clock
        self.accounts = Accounts(self.db, clock, **account_settings)

    @classmethod
    def for_run(cls, run: str, runs_dir: str | Path = "runs", db: str | None = None, must_exist: bool = False,
                **kwargs) -> "LabelStore":
        """The store of a run: `db` (any SQLAlchemy URL) or runs/<run>/labels.db."""
        if db:
            return cls(db, **kwargs)
        path = run_dir(run, runs_dir) / "labels.db"
        if must_exist and not path.is_file():
            raise InputError("no label store here yet: run `python -m labeling_ui generate` first", path)
        return cls(sqlite_url(path), **kwargs)

    def close(self) -> None:
        self.db.dispose()

    # ---- candidates ------------------------------------------------------------------------

    def add_item(self, prompt: str | list, answers: Sequence[str], ended: Sequence[bool], policy: str, round: int,
                 num_tokens: Sequence[int] | None = None, generation: dict | None = None) -> int | None:
        """Store one prompt's answers as an item of `round`; None if that item exists (a resumed run)."""
        if len(answers) < 2 or len(ended) != len(answers):
            raise InputError("an item needs at least 2 answers, each with its ended flag")
        key, now = prompt_key(prompt), self.clock()

        def add(s: Session) -> int | None:
            row = s.scalar(select(Prompt).where(Prompt.key == key))
            if row is None:
                row = Prompt(key=key, prompt=prompt, text=prompt_text(prompt), created_at=now)
                s.add(row)
                s.flush()
            if s.scalar(select(Item.id).where(Item.prompt_id == row.id, Item.round == round)) is not None:
                return None
            item = Item(prompt_id=row.id, round=round, policy=policy, created_at=now)
            s.add(item)
            s.flush()
            for i, (text, end) in enumerate(zip(answers, ended)):
                s.add(Candidate(item_id=item.id, position=i, text=text, policy=policy, round=round, ended=bool(end),
                                num_tokens=num_tokens[i] if num_tokens else None, generation=generation,
                                created_at=now))
            return item.id

        return self.db.retry(add)

    def items_in_round(self, round: int) -> set[str]:
        """Prompt keys that already have an item in `round` (generation skips them on resume)."""
        with self.db.read() as s:
            return set(s.scalars(select(Prompt.key).join(Item, Item.prompt_id == Prompt.id).where(Item.round == round)))

    def rounds(self) -> list[tuple[int, str, int]]:
        """(round, policy, items) for every round so far, oldest first."""
        with self.db.read() as s:
            rows = s.execute(select(Item.round, Item.policy, func.count()).group_by(Item.round, Item.policy)
                             .order_by(Item.round)).all()
        return [tuple(r) for r in rows]

    def max_answers(self) -> int:
        with self.db.read() as s:
            return int(s.scalar(select(func.max(Candidate.position))) or 0) + 1

    # ---- assignment ------------------------------------------------------------------------

    def _reviewer_id(self, s: Session, name: str) -> int:
        rid = s.scalar(select(Reviewer.id).where(Reviewer.name == name, Reviewer.disabled.is_(False)))
        if rid is None:
            raise SubmitError(f"Unknown reviewer '{name}'.")
        return rid

    def _active_slots(self, s: Session, item_id: int, now: datetime):
        """Slots of an item that are filled (done) or held by an unexpired claim."""
        return s.scalar(select(func.count()).where(Assignment.item_id == item_id, self._holds_slot(now)))

    @staticmethod
    def _holds_slot(now: datetime):
        return or_(Assignment.status == DONE, and_(Assignment.status == OPEN, Assignment.expires_at > now))

    def _in_round(self):
        return Item.round == self.round if self.round is not None else true()

    def next_task(self, reviewer: str) -> Task | None:
        """The reviewer's current item, or a newly claimed one; None when nothing is left for them."""

        def claim(s: Session) -> Task | None:
            me, now = self._reviewer_id(s, reviewer), self.clock()
            until = now + self.claim_timeout
            # 1. An item already claimed (the one on screen, or reopened by undo) comes first.
            mine = s.scalars(select(Assignment).join(Item).where(
                Assignment.reviewer_id == me, Assignment.status == OPEN, self._in_round())
                .order_by(Assignment.claimed_at.desc(), Assignment.id.desc())).all()
            for a in mine:
                if a.expires_at <= now:  # expired: take it back only if nobody took the slot meanwhile
                    s.execute(select(Item.id).where(Item.id == a.item_id).with_for_update())
                    if self._active_slots(s, a.item_id, now) >= self.overlap:
                        a.status = RELEASED
                        continue
                a.expires_at = until
                return self._task(s, a)
            # 2. The oldest item with a free slot that this reviewer has not done or skipped.
            held = select(func.count()).where(Assignment.item_id == Item.id, self._holds_slot(now)) \
                .correlate(Item).scalar_subquery()
            closed_by_me = exists().where(Assignment.item_id == Item.id, Assignment.reviewer_id == me,
                                          Assignment.status.in_((DONE, SKIPPED)))
            for item_id in s.scalars(select(Item.id).where(held < self.overlap, ~closed_by_me, self._in_round())
                                     .order_by(Item.id).limit(50)):
                # Lock the item (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers)
                # and count again: a concurrent claim may have filled it since the query above.
                s.execute(select(Item.id).where(Item.id == item_id).with_for_update())
                a = s.scalar(select(Assignment).where(Assignment.item_id == item_id, Assignment.reviewer_id == me))
                if a is not None and a.status == OPEN and a.expires_at > now:
                    a.expires_at = until  # our own other request (a double click) claimed it meanwhile: it is ours
                    return self._task(s, a)
                if self._active_slots(s, item_id, now) >= self.overlap:
                    continue
                if a is None:
                    a = Assignment(item_id=item_id, reviewer_id=me)
                    s.add(a)
                a.status, a.claimed_at, a.expires_at, a.closed_at = OPEN, now, until, None
                s.flush()
                return self._task(s, a)
            return None

        return self.db.retry(claim)

    def _task(self, s: Session, a: Assignment, previous: Previous | None = None) -> Task:
        item = s.get(Item, a.item_id)
        answers = [Answer(c.position, c.text, c.ended) for c in item.candidates]
        return Task(a.id, item.id, item.round, item.prompt_row.prompt, item.prompt_row.text, answers, a.expires_at,
                    previous)

    # ---- submissions -----------------------------------------------------------------------

    def submit(self, reviewer: str, assignment_id: int, ranks: Sequence | None = None, *, token: str,
               skip: bool = False, flags: Sequence[str] = (), comment: str = "", demonstration: str = "") -> Submitted:
        """Record a ranking (or, with `skip`, a skip) of a claimed item, in one transaction."""
        if not isinstance(token, str) or not TOKEN_RE.match(token):
            raise SubmitError("Bad submit token (8-64 letters, digits, _ or -).")
        flags = sorted({f.strip().lower().replace("_", "-") for f in flags})
        unknown = [f for f in flags if f not in FLAG_KINDS]
        if unknown:
            raise SubmitError(f"Unknown flag {unknown[0]!r}; flags are {', '.join(FLAG_KINDS)}.")
        comment, demonstration = (comment or "").strip(), (demonstration or "").strip()
        if len(comment) > MAX_COMMENT_CHARS or len(demonstration) > MAX_DEMONSTRATION_CHARS:
            raise SubmitError(f"Comments are limited to {MAX_COMMENT_CHARS} characters and written answers "
                              f"to {MAX_DEMONSTRATION_CHARS}.")

        def record(s: Session) -> Submitted:
            me, now = self._reviewer_id(s, reviewer), self.clock()
            # Lock the assignment before looking for the token: a concurrent submit of the same
            # token then waits here, and afterwards finds the row that submit wrote.
            a = s.scalar(select(Assignment).where(Assignment.id == assignment_id).with_for_update())
            earlier = s.scalar(select(Ranking).where(Ranking.submit_token == token))
            if earlier is not None:
                if earlier.reviewer_id != me:
                    raise SubmitError("This submit token belongs to another submission.")
                return Submitted(earlier.uid, duplicate=True, skipped=earlier.skipped)
            if a is None or a.reviewer_id != me:
                raise SubmitError("This item is not assigned to you.")
            if a.status in (DONE, SKIPPED):
                raise SubmitError("You already submitted this item; use Undo to change your answer.")
            k = s.scalar(select(func.count()).where(Candidate.item_id == a.item_id))
            checked = None if skip else check_ranks(ranks, k)
            row = Ranking(uid=uuid.uuid4().hex, assignment_id=a.id, item_id=a.item_id, reviewer_id=me, ranks=checked,
                          skipped=skip, submit_token=token, seconds=(now - a.claimed_at).total_seconds(),
                          created_at=now)
            s.add(row)
            s.flush()
            s.add_all(Flag(ranking_id=row.id, item_id=a.item_id, kind=f) for f in flags)
            if comment:
                s.add(Comment(ranking_id=row.id, item_id=a.item_id, text=comment))
            if demonstration:
                s.add(Demonstration(ranking_id=row.id, item_id=a.item_id, text=demonstration))
            a.status, a.closed_at = (SKIPPED if skip else DONE), now
            return Submitted(row.uid, duplicate=False, skipped=skip)

        return self.db.retry(record)

    def skip(self, reviewer: str, assignment_id: int, *, token: str, flags: Sequence[str] = (),
             comment: str = "", demonstration: str = "") -> Submitted:
        return self.submit(reviewer, assignment_id, token=token, skip=True, flags=flags, comment=comment,
                           demonstration=demonstration)

    def undo_last(self, reviewer: str) -> Task | None:
        """Withdraw the reviewer's latest submission and reopen its item for them, answers prefilled.

        Only the latest one: after an undo there is nothing more to undo until the next submit.
        The withdrawn row stays in the store (marked), so nothing a reviewer sent is lost.
        """

        def reopen(s: Session) -> Task | None:
            me, now = self._reviewer_id(s, reviewer), self.clock()
            last = s.scalar(select(Ranking).where(Ranking.reviewer_id == me).order_by(Ranking.id.desc()).limit(1))
            if last is None or last.withdrawn_at is not None:
                return None
            last.withdrawn_at = now
            a = last.assignment
            a.status, a.claimed_at, a.expires_at, a.closed_at = OPEN, now, now + self.claim_timeout, None
            previous = Previous(last.ranks, last.skipped, sorted(f.kind for f in last.flags),
                                "\n".join(c.text for c in last.comments),
                                "\n".join(d.text for d in last.demonstrations))
            return self._task(s, a, previous)

        return self.db.retry(reopen)

    def progress(self, reviewer: str) -> Progress:
        with self.db.read() as s:
            me, now = self._reviewer_id(s, reviewer), self.clock()
            mine = select(Ranking.skipped, func.count()).where(Ranking.reviewer_id == me,
                                                               Ranking.withdrawn_at.is_(None))
            counts = dict(s.execute(mine.group_by(Ranking.skipped)).all())
            held = select(func.count()).where(Assignment.item_id == Item.id, self._holds_slot(now)) \
                .correlate(Item).scalar_subquery()
            closed_by_me = exists().where(Assignment.item_id == Item.id, Assignment.reviewer_id == me,
                                          Assignment.status.in_((DONE, SKIPPED)))
            open_by_me = exists().where(Assignment.item_id == Item.id, Assignment.reviewer_id == me,
                                        Assignment.status == OPEN, Assignment.expires_at > now)
            remaining = s.scalar(select(func.count()).select_from(Item).where(
                ~closed_by_me, or_(held < self.overlap, open_by_me), self._in_round()))
        return Progress(counts.get(False, 0), counts.get(True, 0), remaining)

    # ---- reading out (export, admin) -------------------------------------------------------

    def flagged_items(self) -> dict[int, list[str]]:
        """Item id -> flag kinds, from submissions that were not withdrawn."""
        with self.db.read() as s:
            rows = s.execute(select(Flag.item_id, Flag.kind).join(Ranking, Ranking.id == Flag.ranking_id)
                             .where(Ranking.withdrawn_at.is_(None))).all()
        out: dict[int, list[str]] = {}
        for item_id, kind in rows:
            out.setdefault(item_id, []).append(kind)
        return out

    def rankings(self) -> list[dict]:
        """Every active (not withdrawn, not skipped) ranking, oldest first, with its item's texts."""
        flagged = self.flagged_items()
        with self.db.read() as s:
            rows = s.execute(select(Ranking, Reviewer.name).join(Reviewer, Reviewer.id == Ranking.reviewer_id)
                             .where(Ranking.withdrawn_at.is_(None), Ranking.skipped.is_(False))
                             .order_by(Ranking.id)).all()
            items = {i.id: i for i in s.scalars(select(Item).where(Item.id.in_({r.item_id for r, _ in rows})))}
            out = []
            for r, name in rows:
                item = items[r.item_id]
                out.append({"ranking_id": r.uid, "item_id": item.id, "prompt": item.prompt_row.prompt,
                            "answers": [c.text for c in item.candidates],
                            "ended": [bool(c.ended) for c in item.candidates], "ranks": list(r.ranks),
                            "reviewer": name, "round": item.round, "policy": item.policy,
                            "flagged": item.id in flagged, "flags": sorted(set(flagged.get(item.id, []))),
                            "created_at": r.created_at, "seconds": r.seconds})
        return out

    def submissions(self) -> list[dict]:
        """Every active submission (rankings and skips) with its reviewer and timing, for the admin view."""
        with self.db.read() as s:
            rows = s.execute(select(Reviewer.name, Ranking.item_id, Ranking.skipped, Ranking.created_at,
                                    Ranking.seconds).join(Reviewer, Reviewer.id == Ranking.reviewer_id)
                             .where(Ranking.withdrawn_at.is_(None)).order_by(Ranking.id)).all()
        return [dict(r._mapping) for r in rows]

    def demonstrations(self) -> list[dict]:
        """Reviewer-written answers from active submissions, as SFT records."""
        with self.db.read() as s:
            rows = s.execute(select(Demonstration, Reviewer.name, Item)
                             .join(Ranking, Ranking.id == Demonstration.ranking_id)
                             .join(Reviewer, Reviewer.id == Ranking.reviewer_id)
                             .join(Item, Item.id == Demonstration.item_id)
                             .where(Ranking.withdrawn_at.is_(None)).order_by(Demonstration.id)).all()
            return [{"prompt": item.prompt_row.prompt, "completion": d.text, "reviewer": name, "item_id": item.id}
                    for d, name, item in rows]

    def counts(self) -> dict[str, int]:
        with self.db.read() as s:
            n = lambda stmt: int(s.scalar(stmt) or 0)  # noqa: E731
            return {"prompts": n(select(func.count()).select_from(Prompt)),
                    "items": n(select(func.count()).select_from(Item).where(self._in_round())),
                    "candidates": n(select(func.count()).select_from(Candidate)),
                    "reviewers": n(select(func.count()).select_from(Reviewer)),
                    "rankings": n(select(func.count()).select_from(Ranking).where(
                        Ranking.withdrawn_at.is_(None), Ranking.skipped.is_(False))),
                    "open_claims": n(select(func.count()).select_from(Assignment).where(
                        Assignment.status == OPEN, Assignment.expires_at > self.clock()))}
