"""Writing and reading the items `generate --select random|uncertainty` chose (labeling_ui/selection.py).

`StoreSelections` is mixed into `LabelStore` (store.py). A selection's items are written in ONE
transaction, so a crashed generate leaves the round with all of them or none: a rerun never sends
a half-chosen set plus a second choice on top of it. Nothing here is on a reviewer's click path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling_ui.questions import question as question_type
from labeling_ui.schema import Item, Prompt
from ranktune.errors import InputError

if TYPE_CHECKING:
    from datetime import datetime

    from labeling_ui.db import Database


@dataclass
class ChosenItem:
    prompt: str | list
    answers: Sequence[str]
    ended: Sequence[bool]
    num_tokens: Sequence[int] | None
    priority: float
    selection: dict


class StoreSelections:
    """LabelStore provides `db`, `clock` and `_insert_item`."""

    db: "Database"
    clock: Callable[[], "datetime"]
    _insert_item: Callable

    def add_items(self, items: Sequence[ChosenItem], policy: str, round: int, generation: dict | None = None,
                  question: str = "ranking") -> list[int | None]:
        """Every item in one transaction (ids; None for a prompt the round already had)."""
        for it in items:
            if len(it.answers) < 2 or len(it.ended) != len(it.answers):
                raise InputError("an item needs at least 2 answers, each with its ended flag")
            unfit = question_type(question).fits(len(it.answers))
            if unfit:
                raise InputError(unfit, field="question")
        now = self.clock()

        def write(s: Session) -> list[int | None]:
            return [self._insert_item(s, it.prompt, it.answers, it.ended, policy, round, now, it.num_tokens,
                                      generation, question, priority=it.priority, selection=it.selection)
                    for it in items]

        return self.db.retry(write)

    def round_selections(self, round: int) -> list[tuple[str, dict | None]]:
        """(prompt text, selection record or None) of every item of `round`, oldest first."""
        with self.db.read() as s:
            rows = s.execute(select(Prompt.text, Item.selection).join(Prompt, Prompt.id == Item.prompt_id)
                             .where(Item.round == round).order_by(Item.id)).all()
        return [(text, sel) for text, sel in rows]
