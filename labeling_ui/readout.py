"""Reading the label store out, for the export, the admin tab and candidate generation.

`StoreReads` is mixed into `LabelStore` (store.py): read-only transactions, nothing here is on a
reviewer's click path."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Callable

from sqlalchemy import func, select

from labeling_ui.schema import OPEN, Assignment, Candidate, Demonstration, Flag, Item, Prompt, Ranking, Reviewer

if TYPE_CHECKING:
    from labeling_ui.db import Database


class StoreReads:
    """The store's read-outs; LabelStore provides `db`, `clock` and `_in_round()`."""

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
