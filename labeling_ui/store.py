"""The label store's API: candidate generation, the web app, simulated reviewers and the export
all read and write through `LabelStore`.

Assignment, in one sentence: an item goes to `overlap` reviewers, never twice to the same one;
a reviewer's claim on an item holds one of its slots until the reviewer submits or skips, or
until `claim_timeout_s` passes, after which the slot is offered again (a closed browser tab
must not hold an item forever). A late submission on an expired claim is still accepted:
an extra label costs nothing, a lost one costs a reviewer's time.

Answer order: each (reviewer, item) claim draws its own display order (`shuffle`; stored with
the assignment, kept for later claims and undo), Task.answers come in that order, and what a
reviewer sends is by shown index; the store maps it to candidate positions before it is stored,
so everything downstream (rankings, agreement, export) refers to the true candidates.

Every method is one transaction. A submission carries a client token; sending the same token
again (a double click, a retry after a dropped connection) returns the first result. What one
click of the page needs - record the submission, claim the next item, count progress - is one
transaction too (`submit_and_next`): all of it lands, or none of it.

The values handed out (Task, Submitted, Progress, Turn) live in tasks.py, the read-outs for the
export and the admin tab in readout.py, the items generate --select chose in selected_items.py,
imports from other tools in imported_items.py.
"""

from __future__ import annotations

import random
import secrets
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Sequence

from sqlalchemy import select, true
from sqlalchemy.orm import Session

from labeling_ui.accounts import Accounts
from labeling_ui.api.tokens import ApiTokens
from labeling_ui.db import Database, sqlite_url, utcnow
from labeling_ui.imported_items import StoreImports
from labeling_ui.queries import ClickSQL
from labeling_ui.questions import question as question_type
from labeling_ui.readout import StoreReads
from labeling_ui.review import StoreReviews
from labeling_ui.schema import DONE, FLAG_KINDS, OPEN, RELEASED, SKIPPED, Candidate, Item, Prompt, Ranking
from labeling_ui.selected_items import StoreSelections
from labeling_ui.tasks import (MAX_COMMENT_CHARS, MAX_DEMONSTRATION_CHARS, TOKEN_RE, Answer, Previous, Progress,
                               SubmitError, Submitted, Task, Turn, UnknownReviewer, answer_label, check_ranks,
                               prompt_key)
from ranktune.errors import InputError
from ranktune.prompting import prompt_text
from ranktune.runs import run_dir

__all__ = ["LabelStore", "SubmitError", "UnknownReviewer", "Task", "Answer", "Previous", "Submitted", "Progress",
           "Turn", "answer_label", "check_ranks", "prompt_key", "TOKEN_RE", "MAX_COMMENT_CHARS",
           "MAX_DEMONSTRATION_CHARS"]


