"""Running a labeling team, on SQLite and on a real PostgreSQL server: gold items, the flag and
written-answer review queues, disabling reviewers, the audit log, and an export that says what
it held out and why."""

from __future__ import annotations

import json
import sqlite3

import pytest
from pg_helpers import empty_database

from labeling_ui.accounts import LoginRefused
from labeling_ui.db import sqlite_url
from labeling_ui.export import export
from labeling_ui.store import LabelStore, UnknownReviewer
from labeling_ui.testing import FakeClock
from ranktune.errors import InputError

PASSWORD = "correct horse"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "labels.db")
    return empty_database(request.getfixturevalue("pg_server"))


def make_store(url, n_items=4, k=3, overlap=2, reviewers=("ann", "ben", "cat"), **kw) -> LabelStore:
    store = LabelStore(url, overlap=overlap, claim_timeout_s=600, clock=FakeClock(), **{"shuffle": False, **kw})
    for i in range(n_items):
        store.add_item(f"prompt {i}", [f"answer {i}.{j}" for j in range(k)], [True] * k, "pol", 1)
    for name in reviewers:
        store.accounts.add(name, PASSWORD)
    store.accounts.add("boss", PASSWORD, admin=True)
    return store


def rank_all(store, name, ranks, **kw) -> list[int]:
    """`name` ranks every item offered to them with `ranks`; the item ids, in order."""
    seen, n = [], 0
    while (task := store.next_task(name)) is not None:
        store.submit(name, task.assignment_id, ranks(task) if callable(ranks) else ranks,
                     token=f"{name}-tok-{n:04d}", **kw)
        seen.append(task.item_id)
        n += 1
    return seen


# ---- gold items ---------------------------------------------------------------------------------

def test_gold_items_are_served_at_their_rate_to_everyone_scored_and_never_exported(url, tmp_path):
    store = make_store(url, n_items=6, gold_rate=3)
    marked = store.add_gold([{"item_id": 1, "ranks": [1, 2, 3]}], "boss")
    new = store.add_gold([{"prompt": "Capital of France?", "answers": ["Paris.", "Lyon.", "I don't know."],
                           "worst": 2}], "boss")
    assert marked == [1] and store.gold() == {1: [(0, 1), (0, 2), (1, 2)], new[0]: [(0, 2), (1, 2)]}
    got = {name: rank_all(store, name, [1, 2, 3]) for name in ("ann", "ben")}
    for name, items in got.items():
        # claims 3 and 6 were gold; both gold items reach both reviewers, whatever the overlap
        assert {items[2], items[5]} == {1, new[0]} and set(items) - {1, new[0]} <= {2, 3, 4, 5, 6}, (name, items)
    assert store.progress("ann").remaining == 0

    summary = export(store, tmp_path / "export")
    rows = [json.loads(x) for x in (tmp_path / "export" / "rankings.jsonl").read_text().splitlines()]
    assert {r["item_id"] for r in rows}.isdisjoint({1, new[0]}) and summary["rankings_held_out"]["gold"] == 4
    trust = {r["reviewer"]: r for r in json.loads((tmp_path / "export" / "reviewers.json").read_text())}
    # ranks [1, 2, 3] are gold item 1's order exactly, and put 'I don't know.' last on the other one
    assert trust["ann"]["gold_accuracy"] == 1.0 and trust["ann"]["gold_pairs"] == 5
    store.close()


def test_a_bad_gold_record_names_its_line_and_field_and_imports_nothing(url):
    store = make_store(url, n_items=2)
    good = {"item_id": 1, "ranks": [1, 2, 3], "where": "gold.jsonl:1"}
    for bad, field in (({"item_id": 99, "ranks": [1, 2]}, "item_id"),
                       ({"item_id": 2, "ranks": [1, 3, 3]}, "ranks"),
                       ({"item_id": 2, "worst": 7}, "worst"),
                       ({"prompt": "Q?", "answers": ["only one"], "worst": 0}, "answers"),
                       ({"item_id": 2}, None)):
        with pytest.raises(InputError) as err:
            store.add_gold([good, {**bad, "where": "gold.jsonl:2"}], "boss")
        assert str(err.value).startswith("gold.jsonl:2: ") and (field is None or f"'{field}'" in str(err.value))
        assert store.gold() == {}  # the good first record was rolled back with the bad one
    store.close()


