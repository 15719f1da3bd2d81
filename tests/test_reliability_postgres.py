"""The same guarantees on a real PostgreSQL server (Debian's `postgresql`, started on loopback by the
test, as an unprivileged user when run as root, and removed afterwards): the load run counts every
ranking exactly once, and a double-clicked page never strands the item it claimed.

Skipped, with the reason, when initdb/pg_ctl or psycopg2 are not installed.
"""

from __future__ import annotations

import threading
import time

import pytest
from pg_helpers import empty_database, label_load

load = label_load()


@pytest.fixture
def pg_url(pg_server):
    """The server with an empty database for this test."""
    return empty_database(pg_server)


def test_load_postgres_every_ranking_exactly_once(pg_url, tmp_path):
    result = load.load_run(pg_url, tmp_path, reviewers=10, rankings=120, double_click_every=4, time_limit_s=240)
    assert result["rows"] == 120 and result["items"] == 60  # check_store compared every reviewer's rows too
    assert result["double_clicks"] >= 10 and result["duplicate_answers"] >= 1


def test_two_claims_at_once_by_one_reviewer_both_get_the_item(pg_url):
    """A double click sends two requests that each submit and then claim the next item. The one
    that waits for the other's lock used to count the other's fresh claim as a stranger's, find the
    item full and answer "all done": the reviewer left, the claim stayed open until it expired."""
    from sqlalchemy import create_engine, text

    from labeling_ui.store import LabelStore

    store = LabelStore(pg_url, overlap=2)
    item = store.add_item("p", ["a", "b", "c", "d"], [True] * 4, "pol", 1)
    for name in ("ann", "ben"):
        store.accounts.add(name, "correct horse")
    assert store.next_task("ben").item_id == item  # one slot of two taken

    engine = create_engine(pg_url)
    got, errors = [], []

    def claim():
        try:
            got.append(store.next_task("ann"))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    with engine.connect() as holder:
        holder.begin()
        holder.execute(text("SELECT id FROM items WHERE id = :i FOR UPDATE"), {"i": item})  # both claims queue here
        threads = [threading.Thread(target=claim) for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        with engine.connect() as probe:  # wait until both are really waiting on the lock
            while time.monotonic() < deadline:
                waiting = probe.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                             "AND pid <> pg_backend_pid()")).scalar()
                probe.rollback()  # PostgreSQL keeps one snapshot of pg_stat_activity per transaction: take a new one
                if waiting == 2:
                    break
                time.sleep(0.02)
        assert waiting == 2
        holder.rollback()
    for t in threads:
        t.join(timeout=30)
    engine.dispose()
    assert not errors, errors
    assert [t and t.item_id for t in got] == [item, item]  # neither says "all done"
    assert store.counts()["open_claims"] == 2
    store.close()
