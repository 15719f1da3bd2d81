"""Items and their rankings imported from other tools (labeling_ui/formats/: jsonl, Argilla, Label
Studio, OpenAssistant) in one transaction each, so nothing is half-imported.

`StoreImports` is mixed into `LabelStore` (store.py), which provides the database, the clock, the
click SQL and the item/submission/audit writers. Nothing here is on a reviewer's click path."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling_ui.accounts import NAME_RE, hash_password
from labeling_ui.questions import question as question_type
from labeling_ui.schema import DONE, Assignment, Item, Reviewer
from ranktune.errors import InputError

if TYPE_CHECKING:
    from datetime import datetime

    from labeling_ui.db import Database
    from labeling_ui.formats.base import ImportItem
    from labeling_ui.queries import ClickSQL


class StoreImports:
    """LabelStore provides `db`, `clock`, `sql`, `_insert_item`, `_insert_submission` and `_audit`."""

    db: "Database"
    clock: Callable[[], "datetime"]
    sql: "ClickSQL"
    _insert_item: Callable
    _insert_submission: Callable
    _audit: Callable

    IMPORT_TOKEN_PREFIX = "import-"  # an imported ranking's submit token: import-<format>-<random>

    def round_question(self, round: int) -> str | None:
        """The question type of `round`'s items (None: the round has no items yet)."""
        with self.db.read() as s:
            return s.scalar(select(Item.question).where(Item.round == round).limit(1))

    def import_items(self, items: Sequence["ImportItem"], round: int, question: str, actor: str, fmt: str,
                     source: str = "", dry_run: bool = False) -> dict:
        """Items and their rankings from another tool, all in one transaction: nothing is half-imported.

        Every item goes into `round`, asked `question` (which must be the round's, if it has items);
        an item whose prompt the round already has is left out and counted (`already_in_round`),
        rankings and all. Each ranking is one submission by its reviewer (an account is made for
        a name the store lacks, with an unusable random password), with a submit token
        `import-<fmt>-...` that tells it from a ranking made in the app. Errors are InputErrors
        naming the record (`where`) and field. `dry_run`: all the same checks and counts, then the
        transaction is rolled back."""
        from labeling_ui.review import GOLD_ROUND

        if round == GOLD_ROUND:
            raise InputError(f"round {GOLD_ROUND} holds the gold items; import into a round from 1 up", field="round")
        asked = question_type(question)

        def run(s: Session) -> dict:
            now = self.clock()
            held = s.scalar(select(Item.question).where(Item.round == round, Item.question != question).limit(1))
            if held is not None:
                raise InputError(f"round {round} asks the {held} question, not {question}: import with --question "
                                 f"{held}, or into another round", field="question")
            reviewers: dict[str, int] = {}
            stats = {"round": round, "question": question, "items": 0, "answers": 0, "rankings": 0,
                     "already_in_round": 0, "reviewers_added": []}
            for it in items:
                unfit = asked.fits(len(it.answers))
                if unfit:
                    raise InputError(unfit, it.where, field="answers")
                names = [label.reviewer for label in it.labels]
                twice = next((n for n in names if names.count(n) > 1), None)
                if twice is not None:
                    raise InputError(f"reviewer '{twice}' ranks this item twice", it.where, field="reviewer")
                policy = "+".join(dict.fromkeys(it.models))
                given = it.priority is not None
                item_id = self._insert_item(s, it.prompt, it.answers, it.ended, policy, round, now, None, None,
                                            question, policies=it.models, generations=it.generations,
                                            priority=it.priority if given else 0.0,
                                            selection={"method": "given", "source": fmt} if given else None)
                if item_id is None:
                    stats["already_in_round"] += 1
                    continue
                stats["items"] += 1
                stats["answers"] += len(it.answers)
                shown = list(range(len(it.answers)))
                for label in it.labels:
                    if label.reviewer not in reviewers:
                        reviewers[label.reviewer] = self._import_reviewer(s, label.reviewer, label.where, now, stats)
                    me = reviewers[label.reviewer]
                    a = Assignment(item_id=item_id, reviewer_id=me, status=DONE, claimed_at=now, expires_at=now,
                                   closed_at=now, shown=shown)
                    s.add(a)
                    s.flush()
                    token = f"{self.IMPORT_TOKEN_PREFIX}{fmt}-{secrets.token_hex(12)}"
                    self._insert_submission(s, a.id, item_id, me, now, list(label.ranks), label.response, shown,
                                            False, token)
                    s.execute(self.sql.count_done, {"item": item_id, "change": 1})
                    stats["rankings"] += 1
            self._audit(s, actor, "import", source, format=fmt, round=round, question=question,
                        items=stats["items"], rankings=stats["rankings"], already_in_round=stats["already_in_round"],
                        reviewers_added=stats["reviewers_added"])
            if dry_run:
                raise _RolledBack(stats)
            return stats

        try:
            return self.db.retry(run) | {"dry_run": False}
        except _RolledBack as done:
            return done.stats | {"dry_run": True}

    @staticmethod
    def _import_reviewer(s: Session, name: str, where: str | None, now: datetime, stats: dict) -> int:
        """The id of reviewer `name` (disabled or not), made first if missing (no usable password)."""
        row = s.scalar(select(Reviewer).where(Reviewer.name == name))
        if row is None:
            if not NAME_RE.match(name):
                raise InputError("reviewer names are 1-64 letters, digits or _ . @ - (starting with a letter or "
                                 f"digit), not {name!r}", where, field="reviewer")
            row = Reviewer(name=name, password_hash=hash_password(secrets.token_urlsafe(24)), is_admin=False,
                           disabled=False, created_at=now)
            s.add(row)
            s.flush()
            stats["reviewers_added"].append(name)
        return row.id


class _RolledBack(Exception):
    """Ends a dry-run import's transaction (rolled back) with what it would have stored."""

    def __init__(self, stats: dict):
        super().__init__("dry run")
        self.stats = stats