# ---- flags --------------------------------------------------------------------------------------

def test_flags_hold_an_item_until_an_admin_confirms_or_clears_it(url, tmp_path):
    store = make_store(url, n_items=2, overlap=2)
    first = store.next_task("ann")
    store.submit("ann", first.assignment_id, [1, 2, 3], token="ann-tok-0001")
    t = store.next_task("ben")
    assert t.item_id == first.item_id
    store.submit("ben", t.assignment_id, [1, 3, 2], token="ben-tok-0001", flags=["unsafe"], comment="<b>harmful</b>")
    rank_all(store, "ann", [1, 2, 3])
    rank_all(store, "ben", [1, 2, 3])

    # One reviewer's flag no longer silently drops every other reviewer's ranking: both wait, counted.
    s = export(store, tmp_path / "a")
    assert s["rankings_held_out"]["flagged_waiting_for_review"] == 2 and s["items_waiting_for_flag_review"] == 1
    assert any("wait for an admin" in n for n in s["notes"])
    [queued] = store.flag_queue()
    assert queued["item_id"] == first.item_id and queued["flags"] == ["unsafe"] and queued["flagged_by"] == ["ben"]
    assert queued["comments"] == [{"reviewer": "ben", "ranking_id": queued["comments"][0]["ranking_id"],
                                   "text": "<b>harmful</b>"}]

    store.review_flags("boss", first.item_id, "cleared", note="fine")
    s = export(store, tmp_path / "b")
    assert s["rankings_held_out"]["flagged_waiting_for_review"] == 0 and s["rankings"] == 4
    store.review_flags("boss", first.item_id, "confirmed", note="on second thought")
    s = export(store, tmp_path / "c")
    assert s["rankings_held_out"]["flagged_confirmed"] == 2 and s["rankings"] == 2 and s["items_flag_confirmed"] == 1
    [kept_apart] = [json.loads(x) for x in (tmp_path / "c" / "flagged.jsonl").read_text().splitlines()]
    assert kept_apart["item_id"] == first.item_id and kept_apart["flags"] == ["unsafe"]
    comments = [json.loads(x) for x in (tmp_path / "c" / "comments.jsonl").read_text().splitlines()]
    assert [c["text"] for c in comments] == ["<b>harmful</b>"]
    assert [e["action"] for e in store.audit_log()] == ["flags-confirmed", "flags-cleared"]
    store.close()


def test_a_new_flag_after_a_clear_waits_for_a_new_review(url):
    store = make_store(url, n_items=1, overlap=3)
    t = store.next_task("ann")
    store.submit("ann", t.assignment_id, [1, 2, 3], token="ann-tok-0001", flags=["broken"])
    store.review_flags("boss", t.item_id, "cleared")
    t = store.next_task("ben")
    store.submit("ben", t.assignment_id, [1, 2, 3], token="ben-tok-0001", flags=["off-topic"])
    assert [q["item_id"] for q in store.flag_queue()] == [t.item_id] and store.next_task("cat") is None
    with pytest.raises(InputError):
        store.review_flags("boss", t.item_id, "maybe")
    store.close()


# ---- written answers ----------------------------------------------------------------------------

