"""Reading the label store out, for the export, the admin tab and candidate generation.

`StoreReads` is mixed into `LabelStore` (store.py): read-only transactions, nothing here is on a
reviewer's click path."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Callable

from sqlalchemy import func, select

from labeling_ui.schema import OPEN, Assignment, Candidate, Flag, GoldItem, Item, Prompt, Ranking, Reviewer

if TYPE_CHECKING:
    from labeling_ui.db import Database


class StoreReads:
    """The store's read-outs; LabelStore provides `db`, `clock`, `_in_round()` and (StoreReviews) `flag_states()`."""

    db: "Database"
    clock: Callable[[], datetime]

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

    def prompt_texts(self, limit: int = 30) -> list[str]:
        """Readable texts of the store's first prompts (the Arena's suggestions)."""
        with self.db.read() as s:
            return list(s.scalars(select(Prompt.text).order_by(Prompt.id).limit(limit)))

    def max_answers(self) -> int:
        with self.db.read() as s:
            return int(s.scalar(select(func.max(Candidate.position))) or 0) + 1

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
        """Every active (not withdrawn, not skipped) ranking, oldest first, with its item's texts.

        `question`/`response`: the question type and its own answer (by candidate position; ranks
        always hold what it implies); `shown`: the display order it was answered in (positions);
        `selection`: how generate chose the item (None: it was not chosen, select order);
        `gold`: the item has a known answer; `flag_state`: None, or what became of its flags
        (StoreReviews.flag_states); `reviewer_disabled`: the account has been disabled since."""
        flagged, states = self.flagged_items(), self.flag_states()
        with self.db.read() as s:
            rows = s.execute(select(Ranking, Reviewer.name, Reviewer.disabled)
                             .join(Reviewer, Reviewer.id == Ranking.reviewer_id)
                             .where(Ranking.withdrawn_at.is_(None), Ranking.skipped.is_(False))
                             .order_by(Ranking.id)).all()
            item_ids = {r.item_id for r, _, _ in rows}
            items = {i.id: i for i in s.scalars(select(Item).where(Item.id.in_(item_ids)))}
            gold = set(s.scalars(select(GoldItem.item_id).where(GoldItem.item_id.in_(item_ids))))
            out = []
            for r, name, disabled in rows:
                item = items[r.item_id]
                out.append({"ranking_id": r.uid, "item_id": item.id, "prompt": item.prompt_row.prompt,
                            "answers": [c.text for c in item.candidates],
                            "ended": [bool(c.ended) for c in item.candidates], "ranks": list(r.ranks),
                            "reviewer": name, "round": item.round, "policy": item.policy,
                            "flagged": item.id in flagged, "flags": sorted(set(flagged.get(item.id, []))),
                            "flag_state": states.get(item.id), "gold": item.id in gold,
                            "reviewer_disabled": bool(disabled), "created_at": r.created_at, "seconds": r.seconds,
                            "question": item.question or "ranking", "response": r.response, "shown": r.shown,
                            "selection": item.selection})
        return out

    def submissions(self) -> list[dict]:
        """Every active submission (rankings and skips) with its reviewer and timing, for the admin view."""
        with self.db.read() as s:
            rows = s.execute(select(Reviewer.name, Ranking.item_id, Ranking.skipped, Ranking.created_at,
                                    Ranking.seconds).join(Reviewer, Reviewer.id == Ranking.reviewer_id)
                             .where(Ranking.withdrawn_at.is_(None)).order_by(Ranking.id)).all()
        return [dict(r._mapping) for r in rows]

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