class LabelStore(StoreReads, StoreReviews, StoreSelections, StoreImports):
    COUNT_UP_TO = 100  # a click's progress counts this many items left at most ("100+ left")

    def __init__(self, url: str, overlap: int = 2, claim_timeout_s: float = 1800, round: int | None = None,
                 clock: Callable[[], datetime] = utcnow, gold_rate: int = 0, shuffle: bool = True,
                 **account_settings):
        if overlap < 1:
            raise InputError("must be at least 1", field="overlap")
        if gold_rate < 0:
            raise InputError("must be 0 (no gold items served) or more", field="gold_rate")
        self.db = Database(url)
        self.overlap, self.claim_timeout, self.round = overlap, timedelta(seconds=claim_timeout_s), round
        self.gold_rate = gold_rate  # one claim in gold_rate is a gold item, while the reviewer has one left
        # Each (reviewer, item) gets its own answer order: position bias then points a different way
        # for every reviewer instead of the same way for all (where it would look like agreement).
        self.shuffle = shuffle
        self.clock = clock
        self.sql = ClickSQL(overlap, round, advisory_locks=not self.db.is_sqlite, count_up_to=self.COUNT_UP_TO)
        self.accounts = Accounts(self.db, clock, **account_settings)
        self.tokens = ApiTokens(self.db, clock)

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
                 num_tokens: Sequence[int] | None = None, generation: dict | None = None,
                 question: str = "ranking", priority: float = 0.0, selection: dict | None = None) -> int | None:
        """Store one prompt's answers as an item of `round`, asked `question`; None if that item exists.

        `priority`: served before items of lower priority (selection.py); `selection`: how it was chosen."""
        if len(answers) < 2 or len(ended) != len(answers):
            raise InputError("an item needs at least 2 answers, each with its ended flag")
        unfit = question_type(question).fits(len(answers))
        if unfit:
            raise InputError(unfit, field="question")
        now = self.clock()
        return self.db.retry(lambda s: self._insert_item(s, prompt, answers, ended, policy, round, now, num_tokens,
                                                         generation, question, priority=priority,
                                                         selection=selection))

    @staticmethod
    def _insert_item(s: Session, prompt: str | list, answers: Sequence[str], ended: Sequence[bool], policy: str,
                     round: int, now: datetime, num_tokens: Sequence[int] | None = None,
                     generation: dict | None = None, question: str = "ranking",
                     policies: Sequence[str] | None = None,
                     generations: Sequence[dict | None] | None = None, priority: float = 0.0,
                     selection: dict | None = None) -> int | None:
        """The item's rows (its prompt's too, the first time it is asked) in transaction `s`; None if it exists.

        `policies`/`generations`: one per answer, for items whose answers come from several models
        (imports); otherwise every candidate gets `policy` and `generation`."""
        key = prompt_key(prompt)
        row = s.scalar(select(Prompt).where(Prompt.key == key))
        if row is None:
            row = Prompt(key=key, prompt=prompt, text=prompt_text(prompt), created_at=now)
            s.add(row)
            s.flush()
        if s.scalar(select(Item.id).where(Item.prompt_id == row.id, Item.round == round)) is not None:
            return None
        item = Item(prompt_id=row.id, round=round, policy=policy, created_at=now, question=question,
                    priority=priority, selection=selection)
        s.add(item)
        s.flush()
        for i, (text, end) in enumerate(zip(answers, ended)):
            s.add(Candidate(item_id=item.id, position=i, text=text, policy=policies[i] if policies else policy,
                            round=round, ended=bool(end), num_tokens=num_tokens[i] if num_tokens else None,
                            generation=generations[i] if generations else generation, created_at=now))
        return item.id

    # ---- assignment ------------------------------------------------------------------------

    def _reviewer_id(self, s: Session, name: str) -> int:
        rid = s.execute(self.sql.reviewer_id, {"name": name}).scalar()
        if rid is None:
            raise UnknownReviewer(f"Unknown reviewer '{name}'.")
        return rid

    def _in_round(self):
        return Item.round == self.round if self.round is not None else true()

    def next_task(self, reviewer: str) -> Task | None:
        """The reviewer's current item, or a newly claimed one; None when nothing is left for them."""
        return self.db.retry(lambda s: self._claim(s, self._reviewer_id(s, reviewer), self.clock()))

    def turn(self, reviewer: str) -> Turn:
        """`next_task` and `progress` in one transaction: what a page load shows."""

        def load(s: Session) -> Turn:
            me, now = self._reviewer_id(s, reviewer), self.clock()
            return Turn(self._claim(s, me, now), self._progress(s, me, now))

        return self.db.retry(load)

    def _claim(self, s: Session, me: int, now: datetime) -> Task | None:
        q, until = self.sql, now + self.claim_timeout
        # 1. An item already claimed (the one on screen, or reopened by undo) comes first.
        for aid, item_id, expires_at in s.execute(q.mine, {"me": me}).all():
            if expires_at <= now:  # expired: take it back only if nobody took the slot meanwhile
                s.execute(q.lock_item, {"item": item_id})
                if s.execute(q.active_slots, {"item": item_id, "now": now}).scalar() >= self.overlap:
                    s.execute(q.set_assignment, {"aid": aid, "status": RELEASED})
                    continue
            s.execute(q.set_assignment, {"aid": aid, "expires_at": until})
            return self._task(s, aid, item_id, until)
        # 2. The oldest item with a free slot that this reviewer has not done or skipped; or, on every
        # gold_rate-th claim while there is real work left, a gold item they have not seen. Counting
        # claims (not rankings) keeps a reviewer from dodging gold by skipping.
        gold_turn = self.gold_rate and (s.execute(q.my_claims, {"me": me}).scalar() + 1) % self.gold_rate == 0
        candidates = s.execute(q.free_items, {"me": me, "now": now}).scalars().all()
        # Take the item's claim lock (queries.py) and count again: a concurrent claim may have filled it
        # since the query above. An item another claim holds this instant is passed over; only when
        # every candidate was, are they waited for, so a busy moment never reads as "nothing left".
        busy = []
        for item_id in candidates:
            if not s.execute(q.try_lock_item, {"item": item_id}).scalar():
                busy.append(item_id)
                continue
            if (task := self._claim_item(s, me, now, until, item_id, gold_turn)) is not None:
                return task
        for item_id in busy:
            s.execute(q.lock_item, {"item": item_id})
            if (task := self._claim_item(s, me, now, until, item_id, gold_turn)) is not None:
                return task
        return None

    def _claim_item(self, s: Session, me: int, now: datetime, until: datetime, item_id: int,
                    gold_turn: bool) -> Task | None:
        """Claim locked item `item_id` for reviewer `me` (or, on a gold turn, a gold item); None when it is full."""
        q = self.sql
        a = s.execute(q.my_assignment, {"item": item_id, "me": me}).first()
        if a is not None and a.status == OPEN and a.expires_at > now:
            # our own other request (a double click) claimed it meanwhile: it is ours
            s.execute(q.set_assignment, {"aid": a.id, "expires_at": until})
            return self._task(s, a.id, item_id, until)
        if s.execute(q.active_slots, {"item": item_id, "now": now}).scalar() >= self.overlap:
            return None
        claim = {"status": OPEN, "claimed_at": now, "expires_at": until, "closed_at": None}
        gold = s.execute(q.free_gold, {"me": me}).scalar() if gold_turn else None
        if gold is not None:  # never assigned to this reviewer before: a new row
            aid = s.execute(q.new_assignment, {"item_id": gold, "reviewer_id": me, **claim}).inserted_primary_key[0]
            return self._task(s, aid, gold, until)
        if a is None:
            aid = s.execute(q.new_assignment, {"item_id": item_id, "reviewer_id": me, **claim}).inserted_primary_key[0]
        else:  # released or expired earlier: the same row is claimed again
            aid = a.id
            s.execute(q.set_assignment, {"aid": aid, **claim})
        return self._task(s, aid, item_id, until)

    def _task(self, s: Session, assignment_id: int, item_id: int, expires_at: datetime,
              previous: Previous | None = None) -> Task:
        round, prompt, text, question = s.execute(self.sql.item, {"item": item_id}).one()
        rows = s.execute(self.sql.answers, {"item": item_id}).all()
        shown = s.execute(self.sql.shown, {"aid": assignment_id}).scalar()
        if shown is None or sorted(shown) != list(range(len(rows))):  # a new claim (or one from before v3)
            seed = secrets.randbelow(2**31) if self.shuffle else None
            shown = random.Random(seed).sample(range(len(rows)), len(rows)) if self.shuffle else list(range(len(rows)))
            s.execute(self.sql.set_assignment, {"aid": assignment_id, "shown": shown, "order_seed": seed})
        answers = [Answer(p, t, bool(e), shown=i) for i, (p, t, e) in enumerate(rows[j] for j in shown)]
        return Task(assignment_id, item_id, round, prompt, text, answers, expires_at, previous, question or "ranking")

    # ---- submissions -----------------------------------------------------------------------

    def submit(self, reviewer: str, assignment_id: int, ranks: Sequence | None = None, *, token: str,
               skip: bool = False, flags: Sequence[str] = (), comment: str = "", demonstration: str = "",
               reply: dict | None = None) -> Submitted:
        """Record an answer (or, with `skip`, a skip) of a claimed item, in one transaction.

        The answer is by *shown* index (as Task.answers lists them): `ranks`, or for any question
        type `reply`, what its `check` takes (labeling_ui/questions/). Stored by candidate position."""
        sent = _checked_submission(token, flags, comment, demonstration)
        reply = _reply(ranks, reply)
        return self.db.retry(lambda s: self._record(s, self._reviewer_id(s, reviewer), self.clock(), assignment_id,
                                                    reply, skip, *sent))

    def skip(self, reviewer: str, assignment_id: int, *, token: str, flags: Sequence[str] = (),
             comment: str = "", demonstration: str = "") -> Submitted:
        return self.submit(reviewer, assignment_id, token=token, skip=True, flags=flags, comment=comment,
                           demonstration=demonstration)

    def submit_and_next(self, reviewer: str, assignment_id: int, ranks: Sequence | None = None, *, token: str,
                        skip: bool = False, flags: Sequence[str] = (), comment: str = "",
                        demonstration: str = "", reply: dict | None = None) -> Turn:
        """`submit`, then `next_task` and `progress`, in one transaction: one click of the page.

        Returns what the three calls in a row would; a SubmitError (or any failure) rolls all of it
        back. A repeated token answers `submitted.duplicate` and still hands out the next item.
        """
        sent = _checked_submission(token, flags, comment, demonstration)
        reply = _reply(ranks, reply)

        def click(s: Session) -> Turn:
            me, now = self._reviewer_id(s, reviewer), self.clock()
            done = self._record(s, me, now, assignment_id, reply, skip, *sent)
            return Turn(self._claim(s, me, now), self._progress(s, me, now), done)

        return self.db.retry(click)

    def _record(self, s: Session, me: int, now: datetime, assignment_id: int, reply: dict | None, skip: bool,
                token: str, flags: list[str], comment: str, demonstration: str) -> Submitted:
        q = self.sql
        # Lock the assignment before looking for the token: a concurrent submit of the same
        # token then waits here, and afterwards finds the row that submit wrote.
        a = s.execute(q.lock_assignment, {"aid": assignment_id}).first()
        earlier = s.execute(q.by_token, {"token": token}).first()
        if earlier is not None:
            if earlier.reviewer_id != me:
                raise SubmitError("This submit token belongs to another submission.")
            return Submitted(earlier.uid, duplicate=True, skipped=bool(earlier.skipped))
        if a is None or a.reviewer_id != me:
            raise SubmitError("This item is not assigned to you.")
        if a.status in (DONE, SKIPPED):
            raise SubmitError("You already submitted this item; use Undo to change your answer.")
        k = s.execute(q.answer_count, {"item": a.item_id}).scalar()
        shown = a.shown if a.shown is not None and sorted(a.shown) == list(range(k)) else list(range(k))
        ranks = response = None
        if not skip:
            question = question_type(s.execute(q.question, {"item": a.item_id}).scalar() or "ranking")
            checked = question.check(reply or {}, k)
            ranks, response = _by_position(checked.ranks, shown), checked.response
            for key in question.per_answer:
                response = {**response, key: _by_position(response[key], shown)}
        uid = self._insert_submission(s, a.id, a.item_id, me, now, ranks, response, shown, skip, token, flags,
                                      comment, demonstration, (now - a.claimed_at).total_seconds())
        s.execute(q.set_assignment, {"aid": a.id, "status": SKIPPED if skip else DONE, "closed_at": now})
        if not skip:
            s.execute(q.count_done, {"item": a.item_id, "change": 1})
        return Submitted(uid, duplicate=False, skipped=skip)

    def _insert_submission(self, s: Session, assignment_id: int, item_id: int, me: int, now: datetime,
                           ranks: list | None, response: dict | None, shown: list, skip: bool, token: str,
                           flags: Sequence[str] = (), comment: str = "", demonstration: str = "",
                           seconds: float | None = None) -> str:
        """A submission's rows (ranking, flags, comment, written answer), checked already; its uid."""
        q = self.sql
        uid = uuid.uuid4().hex
        row_id = s.execute(q.new_ranking, {
            "uid": uid, "assignment_id": assignment_id, "item_id": item_id, "reviewer_id": me,
            "ranks": ranks, "response": response, "shown": shown, "skipped": skip, "submit_token": token,
            "seconds": seconds, "created_at": now, "withdrawn_at": None,
        }).inserted_primary_key[0]
        on_row = {"ranking_id": row_id, "item_id": item_id}
        if flags:
            s.execute(q.new_flag, [{**on_row, "kind": f} for f in flags])
        if comment:
            s.execute(q.new_comment, {**on_row, "text": comment})
        if demonstration:
            s.execute(q.new_demonstration, {**on_row, "text": demonstration})
        return uid

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
            if a.status == DONE:
                s.execute(self.sql.count_done, {"item": a.item_id, "change": -1})
            a.status, a.claimed_at, a.expires_at, a.closed_at = OPEN, now, now + self.claim_timeout, None
            previous = Previous(last.ranks, last.skipped, sorted(f.kind for f in last.flags),
                                "\n".join(c.text for c in last.comments),
                                "\n".join(d.text for d in last.demonstrations), last.response)
            s.flush()
            return self._task(s, a.id, a.item_id, a.expires_at, previous)

        return self.db.retry(reopen)

    def progress(self, reviewer: str, exact: bool = True) -> Progress:
        with self.db.read() as s:
            return self._progress(s, self._reviewer_id(s, reviewer), self.clock(), exact)

    def _progress(self, s: Session, me: int, now: datetime, exact: bool = False) -> Progress:
        """Exact, or (a click's) with `remaining` counted up to COUNT_UP_TO and `more` set beyond it."""
        counts = {bool(skipped): n for skipped, n in s.execute(self.sql.my_counts, {"me": me})}
        more = False
        if exact:
            remaining = s.execute(self.sql.remaining, {"me": me, "now": now}).scalar()
        else:
            free, mine_full = s.execute(self.sql.remaining_up_to, {"me": me, "now": now}).one()
            more = free > self.COUNT_UP_TO
            remaining = self.COUNT_UP_TO if more else free + mine_full
        since = now.replace(hour=0, minute=0, second=0, microsecond=0)
        today = s.execute(self.sql.my_today, {"me": me, "since": since}).scalar()
        return Progress(counts.get(False, 0), counts.get(True, 0), remaining, today, more)


def _reply(ranks: Sequence | None, reply: dict | None) -> dict | None:
    if reply is not None and not isinstance(reply, dict):
        raise SubmitError("Nothing was saved: the page sent no answer it could read. Reload the page.")
    return reply if reply is not None else ({"ranks": list(ranks)} if ranks is not None else None)


def _by_position(by_shown: Sequence, shown: Sequence[int]) -> list:
    """Values listed in display order (shown[i] is the candidate shown i-th), by candidate position."""
    out = [None] * len(shown)
    for i, position in enumerate(shown):
        out[position] = by_shown[i]
    return out


def _checked_submission(token: str, flags: Sequence[str], comment: str, demonstration: str) -> tuple:
    """(token, flags, comment, demonstration) as stored; SubmitError for what the store refuses outright."""
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
    return token, flags, comment, demonstration
