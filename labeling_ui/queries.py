"""The SQL of a reviewer's click - claim an item, record a submission, count progress - built once
per store and run as Core statements with bind parameters.

Why not the ORM's `select(Model).where(...)` inline, as elsewhere: one click runs about fifteen
statements, and building each from Python expressions on every call (plus cache keys, ORM
loading and the unit-of-work flush) cost ~13 of the ~15 ms a click took, against ~1.5 ms that
SQLite spent running them (profiled under the 50-reviewer load). The app's handlers share one
interpreter (and its GIL) with the event streams of every page, so that time is everyone's latency.
"""

from __future__ import annotations

from sqlalchemy import DateTime, Integer, and_, bindparam, exists, func, insert, or_, select, true, update

from labeling_ui.schema import (CONFIRMED, DONE, OPEN, SKIPPED, Assignment, Candidate, Comment, Demonstration, Flag,
                                FlagReview, GoldItem, Item, Prompt, Ranking, Reviewer)

A, I, P, C, RK, RV = (m.__table__ for m in (Assignment, Item, Prompt, Candidate, Ranking, Reviewer))
F, FR, G = (m.__table__ for m in (Flag, FlagReview, GoldItem))
# The first key of every advisory lock the claims take (the second is the item id), so they cannot
# collide with advisory locks another application takes in the same PostgreSQL database.
CLAIM_LOCKS = 0x52544B31  # "RTK1"


def held_for_review(item_id):
    """An item out of circulation: flags nobody reviewed yet, or flags an admin confirmed (the latest
    decision on it). Correlated with `item_id` (a column of the enclosing query)."""
    fr, latest = FR.alias("fr"), FR.alias("fr_latest")
    reviewed_up_to = select(func.coalesce(func.max(fr.c.last_flag_id), 0)).where(fr.c.item_id == item_id) \
        .correlate_except(fr).scalar_subquery()
    pending = select(F.c.id).join(RK, RK.c.id == F.c.ranking_id) \
        .where(F.c.item_id == item_id, F.c.id > reviewed_up_to, RK.c.withdrawn_at.is_(None)) \
        .correlate_except(F, RK).exists()
    newest = select(func.max(fr.c.id)).where(fr.c.item_id == item_id).correlate_except(fr).scalar_subquery()
    confirmed = select(latest.c.id).where(latest.c.id == newest, latest.c.decision == CONFIRMED) \
        .correlate_except(latest).exists()
    return or_(pending, confirmed)


