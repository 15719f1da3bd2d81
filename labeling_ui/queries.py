"""The SQL of a reviewer's click - claim an item, record a submission, count progress - built once
per store and run as Core statements with bind parameters.

Why not the ORM's `select(Model).where(...)` inline, as elsewhere: one click runs about fifteen
statements, and building each from Python expressions on every call (plus cache keys, ORM
loading and the unit-of-work flush) cost ~13 of the ~15 ms a click took, against ~1.5 ms that
SQLite spent running them (profiled under the 50-reviewer load). The app's handlers share one
interpreter (and its GIL) with the event streams of every page, so that time is everyone's latency.
"""

from __future__ import annotations

from sqlalchemy import DateTime, and_, bindparam, exists, func, insert, or_, select, true, update

from labeling_ui.schema import (DONE, OPEN, SKIPPED, Assignment, Candidate, Comment, Demonstration, Flag, Item,
                                Prompt, Ranking, Reviewer)

A, I, P, C, RK, RV = (m.__table__ for m in (Assignment, Item, Prompt, Candidate, Ranking, Reviewer))


class ClickSQL:
    """Statements for one store (its overlap and round filter are part of them).

    Bind parameters: `me` (reviewer id), `now` (the transaction's clock), `item`, `aid`
    (assignment id), `name`, `token`. `set_assignment` takes the columns to set as parameters.
    """

    def __init__(self, overlap: int, round: int | None):
        me, now = bindparam("me"), bindparam("now", type_=DateTime())
        in_round = I.c.round == round if round is not None else true()
        holds_slot = or_(A.c.status == DONE, and_(A.c.status == OPEN, A.c.expires_at > now))  # done, or claimed
        held = select(func.count()).select_from(A).where(A.c.item_id == I.c.id, holds_slot) \
            .correlate(I).scalar_subquery()
        closed_by_me = exists().where(A.c.item_id == I.c.id, A.c.reviewer_id == me, A.c.status.in_((DONE, SKIPPED)))
        open_by_me = exists().where(A.c.item_id == I.c.id, A.c.reviewer_id == me, A.c.status == OPEN,
                                    A.c.expires_at > now)

        self.reviewer_id = select(RV.c.id).where(RV.c.name == bindparam("name"), RV.c.disabled.is_(False))
        # claiming
        self.mine = select(A.c.id, A.c.item_id, A.c.expires_at).join(I, I.c.id == A.c.item_id) \
            .where(A.c.reviewer_id == me, A.c.status == OPEN, in_round) \
            .order_by(A.c.claimed_at.desc(), A.c.id.desc())
        self.free_items = select(I.c.id).where(held < overlap, ~closed_by_me, in_round).order_by(I.c.id).limit(50)
        self.lock_item = select(I.c.id).where(I.c.id == bindparam("item")).with_for_update()
        self.active_slots = select(func.count()).select_from(A).where(A.c.item_id == bindparam("item"), holds_slot)
        self.my_assignment = select(A.c.id, A.c.status, A.c.expires_at).where(A.c.item_id == bindparam("item"),
                                                                             A.c.reviewer_id == me)
        self.new_assignment = insert(A)
        self.set_assignment = update(A).where(A.c.id == bindparam("aid"))
        self.item = select(I.c.round, P.c.prompt, P.c.text).join(P, P.c.id == I.c.prompt_id) \
            .where(I.c.id == bindparam("item"))
        self.answers = select(C.c.position, C.c.text, C.c.ended).where(C.c.item_id == bindparam("item")) \
            .order_by(C.c.position)
        # submitting
        self.lock_assignment = select(A.c.id, A.c.item_id, A.c.reviewer_id, A.c.status, A.c.claimed_at) \
            .where(A.c.id == bindparam("aid")).with_for_update()
        self.by_token = select(RK.c.uid, RK.c.reviewer_id, RK.c.skipped).where(RK.c.submit_token == bindparam("token"))
        self.answer_count = select(func.count()).select_from(C).where(C.c.item_id == bindparam("item"))
        self.new_ranking = insert(RK)
        self.new_flag, self.new_comment, self.new_demonstration = (insert(m.__table__) for m in
                                                                   (Flag, Comment, Demonstration))
        # progress
        self.my_counts = select(RK.c.skipped, func.count()).where(RK.c.reviewer_id == me, RK.c.withdrawn_at.is_(None)) \
            .group_by(RK.c.skipped)
        self.remaining = select(func.count()).select_from(I).where(~closed_by_me, or_(held < overlap, open_by_me),
                                                                   in_round)