def test_written_answers_are_exported_only_once_approved_with_a_pseudonymous_author(url, tmp_path):
    store = make_store(url, n_items=3, overlap=1)
    for n, (flags, text) in enumerate((((), "Approve me."), (["unsafe"], "On an unsafe item."), ((), "Reject me."))):
        t = store.next_task("ann")
        store.submit("ann", t.assignment_id, [1, 2, 3], token=f"ann-tok-{n:04d}", flags=list(flags), demonstration=text)
    rows = {d["completion"]: d for d in store.demonstration_rows()}
    assert export(store, tmp_path / "a")["demonstrations"] == 0  # nothing is approved yet
    for text in ("Approve me.", "On an unsafe item."):
        store.review_demonstration("boss", rows[text]["id"], "approved")
    store.review_demonstration("boss", rows["Reject me."]["id"], "rejected")
    s = export(store, tmp_path / "b", include_flagged=True)
    demos = [json.loads(x) for x in (tmp_path / "b" / "demonstrations.jsonl").read_text().splitlines()]
    assert [d["completion"] for d in demos] == ["Approve me."]  # approved, but on an unsafe item: never
    assert s["demonstrations_held_out"] == {"unreviewed": 0, "rejected": 1, "on_unsafe_items": 1,
                                            "disabled_reviewer": 0}
    author = demos[0]["author"]
    assert author.startswith("reviewer-") and "ann" not in author and author == store.pseudonym("ann")
    assert store.pseudonym("ben") != author
    store.close()


# ---- reviewers ----------------------------------------------------------------------------------

def test_disabling_a_reviewer_ends_their_sessions_frees_their_claim_and_keeps_their_labels(url, tmp_path):
    store = make_store(url, n_items=3, overlap=1)
    first = store.next_task("ann")
    store.submit("ann", first.assignment_id, [1, 2, 3], token="ann-tok-0001")
    on_screen = store.next_task("ann")
    token = store.accounts.new_session(store.accounts.get("ann"))

    store.set_disabled("boss", "ann")
    assert store.accounts.session_user(token) is None
    with pytest.raises(LoginRefused):
        store.accounts.login("ann", PASSWORD, "10.0.0.1")
    with pytest.raises(UnknownReviewer):
        store.next_task("ann")
    taken = store.next_task("ben")
    assert taken.item_id == on_screen.item_id  # the claim went back to the pool
    store.submit("ben", taken.assignment_id, [3, 2, 1], token="ben-tok-0001")
    store.accounts.add("ann", "a new password", update=True)  # a password change does not re-enable
    assert store.accounts.get("ann") is None

    assert export(store, tmp_path / "a")["rankings"] == 2  # the labels stay...
    s = export(store, tmp_path / "b", exclude_disabled=True)  # ...and one setting leaves them out
    assert s["rankings_held_out"]["disabled_reviewer"] == 1 and s["reviewers"] == ["ben"]
    store.set_disabled("boss", "ann", False)
    assert store.accounts.login("ann", "a new password", "10.0.0.1").name == "ann"
    assert [(e["actor"], e["action"], e["target"]) for e in store.audit_log()][:2] == [
        ("boss", "enable-reviewer", "ann"), ("boss", "disable-reviewer", "ann")]
    store.close()


def test_an_export_of_only_disabled_reviewers_labels_says_why_it_is_empty(url, tmp_path):
    store = make_store(url, n_items=1, overlap=1)
    rank_all(store, "ann", [1, 2, 3])
    store.set_disabled("boss", "ann")
    with pytest.raises(InputError, match="disabled_reviewer"):
        export(store, tmp_path / "x", exclude_disabled=True)
    assert not (tmp_path / "x").exists()  # nothing half-written
    store.close()