class ClickSQL:
    """Statements for one store (its overlap and round filter are part of them).

    Bind parameters: `me` (reviewer id), `now` (the transaction's clock), `item`, `aid`
    (assignment id), `name`, `token`. `set_assignment` takes the columns to set as parameters.
    """

    def __init__(self, overlap: int, round: int | None, advisory_locks: bool = False, count_up_to: int = 100):
        me, now = bindparam("me"), bindparam("now", type_=DateTime())
        in_round = I.c.round == round if round is not None else true()
        holds_slot = or_(A.c.status == DONE, and_(A.c.status == OPEN, A.c.expires_at > now))  # done, or claimed
        held = select(func.count()).select_from(A).where(A.c.item_id == I.c.id, holds_slot) \
            .correlate(I).scalar_subquery()
        closed_by_me = exists().where(A.c.item_id == I.c.id, A.c.reviewer_id == me, A.c.status.in_((DONE, SKIPPED)))
        # Work to hand out: not a gold item (those come at their own rate), not held for a flag review.
        servable = and_(~exists().where(G.c.item_id == I.c.id), ~held_for_review(I.c.id))

        self.reviewer_id = select(RV.c.id).where(RV.c.name == bindparam("name"), RV.c.disabled.is_(False))
        # claiming
        self.mine = select(A.c.id, A.c.item_id, A.c.expires_at).join(I, I.c.id == A.c.item_id) \
            .where(A.c.reviewer_id == me, A.c.status == OPEN, in_round) \
            .order_by(A.c.claimed_at.desc(), A.c.id.desc())
        # Up to 50 free items in serving order: items a reviewer already ranked (done_count closer to
        # overlap) first, so started items are finished before new ones are opened; then the highest
        # priority (generate --select); then the oldest. That is the order of ix_items_claim_order
        # (done_count DESC, priority DESC, id), so the claim reads the index in order from the first
        # item with a slot left and stops at 50, with no sort. done_count < overlap is implied by
        # held < overlap; said first, it is checked from the index before any subquery runs. (Priority
        # first across done_count values needed a sort or a union of one scan per value: 103 rankings/s
        # at saturation on PostgreSQL against 130 for this order, 2026-12-02.)
        self.free_items = select(I.c.id).where(I.c.done_count < overlap, held < overlap, ~closed_by_me, in_round,
                                               servable) \
            .order_by(I.c.done_count.desc(), I.c.priority.desc(), I.c.id).limit(50)
        # Gold: every reviewer may get each gold item once, whatever its round and however many had it.
        self.free_gold = select(I.c.id).join(G, G.c.item_id == I.c.id) \
            .where(~exists().where(A.c.item_id == I.c.id, A.c.reviewer_id == me), ~held_for_review(I.c.id)) \
            .order_by(I.c.id).limit(1)
        self.my_claims = select(func.count()).select_from(A).where(A.c.reviewer_id == me)
        # Claims of one item take turns on a lock of their own, not the item's row: submits update the
        # row (done_count), and with a row lock each submit waited for whichever claim held the row,
        # and each claim for submits, until their transactions ended (PostgreSQL, measured: half the
        # saturation throughput). A transaction-scoped advisory lock keyed by the item id is released
        # at COMMIT or ROLLBACK like a row lock. SQLite has one writer at a time: nothing to take.
        # `try_lock_item` skips an item another claim holds this instant. Waiting for it made a convoy:
        # every reviewer's search starts at the same oldest items, so each claim queued behind all the
        # others to find them full, one by one.
        if advisory_locks:
            key = bindparam("item", type_=Integer())
            self.lock_item = select(func.pg_advisory_xact_lock(CLAIM_LOCKS, key))
            self.try_lock_item = select(func.pg_try_advisory_xact_lock(CLAIM_LOCKS, key))
        else:
            self.lock_item = self.try_lock_item = select(true())
        self.active_slots = select(func.count()).select_from(A).where(A.c.item_id == bindparam("item"), holds_slot)
        self.my_assignment = select(A.c.id, A.c.status, A.c.expires_at).where(A.c.item_id == bindparam("item"),
                                                                             A.c.reviewer_id == me)
        self.new_assignment = insert(A)
        self.set_assignment = update(A).where(A.c.id == bindparam("aid"))
        self.item = select(I.c.round, P.c.prompt, P.c.text, I.c.question).join(P, P.c.id == I.c.prompt_id) \
            .where(I.c.id == bindparam("item"))
        self.shown = select(A.c.shown).where(A.c.id == bindparam("aid"))
        self.answers = select(C.c.position, C.c.text, C.c.ended).where(C.c.item_id == bindparam("item")) \
            .order_by(C.c.position)
        # submitting
        self.lock_assignment = select(A.c.id, A.c.item_id, A.c.reviewer_id, A.c.status, A.c.claimed_at, A.c.shown) \
            .where(A.c.id == bindparam("aid")).with_for_update(key_share=True)
        self.question = select(I.c.question).where(I.c.id == bindparam("item"))
        self.by_token = select(RK.c.uid, RK.c.reviewer_id, RK.c.skipped).where(RK.c.submit_token == bindparam("token"))
        self.answer_count = select(func.count()).select_from(C).where(C.c.item_id == bindparam("item"))
        self.new_ranking = insert(RK)
        self.new_flag, self.new_comment, self.new_demonstration = (insert(m.__table__) for m in
                                                                   (Flag, Comment, Demonstration))
        # progress
        self.my_counts = select(RK.c.skipped, func.count()).where(RK.c.reviewer_id == me, RK.c.withdrawn_at.is_(None)) \
            .group_by(RK.c.skipped)
        self.my_today = select(func.count()).select_from(RK).where(
            RK.c.reviewer_id == me, RK.c.withdrawn_at.is_(None), RK.c.skipped.is_(False),
            RK.c.created_at >= bindparam("since", type_=DateTime()))
        # Items this reviewer may still get: ones with a free slot (found through done_count's index, as
        # above), plus the ones they hold a claim on that are otherwise full (few: found from their claims).
        # Each free item costs a handful of subqueries to check, so a click counts at most count_up_to+1
        # of them (the page says "100+ left"): counting a 3,000-item pool took 12 ms of PostgreSQL's
        # CPU on every click, most of what a click cost it under load. `remaining` counts them all.
        free_ids = select(I.c.id).where(I.c.done_count < overlap, held < overlap, ~closed_by_me, in_round, servable)
        mine_full = select(func.count()).select_from(A.join(I, I.c.id == A.c.item_id)).where(
            A.c.reviewer_id == me, A.c.status == OPEN, A.c.expires_at > now, held >= overlap, in_round,
            servable).scalar_subquery()
        count_all = select(func.count()).select_from(free_ids.subquery()).scalar_subquery()
        count_some = select(func.count()).select_from(free_ids.limit(count_up_to + 1).subquery()).scalar_subquery()
        self.remaining = select(count_all + mine_full)
        self.remaining_up_to = select(count_some, mine_full)
        self.count_done = update(I).where(I.c.id == bindparam("item")).values(
            done_count=I.c.done_count + bindparam("change"))
