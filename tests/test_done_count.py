"""items.done_count (schema v4), which the claim and the progress count read instead of counting
every item's assignments on each click: it equals the number of "done" assignments after any mix
of submits, skips, undos, expired claims, late submissions and imports, a store from before it is
filled in when upgraded, and the store hands out the same items as counting would."""

from __future__ import annotations

import random
import sqlite3

from sqlalchemy import text

from labeling_ui.db import sqlite_url
from labeling_ui.formats.base import ImportItem, ImportLabel
from labeling_ui.store import LabelStore
from labeling_ui.testing import FakeClock

PASSWORD = "correct horse battery"


def mismatches(store: LabelStore) -> list:
    with store.db.read() as s:
        return s.execute(text("SELECT i.id, i.done_count, (SELECT count(*) FROM assignments a WHERE a.item_id = i.id "
                              "AND a.status = 'done') AS n FROM items i ORDER BY i.id")).all()


def wrong(store: LabelStore) -> list:
    return [(i, kept, n) for i, kept, n in mismatches(store) if kept != n]


def test_done_count_follows_every_way_an_assignment_is_done_or_undone(tmp_path):
    clock = FakeClock()
    store = LabelStore(sqlite_url(tmp_path / "labels.db"), overlap=2, claim_timeout_s=60, clock=clock)
    for i in range(12):
        store.add_item(f"prompt {i}", ["a", "b", "c"], [True] * 3, "pol", 1)
    names = ["ann", "ben", "cat", "dan"]
    for n in names:
        store.accounts.add(n, PASSWORD)
    rng, tokens, held = random.Random(0), 0, {}
    for _step in range(300):
        who = rng.choice(names)
        action = rng.random()
        if action < 0.1:
            store.undo_last(who)
        elif action < 0.15:
            clock.advance(seconds=90)  # every open claim expires; late submissions still count
        else:
            task = held.get(who) if rng.random() < 0.3 and who in held else store.next_task(who)
            if task is None:
                continue
            held[who] = task
            tokens += 1
            try:
                store.submit(who, task.assignment_id, [1, 2, 3], token=f"tok-{tokens:06d}", skip=action < 0.3)
            except Exception:  # noqa: BLE001 - refused (already submitted): nothing to count
                pass
        assert wrong(store) == [], f"after step {_step}"
    store.import_items([ImportItem("imported prompt", ["x", "y"], [True, True], ["m1", "m2"],
                                   [ImportLabel("eve", [1, 2]), ImportLabel("fay", [2, 1])])], 2, "ranking", "t", "jsonl")
    assert wrong(store) == [] and any(n == 2 for _, n, _ in mismatches(store))
    store.close()


def test_a_version_3_store_gets_done_count_filled_in(tmp_path):
    path = tmp_path / "labels.db"
    store = LabelStore(sqlite_url(path), overlap=2)
    for i in range(3):
        store.add_item(f"prompt {i}", ["a", "b"], [True, True], "pol", 1)
    for n in ("ann", "ben"):
        store.accounts.add(n, PASSWORD)
        for _ in range(2):
            task = store.next_task(n)
            store.submit(n, task.assignment_id, [1, 2], token=f"{n}-token-{task.item_id}")
    before = store.progress("ann"), store.next_task("ann").item_id
    store.close()
    with sqlite3.connect(path) as conn:  # as written by the code before done_count
        conn.execute("DROP INDEX ix_items_claim_order")  # v5's, on done_count and priority
        for column in ("done_count", "priority", "selection"):
            conn.execute(f"ALTER TABLE items DROP COLUMN {column}")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    store = LabelStore(sqlite_url(path), overlap=2)
    assert [n for _, n, _ in mismatches(store)] == [2, 2, 0] and wrong(store) == []
    assert (store.progress("ann"), store.next_task("ann").item_id) == before
    with store.db.read() as s:
        assert "ix_items_claim_order" in {r[1] for r in s.execute(text("PRAGMA index_list(items)")).all()}
    store.close()