def test_min_reliability_leaves_out_a_reviewer_who_reverses_the_order(url, tmp_path):
    store = make_store(url, n_items=30, k=4, overlap=3, reviewers=("ann", "ben", "cat", "dan"))
    active, n = ["ann", "ben", "cat", "dan"], 0
    while active:  # turn by turn, so that everyone shares the items; the stored order is the true one
        for name in list(active):
            if (task := store.next_task(name)) is None:
                active.remove(name)
                continue
            store.submit(name, task.assignment_id, [4, 3, 2, 1] if name == "dan" else [1, 2, 3, 4],
                         token=f"tok-{n:05d}")
            n += 1
    s = export(store, tmp_path / "export", min_reliability=0.6)
    trust = {r["reviewer"]: r for r in s["reliability"]}
    assert trust["dan"]["reliability"] < 0.5 < min(trust[n]["reliability"] for n in ("ann", "ben", "cat"))
    assert s["rankings_held_out"]["low_reliability"] == trust["dan"]["rankings"] > 0
    rows = [json.loads(x) for x in (tmp_path / "export" / "rankings.jsonl").read_text().splitlines()]
    assert "dan" not in {r["reviewer"] for r in rows} and all(r["weight"] > 0.5 for r in rows)
    consensus = [json.loads(x) for x in (tmp_path / "export" / "consensus.jsonl").read_text().splitlines()]
    assert consensus and all(c["ranks"] == [1, 2, 3, 4] and c["reviewer"] == "consensus" for c in consensus)
    store.close()


def test_a_version_1_store_is_upgraded_in_place(tmp_path):
    path = tmp_path / "labels.db"
    store = LabelStore(sqlite_url(path))
    store.add_item("Q?", ["a", "b"], [True, True], "pol", 1)
    store.close()
    with sqlite3.connect(path) as conn:  # as a store written before gold items and reviews existed
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        for table in ("gold_items", "flag_reviews", "demonstration_reviews", "audit_log"):
            conn.execute(f"DROP TABLE {table}")
    store = LabelStore(sqlite_url(path))
    assert store.gold() == {} and store.counts()["items"] == 1
    assert {"gold_items", "flag_reviews", "audit_log"} <= set(store.db.tables())
    store.close()


def test_gold_disable_and_export_from_the_command_line(tmp_path, capsys):
    from labeling_ui.cli import main

    common = ["--runs_dir", str(tmp_path / "runs"), "--run", "r"]
    store = LabelStore.for_run("r", tmp_path / "runs", overlap=2)
    for i in range(3):
        store.add_item(f"prompt {i}", ["a", "b", "c"], [True] * 3, "pol", 1)
    store.accounts.add("ann", PASSWORD)
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"item_id": 1, "ranks": [1, 2, 3]}\n\n{"item_id": 2, "worst": "C"}\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["gold", "--file", str(gold), *common])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {gold}:3: field 'worst': must be an answer position from 0 to 2"
    assert store.gold() == {}
    gold.write_text('{"item_id": 1, "ranks": [1, 2, 3]}\n{"item_id": 2, "worst": 2}\n')
    assert main(["gold", "--file", str(gold), *common]) == [1, 2]

    task = store.next_task("ann")
    store.submit("ann", task.assignment_id, [1, 2, 3], token="ann-tok-0001")
    main(["disable-reviewer", "ann", *common])
    assert store.accounts.get("ann") is None
    out = capsys.readouterr().out
    assert "disabled reviewer 'ann'" in out
    summary = main(["export", *common])
    assert summary["rankings"] == 1 and "held out: none" in capsys.readouterr().out
    actions = [(e["action"], e["actor"].startswith("cli")) for e in store.audit_log()]
    assert actions == [("export", True), ("disable-reviewer", True), ("add-gold", True)]

    for i in range(3, 9):
        store.add_item(f"prompt {i}", ["a", "b", "c"], [True] * 3, "pol", 1)
    stats = main(["simulate", "--simulated_reviewers", "2", "--bad_reviewers", "adversarial", "--overlap", "3", *common])
    assert set(stats["per_reviewer"]) == {"sim-1", "sim-2", "sim-bad-1"} and stats["per_reviewer"]["sim-bad-1"] > 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["simulate", "--bad_reviewers", "sloppy", *common])
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: field 'bad_reviewers': ") and "adversarial" in err and "\n" not in err
    store.close()
