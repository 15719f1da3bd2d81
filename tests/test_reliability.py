"""Labels are never lost: the load benchmark in small on SQLite (every ranking counted exactly once;
the PostgreSQL run is in test_reliability_postgres.py), and kill -9 of the app mid-submit (the
store stays consistent, the reviewer's unsaved item comes back). An unwritable or full run
folder: test_reliability_disk.py.

The app's security (every route needs a login, reviewer vs admin, answers render as text,
scrypt, rate limits, the loopback bind) is tested in test_label_app.py and test_label_browser.py.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from labeling_ui.db import sqlite_url

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("label_load", REPO / "benchmarks" / "label_load.py")
load = sys.modules.setdefault("label_load", importlib.util.module_from_spec(_spec))
if not hasattr(load, "load_run"):
    _spec.loader.exec_module(load)


# ---- the load run, small ----------------------------------------------------------------------

def _assert_exact(result: dict, rankings: int, reviewers: int):
    # check_store has already compared the store with what each reviewer was told; these are the totals.
    assert result["rows"] == rankings and result["items"] == rankings // 2
    assert result["double_clicks"] >= reviewers  # every reviewer double-clicked at least once...
    assert result["duplicate_answers"] >= 1  # ...and at least one double click reached the store twice


def test_load_sqlite_every_ranking_exactly_once(tmp_path):
    result = load.load_run(sqlite_url(tmp_path / "labels.db"), tmp_path, reviewers=10, rankings=100,
                           double_click_every=3, time_limit_s=240)
    _assert_exact(result, 100, 10)


def test_store_check_catches_a_lost_and_a_duplicated_row(tmp_path):
    """The checker the two tests above rely on does fail on a lost or doubled row."""
    url = sqlite_url(tmp_path / "labels.db")
    load.seed(url, items=2, reviewers=2, overlap=1)
    from labeling_ui.store import LabelStore

    store = LabelStore(url, overlap=1)
    logs = []
    for name in ("rev000", "rev001"):
        task = store.next_task(name)
        store.submit(name, task.assignment_id, [1, 2, 3, 4], token=f"tok-{name}-1")
        logs.append(load.ReviewerLog(name, saved=1))
    store.close()
    assert load.check_store(url, 2, 1, logs)["rows"] == 2
    with pytest.raises(AssertionError, match="told 'Saved.' 2 times, 1 rows"):
        load.check_store(url, 2, 1, [load.ReviewerLog("rev000", saved=2), logs[1]])
    with sqlite3.connect(tmp_path / "labels.db") as c:
        c.execute("DELETE FROM rankings WHERE id = 2")
    with pytest.raises(AssertionError, match="1 ranking rows, expected 2"):
        load.check_store(url, 2, 1, logs[:1])


# ---- kill -9 mid-submit -----------------------------------------------------------------------

def _consistency(db: Path) -> dict:
    with sqlite3.connect(db) as c:
        q = lambda sql: c.execute(sql).fetchall()  # noqa: E731
        return {
            "integrity": q("PRAGMA integrity_check")[0][0],
            "foreign_keys": q("PRAGMA foreign_key_check"),
            "rows_without_closed_claim": q(
                "SELECT count(*) FROM rankings r JOIN assignments a ON a.id = r.assignment_id "
                "WHERE a.status <> 'done' OR a.item_id <> r.item_id OR a.reviewer_id <> r.reviewer_id")[0][0],
            "closed_claims_without_row": q(
                "SELECT count(*) FROM assignments a WHERE a.status IN ('done', 'skipped') AND NOT EXISTS "
                "(SELECT 1 FROM rankings r WHERE r.assignment_id = a.id)")[0][0],
            "doubled": q("SELECT count(*) FROM (SELECT 1 FROM rankings GROUP BY item_id, reviewer_id "
                         "HAVING count(*) > 1)")[0][0],
            "over_overlap": q("SELECT count(*) FROM (SELECT 1 FROM rankings GROUP BY item_id HAVING count(*) > 2)")[0][0],
            "rows": dict(q("SELECT v.name, count(*) FROM rankings r JOIN reviewers v ON v.id = r.reviewer_id "
                           "GROUP BY v.name")),
            "ranked": set(q("SELECT v.name, r.item_id FROM rankings r JOIN reviewers v ON v.id = r.reviewer_id")),
        }


def test_kill9_mid_submit_keeps_the_store_consistent_and_offers_the_unsaved_item_again(tmp_path):
    db = tmp_path / "labels.db"
    url = sqlite_url(db)
    names = load.seed(url, items=80, reviewers=7, overlap=2)
    busy, idle = names[:6], names[6]
    app = load.start_app(url, tmp_path)
    shown: dict[str, int] = {}  # the item on each reviewer's screen when the app died
    saved: dict[str, int] = {n: 0 for n in names}
    in_flight: dict[str, bool] = {n: False for n in names}
    enough, lock = threading.Event(), threading.Lock()
    total = [0]

    def submit_until_killed(name: str):
        try:
            page = load.Page(app.base, name, timeout_s=60)
            loaded = page.events("on_load", [[]])[0]
            shown[name], ticket = load.shown_item(loaded, 4), load.ticket_in(loaded, "on_load")
            for n in range(400):  # bounded; the kill ends it long before
                in_flight[name] = True
                msg = page.events("on_submit", [load.submit_data(ticket, [1 + (n + j) % 4 for j in range(4)])])[0]
                in_flight[name] = False
                assert "Saved." in load.status_text(msg)
                saved[name] += 1
                shown[name], ticket = load.shown_item(msg, 2), load.ticket_in(msg, "on_submit")
                with lock:
                    total[0] += 1
                    if total[0] >= 20:
                        enough.set()
        except Exception:  # noqa: BLE001 - the connection dies with the app; that is the point
            return

    try:
        page = load.Page(app.base, idle)  # signs in, sees an item, never submits
        shown[idle] = load.shown_item(page.events("on_load", [[]])[0], 4)
        page.close()
        threads = [threading.Thread(target=submit_until_killed, args=(n,), daemon=True) for n in busy]
        for t in threads:
            t.start()
        assert enough.wait(timeout=180), "the reviewers never got 20 submits through"
        app.kill9()
        for t in threads:
            t.join(timeout=60)
    finally:
        app.stop()
    assert sum(in_flight[n] for n in busy) >= 1, "no submit was in flight at the kill: the test proved nothing"

    after = _consistency(db)
    assert after["integrity"] == "ok" and after["foreign_keys"] == []
    assert after["rows_without_closed_claim"] == after["closed_claims_without_row"] == 0  # no half-written submit
    assert after["doubled"] == after["over_overlap"] == 0
    for name in busy:  # nothing a reviewer was told is saved was lost; at most the one in flight was added
        assert saved[name] <= after["rows"].get(name, 0) <= saved[name] + in_flight[name], name

    app = load.start_app(url, tmp_path)
    try:
        offered = {}
        for name in names:
            page = load.Page(app.base, name)
            offered[name] = load.shown_item(page.events("on_load", [[]])[0], 4)
            page.close()
        # Whatever was on screen and not saved comes back; what was saved is not offered twice.
        # A reviewer whose page had not loaded when the app died had nothing on screen to lose.
        seen = [n for n in names if n in shown]
        unsaved = [n for n in seen if (n, shown[n]) not in after["ranked"]]
        assert idle in unsaved and len(unsaved) >= 2
        for name in seen:
            if name in unsaved:
                assert offered[name] == shown[name], name
            else:
                assert offered[name] != shown[name] and (name, offered[name]) not in after["ranked"], name
        page = load.Page(app.base, busy[0])  # and the restarted app takes submissions again
        ticket = load.ticket_in(page.events("on_load", [[]])[0], "on_load")
        assert "Saved." in load.status_text(page.events("on_submit", [load.submit_data(ticket, [1, 2, 3, 4])])[0])
        page.close()
    finally:
        app.stop()
    final = _consistency(db)
    assert final["integrity"] == "ok" and sum(final["rows"].values()) == sum(after["rows"].values()) + 1
