"""What a team lead does with the label store: gold items, the flag and written-answer review
queues, off-boarding reviewers, and the audit log of all of it.

`StoreReviews` is mixed into `LabelStore` (store.py), as `StoreReads` is: none of this is on a
reviewer's click path. Every admin action is one transaction together with its audit entry, so
the log never says something happened that did not (or the other way round).

Why the queues: a flag means "a reviewer thinks this item should not train the model"; one
reviewer's word is not enough to drop everybody's rankings of it, nor to keep them. Until an admin
decides, the item is held out of the export and served to nobody. Written answers go straight
into the next SFT run's data, so each one waits for an admin's approval (any single account could
otherwise put 20,000 characters of its own text into training).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Callable, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from labeling_ui.schema import (APPROVED, CLEARED, CONFIRMED, OPEN, REJECTED, RELEASED, Assignment, AuditEntry,
                                Candidate, Comment, Demonstration, DemonstrationReview, Flag, FlagReview, GoldItem,
                                Item, Meta, Ranking, Reviewer)
from labeling_ui.schema import Session as LoginSession
from labeling_ui.tasks import SubmitError, answer_label, check_ranks
from ranktune.errors import InputError

if TYPE_CHECKING:
    from datetime import datetime

    from labeling_ui.db import Database

GOLD_ROUND = 0  # imported gold items live in a round of their own; generation rounds start at 1


def gold_pairs(k: int, ranks: Sequence | None = None, worst: int | None = None) -> tuple[list[list[int]], str]:
    """The (better, worse) answer positions a gold answer asserts, and how to show it to people.

    `ranks`: a full expected order (dense, 1 = best, ties assert nothing between them);
    `worst`: only "this answer must be last" (0-based position)."""
    if (ranks is None) == (worst is None):
        raise InputError("give either ranks (the expected order) or worst (the answer that must be last)")
    if ranks is not None:
        try:
            ranks = check_ranks(ranks, k)
        except SubmitError as err:
            raise InputError(str(err), field="ranks") from None
        pairs = [[i, j] for i in range(k) for j in range(k) if ranks[i] < ranks[j]]
        if not pairs:
            raise InputError("a gold answer that ties every answer checks nothing", field="ranks")
        return pairs, "ranks " + ",".join(map(str, ranks))
    if type(worst) is not int or not 0 <= worst < k:
        raise InputError(f"must be an answer position from 0 to {k - 1}", field="worst")
    return [[i, worst] for i in range(k) if i != worst], f"{answer_label(worst)} last"


class StoreReviews:
    """LabelStore provides `db`, `clock`, `accounts` and `_insert_item`."""

    db: "Database"
    clock: Callable[[], "datetime"]

    # ---- audit -----------------------------------------------------------------------------

    def _audit(self, s: Session, actor: str, action: str, target: str = "", **detail) -> None:
        s.add(AuditEntry(at=self.clock(), actor=actor[:128], action=action, target=target, detail=detail or None))

    def record_action(self, actor: str, action: str, target: str = "", **detail) -> None:
        """An admin action done elsewhere (an export, say), into the audit log."""
        with self.db.write() as s:
            self._audit(s, actor, action, target, **detail)

    def audit_log(self, limit: int = 200) -> list[dict]:
        """The latest admin actions, newest first."""
        with self.db.read() as s:
            rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)).all()
            return [{"at": r.at, "actor": r.actor, "action": r.action, "target": r.target, "detail": r.detail or {}}
                    for r in rows]

    @staticmethod
    def _admin_id(s: Session, actor: str) -> int | None:
        return s.scalar(select(Reviewer.id).where(Reviewer.name == actor))

    # ---- gold items ------------------------------------------------------------------------

    def add_gold(self, records: Sequence[dict], actor: str) -> list[int]:
        """Make items gold, all in one transaction: nothing is half-imported.

        Each record is {item_id, ranks | worst} (mark an existing item) or {prompt, answers, ranks |
        worst, ended?, policy?} (a new item in the gold round). Errors are InputErrors naming the
        record (`where` in each record, e.g. "file.jsonl:3") and field.
        """

        def add(s: Session) -> list[int]:
            ids = []
            for rec in records:
                where = rec.get("where")
                try:
                    if rec.get("item_id") is not None:
                        item_id = rec["item_id"]
                        if type(item_id) is not int or s.get(Item, item_id) is None:
                            raise InputError("no such item in the store", field="item_id")
                        k = s.scalar(select(func.count()).select_from(Candidate).where(Candidate.item_id == item_id))
                    else:
                        answers = rec.get("answers")
                        if not isinstance(answers, list) or len(answers) < 2 or not all(
                                isinstance(a, str) for a in answers):
                            raise InputError("expected a list of at least 2 answers (text)", field="answers")
                        item_id, k = None, len(answers)
                    pairs, expected = gold_pairs(k, rec.get("ranks"), rec.get("worst"))
                except InputError as err:
                    raise InputError(err.message, where, field=err.field) from None
                if item_id is None:
                    item_id = self._new_gold_item(s, rec, where)
                if s.get(GoldItem, item_id) is not None:
                    raise InputError(f"item {item_id} is gold already", where, field="item_id")
                s.add(GoldItem(item_id=item_id, pairs=pairs, expected=expected, created_at=self.clock()))
                ids.append(item_id)
            self._audit(s, actor, "add-gold", f"{len(ids)} items", items=ids)
            return ids

        return self.db.retry(add)

    def _new_gold_item(self, s: Session, rec: dict, where: str | None) -> int:
        prompt = rec.get("prompt")
        if not (isinstance(prompt, str) and prompt.strip()) and not isinstance(prompt, list):
            raise InputError("expected text or chat messages", where, field="prompt")
        answers = rec["answers"]
        ended = rec.get("ended", [True] * len(answers))
        if not isinstance(ended, list) or len(ended) != len(answers):
            raise InputError("expected one true/false per answer", where, field="ended")
        item_id = self._insert_item(s, prompt, answers, ended, str(rec.get("policy") or "gold"), GOLD_ROUND,
                                    self.clock())
        if item_id is None:
            raise InputError("this prompt already has a gold item", where, field="prompt")
        return item_id

    def gold(self) -> dict[int, list[tuple[int, int]]]:
        """Gold item id -> the (better, worse) answer positions it asserts."""
        with self.db.read() as s:
            return {g.item_id: [tuple(p) for p in g.pairs] for g in s.scalars(select(GoldItem))}

    # ---- flags -----------------------------------------------------------------------------

    def flag_states(self) -> dict[int, str]:
        """Flagged item id -> "pending" (flags no admin has looked at), "confirmed" or "cleared"."""
        with self.db.read() as s:
            flags = s.execute(select(Flag.item_id, func.max(Flag.id)).join(Ranking, Ranking.id == Flag.ranking_id)
                              .where(Ranking.withdrawn_at.is_(None)).group_by(Flag.item_id)).all()
            reviews = s.execute(select(FlagReview.item_id, FlagReview.decision, FlagReview.last_flag_id)
                                .order_by(FlagReview.id)).all()
        latest = {item: (decision, upto) for item, decision, upto in reviews}  # the last decision wins
        states = {}
        for item, newest_flag in flags:
            decision, upto = latest.get(item, (None, 0))
            states[item] = "pending" if newest_flag > upto and decision != CONFIRMED else decision
        for item, (decision, _) in latest.items():
            states.setdefault(item, decision)  # reviewed, though every flag on it was later undone
        return states

    def unsafe_items(self) -> set[int]:
        """Items someone flagged unsafe (in a submission not withdrawn)."""
        with self.db.read() as s:
            return set(s.scalars(select(Flag.item_id).join(Ranking, Ranking.id == Flag.ranking_id)
                                 .where(Flag.kind == "unsafe", Ranking.withdrawn_at.is_(None))))

    def flag_queue(self) -> list[dict]:
        """Items waiting for an admin's decision, oldest flag first, with everything needed to decide."""
        pending = [i for i, state in self.flag_states().items() if state == "pending"]
        with self.db.read() as s:
            out = []
            for item in s.scalars(select(Item).where(Item.id.in_(pending))):
                rows = s.execute(select(Flag.id, Flag.kind, Reviewer.name).join(Ranking, Ranking.id == Flag.ranking_id)
                                 .join(Reviewer, Reviewer.id == Ranking.reviewer_id)
                                 .where(Flag.item_id == item.id, Ranking.withdrawn_at.is_(None))).all()
                out.append({"item_id": item.id, "prompt": item.prompt_row.text, "round": item.round,
                            "answers": [c.text for c in item.candidates], "first_flag": min(r.id for r in rows),
                            "flags": sorted({r.kind for r in rows}), "flagged_by": sorted({r.name for r in rows}),
                            "comments": self._comments(s, item.id)})
        return sorted(out, key=lambda r: r["first_flag"])

    def review_flags(self, actor: str, item_id: int, decision: str, note: str = "") -> None:
        """CONFIRMED: the item leaves the training data and is served no more. CLEARED: its rankings
        count again and it is served again; flags raised after this wait for a new review."""
        if decision not in (CONFIRMED, CLEARED):
            raise InputError(f"must be {CONFIRMED} or {CLEARED}", field="decision")

        def decide(s: Session) -> None:
            if s.get(Item, item_id) is None:
                raise InputError(f"no item {item_id}", field="item_id")
            upto = s.scalar(select(func.max(Flag.id)).where(Flag.item_id == item_id))
            if upto is None:
                raise InputError(f"item {item_id} has no flags to review", field="item_id")
            s.add(FlagReview(item_id=item_id, decision=decision, last_flag_id=upto, admin_id=self._admin_id(s, actor),
                             note=(note or "").strip()[:2000], at=self.clock()))
            self._audit(s, actor, f"flags-{decision}", f"item {item_id}", note=(note or "").strip()[:200])

        self.db.retry(decide)

    def confirmed_items(self) -> list[dict]:
        """Items whose flags an admin confirmed: out of training, kept (and exported apart) as what went wrong."""
        confirmed = [i for i, state in self.flag_states().items() if state == CONFIRMED]
        with self.db.read() as s:
            out = []
            for item in s.scalars(select(Item).where(Item.id.in_(confirmed)).order_by(Item.id)):
                kinds = s.scalars(select(Flag.kind).where(Flag.item_id == item.id).distinct()).all()
                review = s.scalars(select(FlagReview).where(FlagReview.item_id == item.id)
                                   .order_by(FlagReview.id.desc()).limit(1)).one()
                out.append({"item_id": item.id, "prompt": item.prompt_row.prompt,
                            "answers": [c.text for c in item.candidates], "flags": sorted(kinds),
                            "note": review.note, "confirmed_at": review.at.isoformat()})
        return out

    # ---- comments --------------------------------------------------------------------------

    @staticmethod
    def _comments(s: Session, item_id: int) -> list[dict]:
        rows = s.execute(select(Comment.text, Reviewer.name, Ranking.uid).join(Ranking, Ranking.id == Comment.ranking_id)
                         .join(Reviewer, Reviewer.id == Ranking.reviewer_id)
                         .where(Comment.item_id == item_id, Ranking.withdrawn_at.is_(None)).order_by(Comment.id)).all()
        return [{"reviewer": name, "ranking_id": uid, "text": text} for text, name, uid in rows]

    def comments(self) -> list[dict]:
        """Every comment on an active submission, by item: what reviewers told the team."""
        with self.db.read() as s:
            items = s.scalars(select(Comment.item_id).distinct().order_by(Comment.item_id)).all()
            return [{"item_id": i, **c} for i in items for c in self._comments(s, i)]

    # ---- written answers -------------------------------------------------------------------

    def demonstration_rows(self) -> list[dict]:
        """Every written answer of an active submission, with its review (None: waiting)."""
        with self.db.read() as s:
            rows = s.execute(select(Demonstration, Reviewer.name, Reviewer.disabled, Item, DemonstrationReview.decision)
                             .join(Ranking, Ranking.id == Demonstration.ranking_id)
                             .join(Reviewer, Reviewer.id == Ranking.reviewer_id)
                             .join(Item, Item.id == Demonstration.item_id)
                             .outerjoin(DemonstrationReview, DemonstrationReview.demonstration_id == Demonstration.id)
                             .where(Ranking.withdrawn_at.is_(None)).order_by(Demonstration.id)).all()
            return [{"id": d.id, "item_id": item.id, "prompt": item.prompt_row.prompt, "prompt_text": item.prompt_row.text,
                     "completion": d.text, "reviewer": name, "reviewer_disabled": bool(disabled), "decision": decision}
                    for d, name, disabled, item, decision in rows]

    def review_demonstration(self, actor: str, demonstration_id: int, decision: str) -> None:
        if decision not in (APPROVED, REJECTED):
            raise InputError(f"must be {APPROVED} or {REJECTED}", field="decision")

        def decide(s: Session) -> None:
            if s.get(Demonstration, demonstration_id) is None:
                raise InputError(f"no written answer {demonstration_id}", field="demonstration_id")
            admin_id, row = self._admin_id(s, actor), s.get(DemonstrationReview, demonstration_id)
            if row is None:
                s.add(DemonstrationReview(demonstration_id=demonstration_id, decision=decision, admin_id=admin_id,
                                          at=self.clock()))
            else:  # an admin changing their mind
                row.decision, row.admin_id, row.at = decision, admin_id, self.clock()
            self._audit(s, actor, f"demonstration-{decision}", f"written answer {demonstration_id}")

        self.db.retry(decide)

    def pseudonym(self, name: str) -> str:
        """A stable id for a reviewer that does not give the name away (keyed hash; the key stays in the store)."""
        key = self.db.scalar(select(Meta.value).where(Meta.key == "pseudonym_key"))
        if key is None:
            with self.db.write() as s:
                if (row := s.get(Meta, "pseudonym_key")) is None:
                    row = Meta(key="pseudonym_key", value=secrets.token_hex(32))
                    s.add(row)
                key = row.value
        return "reviewer-" + hmac.new(bytes.fromhex(key), name.encode(), hashlib.sha256).hexdigest()[:12]

    # ---- reviewers -------------------------------------------------------------------------

    def set_disabled(self, actor: str, name: str, disabled: bool = True) -> None:
        """Disable: their sessions end now, logins are refused, their open claims go back to the pool;
        their labels stay (the export can leave them out). Enable: they may log in again."""

        def change(s: Session) -> None:
            row = s.scalar(select(Reviewer).where(Reviewer.name == name))
            if row is None:
                raise InputError(f"no reviewer '{name}'", field="name")
            row.disabled = disabled
            if disabled:
                s.execute(delete(LoginSession).where(LoginSession.reviewer_id == row.id))
                s.execute(update(Assignment).where(Assignment.reviewer_id == row.id, Assignment.status == OPEN)
                          .values(status=RELEASED, closed_at=self.clock()))
            self._audit(s, actor, "disable-reviewer" if disabled else "enable-reviewer", name)

        self.db.retry(change)
        self.accounts.changes += 1  # the server's session cache forgets every login now

    def reviewer_names(self) -> list[tuple[str, bool, bool]]:
        """(name, is_admin, disabled) of every account."""
        with self.db.read() as s:
            return [tuple(r) for r in s.execute(select(Reviewer.name, Reviewer.is_admin, Reviewer.disabled)
                                                .order_by(Reviewer.name))]
