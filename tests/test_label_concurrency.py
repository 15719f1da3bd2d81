"""Many reviewers at once: claims never collide, every submit is counted exactly once, retried
submits are idempotent. On SQLite (WAL) always; on a throwaway PostgreSQL server when Debian's
postgresql binaries are installed."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from labeling_ui.db import sqlite_url
from labeling_ui.store import LabelStore

PASSWORD = "correct horse"


def fill(store: LabelStore, n_items: int, n_reviewers: int, k: int = 4) -> list[str]:
    for i in range(n_items):
        store.add_item(f"prompt {i}", [f"answer {i}.{j}" for j in range(k)], [True] * k, "pol", 1)
    names = [f"r{i}" for i in range(n_reviewers)]
    for name in names:
        store.accounts.add(name, PASSWORD)
    return names


def run_threads(target, args_list):
    errors = []
    barrier = threading.Barrier(len(args_list))

    def wrapped(*args):
        try:
            barrier.wait()  # start together, to make the races real
            target(*args)
        except Exception as err:  # noqa: BLE001 - reported by the test
            errors.append(err)

    threads = [threading.Thread(target=wrapped, args=a) for a in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def check_many_reviewers(store: LabelStore, n_items: int = 24, n_reviewers: int = 8, overlap: int = 3):
    names = fill(store, n_items, n_reviewers)
    done: dict[str, list[int]] = {name: [] for name in names}

    def review(name: str):
        n = 0
        while (task := store.next_task(name)) is not None:
            token = f"{name}-{task.assignment_id}-tok"
            ranks = [1 + (n + j) % 4 for j in range(4)]
            first = store.submit(name, task.assignment_id, ranks, token=token)
            retry = store.submit(name, task.assignment_id, ranks, token=token)  # a double click
            assert retry.duplicate and retry.ranking_id == first.ranking_id
            done[name].append(task.item_id)
            n += 1

    run_threads(review, [(n,) for n in names])
    rankings = store.rankings()
    assert len(rankings) == n_items * overlap == sum(len(v) for v in done.values())
    per_item = Counter(r["item_id"] for r in rankings)
    assert set(per_item.values()) == {overlap}  # every item exactly `overlap` times, none more
    for name, items in done.items():
        assert len(items) == len(set(items)), f"{name} got an item twice"
    assert len({r["ranking_id"] for r in rankings}) == len(rankings)


def check_simultaneous_claims_never_share_a_slot(store: LabelStore, n: int = 12):
    names = fill(store, n, n)
    got: dict[str, int] = {}

    def claim(name):
        got[name] = store.next_task(name).item_id

    run_threads(claim, [(name,) for name in names])
    assert sorted(got.values()) == list(range(1, n + 1))  # overlap 1: twelve reviewers, twelve different items


def check_same_token_at_once_writes_one_row(store: LabelStore):
    fill(store, 1, 1)
    task = store.next_task("r0")
    results = []
    run_threads(lambda: results.append(store.submit("r0", task.assignment_id, [1, 2, 3, 4], token="same-token-1")),
                [()] * 8)
    assert len({r.ranking_id for r in results}) == 1 and sum(not r.duplicate for r in results) == 1
    assert len(store.rankings()) == 1


def check_clicks_at_once(store: LabelStore, n_reviewers: int = 6, n_items: int = 10):
    """What the page does (submit_and_next: one transaction per click), every click sent 3 times at
    once: one row per click, and the copies of one click never claim two different items.

    (They may differ in one way: a copy that found every item taken answers "all done", and a later
    copy gets a slot that someone's skip freed in between - each copy claims as a reload would.)"""
    names = fill(store, n_items, n_reviewers)
    turns = {name: store.turn(name) for name in names}
    seen: dict[str, list[int]] = {name: [] for name in names}

    def review(name: str):
        n = 0
        while (task := turns[name].task) is not None:
            n += 1
            got, errors = [], []

            def click():
                try:
                    got.append(store.submit_and_next(name, task.assignment_id, [1, 2, 2, 3], token=f"{name}-{n}-tok",
                                                     skip=n % 5 == 0))
                except Exception as err:  # noqa: BLE001 - reported below
                    errors.append(err)

            copies = [threading.Thread(target=click) for _ in range(3)]
            for t in copies:
                t.start()
            for t in copies:
                t.join(timeout=60)
            assert not errors, errors
            assert sum(not t.submitted.duplicate for t in got) == 1 and len({t.submitted.ranking_id for t in got}) == 1
            shown = {t.task.assignment_id for t in got if t.task is not None}
            assert len(shown) <= 1, f"one click claimed two items: {[t.task and t.task.item_id for t in got]}"
            seen[name].append(task.item_id)
            turns[name] = next((t for t in got if t.task is not None), got[-1])  # a reload shows the claim

    run_threads(review, [(name,) for name in names])
    assert all(len(v) == len(set(v)) for v in seen.values())
    assert store.counts()["open_claims"] == 0 and len(store.submissions()) == sum(len(v) for v in seen.values())
    assert max(Counter(r["item_id"] for r in store.rankings()).values()) <= store.overlap


def test_many_reviewers_sqlite(tmp_path):
    check_many_reviewers(LabelStore(sqlite_url(tmp_path / "l.db"), overlap=3))


def test_simultaneous_claims_sqlite(tmp_path):
    check_simultaneous_claims_never_share_a_slot(LabelStore(sqlite_url(tmp_path / "l.db"), overlap=1))


def test_same_token_at_once_sqlite(tmp_path):
    check_same_token_at_once_writes_one_row(LabelStore(sqlite_url(tmp_path / "l.db")))


def test_clicks_at_once_sqlite(tmp_path):
    check_clicks_at_once(LabelStore(sqlite_url(tmp_path / "l.db")))


# ---- PostgreSQL -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def postgres_url(pg_server):
    return pg_server  # conftest.py: a throwaway server (labeling_ui/pg_server.py), skipped without one


def _fresh_pg_store(url: str, overlap: int) -> LabelStore:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:  # an empty schema per test
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return LabelStore(url, overlap=overlap)


def test_many_reviewers_postgres(postgres_url):
    store = _fresh_pg_store(postgres_url, overlap=3)
    started = time.monotonic()
    check_many_reviewers(store)
    assert time.monotonic() - started < 120
    store.close()


def test_simultaneous_claims_postgres(postgres_url):
    store = _fresh_pg_store(postgres_url, overlap=1)
    check_simultaneous_claims_never_share_a_slot(store)
    store.close()


def test_same_token_at_once_postgres(postgres_url):
    store = _fresh_pg_store(postgres_url, overlap=2)
    check_same_token_at_once_writes_one_row(store)
    store.close()


def test_clicks_at_once_postgres(postgres_url):
    store = _fresh_pg_store(postgres_url, overlap=2)
    check_clicks_at_once(store)
    store.close()
