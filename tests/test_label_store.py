"""The label store: items, assignment with overlap and claim expiry, submissions (validation,
idempotency, skip, undo), progress, accounts (hashing, rate limits, sessions), agreement."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import text

from labeling_ui import stats
from labeling_ui.accounts import LoginRefused, hash_password, verify_password
from labeling_ui.db import sqlite_url
from labeling_ui.store import LabelStore, SubmitError, check_ranks
from labeling_ui.testing import FakeClock
from ranktune.errors import InputError

PASSWORD = "correct horse"


@pytest.fixture
def clock():
    return FakeClock()


def make_store(tmp_path, clock, n_items=3, k=3, overlap=2, reviewers=("ann", "ben", "cat"), **kw) -> LabelStore:
    store = LabelStore(sqlite_url(tmp_path / "labels.db"), overlap=overlap, claim_timeout_s=600, clock=clock, **{"shuffle": False, **kw})
    for i in range(n_items):
        store.add_item(f"prompt {i}", [f"answer {i}.{j}" for j in range(k)], [True] * (k - 1) + [False], "pol", 1)
    for name in reviewers:
        store.accounts.add(name, PASSWORD)
    return store


def test_store_is_sqlite_in_wal_mode_with_all_tables(tmp_path, clock):
    store = make_store(tmp_path, clock)
    with sqlite3.connect(tmp_path / "labels.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"prompts", "items", "candidates", "reviewers", "assignments", "rankings", "flags", "comments",
            "demonstrations", "login_attempts", "sessions"} <= set(store.db.tables())


def test_add_item_keeps_answers_policy_round_and_eos_and_is_idempotent(tmp_path, clock):
    store = make_store(tmp_path, clock, n_items=0)
    item = store.add_item("Hi?", ["a", "b"], [True, False], "runs/x/sft", 2, [3, 9])
    assert store.add_item("Hi?", ["c", "d"], [True, True], "runs/x/sft", 2) is None  # resume: already there
    assert store.add_item("Hi?", ["e", "f"], [True, True], "runs/y/sft", 3) is not None  # next round: new item
    assert store.rounds() == [(2, "runs/x/sft", 1), (3, "runs/y/sft", 1)]
    task = store.next_task("ann")
    assert task.item_id == item and [(a.label, a.text, a.ended) for a in task.answers] == [("A", "a", True),
                                                                                              ("B", "b", False)]
    with pytest.raises(InputError):
        store.add_item("Q", ["only one"], [True], "pol", 1)


def test_each_item_goes_to_overlap_distinct_reviewers_never_twice(tmp_path, clock):
    store = make_store(tmp_path, clock, n_items=2, overlap=2)
    seen = {}
    for name in ("ann", "ben", "cat"):
        while (task := store.next_task(name)) is not None:
            assert task.item_id not in seen.get(name, set()), "an item came back to the same reviewer"
            seen.setdefault(name, set()).add(task.item_id)
            store.submit(name, task.assignment_id, [1, 2, 3], token=f"tok-{name}-{task.item_id}")
    per_item = {}
    for name, items in seen.items():
        for i in items:
            per_item[i] = per_item.get(i, 0) + 1
    assert per_item == {1: 2, 2: 2}  # exactly `overlap` reviewers each
    assert "cat" not in seen  # both slots of both items were taken by ann and ben


def test_next_task_returns_the_claim_on_screen_until_it_is_submitted(tmp_path, clock):
    store = make_store(tmp_path, clock)
    first = store.next_task("ann")
    assert store.next_task("ann").assignment_id == first.assignment_id  # reload: same item
    store.submit("ann", first.assignment_id, [1, 1, 2], token="tok-00001")
    assert store.next_task("ann").item_id != first.item_id


def test_an_expired_claim_is_offered_to_others_and_a_late_submit_still_counts(tmp_path, clock):
    store = make_store(tmp_path, clock, n_items=1, overlap=1)
    ann = store.next_task("ann")
    assert store.next_task("ben") is None  # the only slot is held by ann's claim
    clock.advance(minutes=11)  # past the 10-minute claim timeout: ann closed her browser
    ben = store.next_task("ben")
    assert ben is not None and ben.item_id == ann.item_id
    assert store.next_task("ann") is None  # ann's slot went to ben; she is not offered it again
    late = store.submit("ann", ann.assignment_id, [2, 1, 3], token="late-0001")  # her work is not thrown away
    assert not late.duplicate and len(store.rankings()) == 1


def test_an_expired_claim_comes_back_to_its_reviewer_when_nobody_took_it(tmp_path, clock):
    store = make_store(tmp_path, clock, n_items=1, overlap=1)
    first = store.next_task("ann")
    clock.advance(hours=2)
    again = store.next_task("ann")
    assert again.assignment_id == first.assignment_id and again.expires_at > clock.now


@pytest.mark.parametrize("ranks, ok", [
    ([1, 2, 3], True), ([1, 1, 1], True), ([2, 1, 2], True), ([1.0, 2.0, 2.0], True),
    ([1, 3, 3], False),  # gap: no 2
    ([0, 1, 2], False), ([1, 2, 4], False), ([1, 2], False), ([1, None, 2], False), ([1, 1.5, 2], False),
    (["1", "x", "2"], False),
])
def test_ranks_must_be_dense_1_to_k(ranks, ok):
    if ok:
        assert check_ranks(ranks, 3) == [int(r) for r in ranks]
    else:
        with pytest.raises(SubmitError):
            check_ranks(ranks, 3)


def test_submit_records_ranking_flags_comment_demonstration_in_one_go(tmp_path, clock):
    store = make_store(tmp_path, clock)
    task = store.next_task("ann")
    clock.advance(seconds=42)
    store.submit("ann", task.assignment_id, [2, 1, 2], token="tok-abc-1", flags=["unsafe", "off_topic"],
                 comment="  B is best ", demonstration="A better answer.")
    [row] = store.rankings()
    assert row["ranks"] == [2, 1, 2] and row["reviewer"] == "ann" and row["flagged"]
    assert row["flags"] == ["off-topic", "unsafe"] and row["seconds"] == 42
    [demo] = store.demonstration_rows()
    assert {k: demo[k] for k in ("prompt", "completion", "reviewer", "item_id", "decision")} == {
        "prompt": "prompt 0", "completion": "A better answer.", "reviewer": "ann", "item_id": task.item_id,
        "decision": None}  # waits for an admin's review


def test_bad_submissions_are_refused_and_change_nothing(tmp_path, clock):
    store = make_store(tmp_path, clock)
    task = store.next_task("ann")
    other = store.next_task("ben")
    for kwargs, match in [({"ranks": [1, 3, 3]}, "skip a number"), ({"ranks": [1, 2]}, "Give each"),
                          ({"ranks": [1, 2, 3], "flags": ["weird"]}, "Unknown flag"),
                          ({"ranks": [1, 2, 3], "token": "x"}, "token")]:
        kwargs.setdefault("token", "tok-bad-001")
        with pytest.raises(SubmitError, match=match):
            store.submit("ann", task.assignment_id, **kwargs)
    with pytest.raises(SubmitError, match="not assigned to you"):
        store.submit("ann", other.assignment_id + 999, [1, 2, 3], token="tok-bad-002")
    assert store.rankings() == [] and store.next_task("ann").assignment_id == task.assignment_id


def test_a_repeated_submit_token_is_idempotent(tmp_path, clock):
    store = make_store(tmp_path, clock)
    task = store.next_task("ann")
    first = store.submit("ann", task.assignment_id, [1, 2, 3], token="double-click")
    again = store.submit("ann", task.assignment_id, [1, 2, 3], token="double-click")
    assert again.duplicate and again.ranking_id == first.ranking_id and len(store.rankings()) == 1
    with pytest.raises(SubmitError, match="already submitted"):  # a new token on a closed item
        store.submit("ann", task.assignment_id, [3, 2, 1], token="another-token")
    ben = store.next_task("ben")
    with pytest.raises(SubmitError, match="another submission"):  # someone else's token
        store.submit("ben", ben.assignment_id, [1, 2, 3], token="double-click")


def test_skip_frees_the_slot_for_someone_else_but_not_for_the_skipper(tmp_path, clock):
    store = make_store(tmp_path, clock, n_items=1, overlap=1)
    task = store.next_task("ann")
    store.skip("ann", task.assignment_id, token="skip-0001")
    assert store.next_task("ann") is None
    assert store.next_task("ben").item_id == task.item_id
    assert store.progress("ann").skipped == 1 and store.rankings() == []


def test_a_flagged_item_is_served_to_nobody_until_an_admin_clears_it(tmp_path, clock):
    store = make_store(tmp_path, clock, n_items=1, overlap=2)
    task = store.next_task("ann")
    store.skip("ann", task.assignment_id, token="skip-0001", flags=["broken"])
    assert store.next_task("ben") is None and store.progress("ben").remaining == 0  # held for review
    assert [q["item_id"] for q in store.flag_queue()] == [task.item_id]
    store.review_flags("boss", task.item_id, "cleared")
    assert store.flag_queue() == [] and store.next_task("ben").item_id == task.item_id


def test_undo_reopens_only_the_last_submission_with_its_answers(tmp_path, clock):
    store = make_store(tmp_path, clock)
    t1 = store.next_task("ann")
    store.submit("ann", t1.assignment_id, [1, 2, 3], token="tok-one-01")
    t2 = store.next_task("ann")
    clock.advance(seconds=1)
    store.submit("ann", t2.assignment_id, [3, 2, 1], token="tok-two-01", flags=["broken"], comment="meh",
                 demonstration="Mine.")
    reopened = store.undo_last("ann")
    assert reopened.item_id == t2.item_id
    assert reopened.previous.ranks == [3, 2, 1] and reopened.previous.flags == ["broken"]
    assert reopened.previous.comment == "meh" and reopened.previous.demonstration == "Mine."
    assert store.undo_last("ann") is None  # one level only
    assert [r["item_id"] for r in store.rankings()] == [t1.item_id] and store.demonstration_rows() == []
    assert store.next_task("ann").item_id == t2.item_id  # the reopened item is the one on screen
    store.submit("ann", reopened.assignment_id, [1, 1, 2], token="tok-two-02")
    assert {r["item_id"]: r["ranks"] for r in store.rankings()} == {t1.item_id: [1, 2, 3], t2.item_id: [1, 1, 2]}
    assert store.undo_last("ben") is None  # nothing of ben's to undo


def test_progress_counts_done_and_what_is_left_for_the_reviewer(tmp_path, clock):
    store = make_store(tmp_path, clock, n_items=3, overlap=1)
    assert store.progress("ann").total == 3
    task = store.next_task("ann")
    assert store.progress("ben").remaining == 2  # ann holds one item's only slot
    store.submit("ann", task.assignment_id, [1, 2, 3], token="tok-prog-1")
    p = store.progress("ann")
    assert (p.done, p.remaining, p.total) == (1, 2, 3)


def test_a_clicks_progress_counts_up_to_its_cap_and_says_there_are_more(tmp_path, clock, monkeypatch):
    monkeypatch.setattr(LabelStore, "COUNT_UP_TO", 3)
    store = make_store(tmp_path, clock, n_items=6, overlap=1)
    turn = store.turn("ann")  # one item on screen, 5 free: more than 3
    assert (turn.progress.remaining, turn.progress.more) == (3, True)
    assert (store.progress("ann").remaining, store.progress("ann").more) == (6, False)  # exact
    for n in range(3):
        turn = store.submit_and_next("ann", turn.task.assignment_id, [1, 2, 3], token=f"tok-cap-{n}")
    # 3 free left beside the one on screen: no more than the cap, so the count is exact again
    assert (turn.progress.done, turn.progress.remaining, turn.progress.more) == (3, 3, False)
    assert turn.progress == store.progress("ann")


def _click_sequence(store, name, assignment_id, ranks, token, **kw):
    """What the page did before submit_and_next: three transactions in a row."""
    done = store.submit(name, assignment_id, ranks, token=token, **kw)
    return done, store.next_task(name), store.progress(name)


def _same_task(a, b):
    return (a is None and b is None) or (a.assignment_id, a.item_id, a.round, a.prompt, a.answers, a.expires_at,
                                         a.previous) == (b.assignment_id, b.item_id, b.round, b.prompt, b.answers,
                                                         b.expires_at, b.previous)


def test_submit_and_next_equals_submit_then_next_task_then_progress(tmp_path, clock):
    """One transaction per click answers what the three calls did, click after click, to the end."""
    one = make_store(tmp_path / "one", clock, n_items=4, overlap=2)
    three = make_store(tmp_path / "three", clock, n_items=4, overlap=2)
    turn, shown = one.turn("ann"), three.next_task("ann")
    assert _same_task(turn.task, shown) and turn.progress == three.progress("ann") and turn.submitted is None
    n = 0
    while turn.task is not None:
        n += 1
        clock.advance(seconds=7)
        aid, token = turn.task.assignment_id, f"tok-click-{n}"
        ranks = None if n == 3 else [1 + (n + j) % 3 for j in range(3)]
        kw = {"skip": True, "comment": "hm"} if n == 3 else {"flags": ["broken"]} if n == 2 else {}
        turn = one.submit_and_next("ann", aid, ranks, token=token, **kw)
        done, shown, progress = _click_sequence(three, "ann", aid, ranks, token, **kw)
        assert (turn.submitted.duplicate, turn.submitted.skipped) == (done.duplicate, done.skipped) == (False, n == 3)
        assert _same_task(turn.task, shown) and turn.progress == progress
        if n == 3:  # the same click again (a double click): answered from the first, the next item unchanged
            again = one.submit_and_next("ann", aid, ranks, token=token, **kw)
            assert again.submitted.duplicate and again.submitted.ranking_id == turn.submitted.ranking_id
            assert _same_task(again.task, turn.task) and again.progress == turn.progress
    assert n == 4 and turn.progress.remaining == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k != "ranking_id"} for r in rows]  # noqa: E731
    assert strip(one.rankings()) == strip(three.rankings()) and one.counts() == three.counts()
    assert one.submissions() == three.submissions() and one.flagged_items() == three.flagged_items()


def test_submit_and_next_rolls_everything_back_when_any_part_fails(tmp_path, clock, monkeypatch):
    store = make_store(tmp_path, clock, n_items=3, overlap=1)
    task = store.next_task("ann")
    with pytest.raises(SubmitError, match="skip a number"):  # refused: nothing claimed either
        store.submit_and_next("ann", task.assignment_id, [1, 3, 3], token="tok-roll-1")
    assert store.counts()["open_claims"] == 1 and store.progress("ann").done == 0

    written = []

    def broken(s, *_args):  # the last step fails after the ranking row and the next claim were written
        written.append([s.execute(text(q)).scalar() for q in (
            "SELECT count(*) FROM rankings", "SELECT count(*) FROM assignments WHERE status = 'open'")])
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_progress", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        store.submit_and_next("ann", task.assignment_id, [1, 2, 3], token="tok-roll-2")
    monkeypatch.undo()
    assert written == [[1, 1]]  # inside the transaction: the row, and a claim on the next item (the first closed)
    assert store.rankings() == [] and store.counts()["open_claims"] == 1  # no row, no second claim
    assert store.next_task("ann").assignment_id == task.assignment_id  # the item is still the one on screen
    turn = store.submit_and_next("ann", task.assignment_id, [1, 2, 3], token="tok-roll-2")  # the retry lands once
    assert not turn.submitted.duplicate and turn.task.item_id != task.item_id and len(store.rankings()) == 1
    with pytest.raises(SubmitError, match="Unknown reviewer"):
        store.submit_and_next("nobody", turn.task.assignment_id, [1, 2, 3], token="tok-roll-3")


def test_round_filter_offers_only_that_round(tmp_path, clock):
    store = make_store(tmp_path, clock, n_items=1)
    store.add_item("prompt 0", ["x", "y"], [True, True], "new-policy", 2)
    only_2 = LabelStore(sqlite_url(tmp_path / "labels.db"), round=2, clock=clock)
    assert only_2.next_task("ann").round == 2


def test_passwords_are_salted_scrypt_and_never_stored_in_clear(tmp_path, clock):
    h1, h2 = hash_password(PASSWORD), hash_password(PASSWORD)
    assert h1 != h2 and h1.startswith("scrypt$") and PASSWORD not in h1
    assert verify_password(PASSWORD, h1) and not verify_password("wrong", h1) and not verify_password("x", "junk")
    store = make_store(tmp_path, clock)
    assert PASSWORD.encode() not in (tmp_path / "labels.db").read_bytes()
    with pytest.raises(InputError, match="already exists"):
        store.accounts.add("ann", "another password")
    with pytest.raises(InputError, match="too short"):
        store.accounts.add("dan", "short")
    with pytest.raises(InputError, match="names"):
        store.accounts.add("<b>x</b>", PASSWORD)


def test_login_is_rate_limited_per_name_and_client_and_per_client(tmp_path, clock):
    store = make_store(tmp_path, clock, max_failures=3, max_failures_per_client=5, window_s=600)
    assert store.accounts.login("ann", PASSWORD, "10.0.0.1").name == "ann"
    for _ in range(3):
        with pytest.raises(LoginRefused) as err:
            store.accounts.login("ann", "guess", "10.0.0.1")
        assert not err.value.rate_limited
    with pytest.raises(LoginRefused) as err:  # this client is locked out of ann, even with the right password
        store.accounts.login("ann", PASSWORD, "10.0.0.1")
    assert err.value.rate_limited
    assert store.accounts.login("ben", PASSWORD, "10.0.0.1").name == "ben"  # other names still work
    for name in ("cat", "nobody"):  # two more failures from this client: 5 in all
        with pytest.raises(LoginRefused):
            store.accounts.login(name, "guess", "10.0.0.1")
    with pytest.raises(LoginRefused) as err:
        store.accounts.login("ben", PASSWORD, "10.0.0.1")
    assert err.value.rate_limited
    clock.advance(minutes=11)  # the window passed
    assert store.accounts.login("ann", PASSWORD, "10.0.0.1").name == "ann"


def test_a_strangers_failed_logins_under_a_reviewers_name_do_not_lock_the_reviewer_out(tmp_path, clock):
    """Counted per name alone, five wrong passwords from anywhere locked the name for 15 minutes,
    again and again: anyone who knew a reviewer's name could keep them from working."""
    store = make_store(tmp_path, clock, max_failures=5, max_failures_per_client=20, window_s=900)
    for _ in range(12):  # a stranger, well past the per-name limit
        with pytest.raises(LoginRefused):
            store.accounts.login("ann", "guess", "203.0.113.9")
    with pytest.raises(LoginRefused) as err:
        store.accounts.login("ann", PASSWORD, "203.0.113.9")
    assert err.value.rate_limited  # the stranger's own address stays slowed down
    assert store.accounts.login("ann", PASSWORD, "10.0.0.7").name == "ann"  # ann, from her machine, gets in


def test_sessions_expire_and_end(tmp_path, clock):
    store = make_store(tmp_path, clock)
    token = store.accounts.new_session(store.accounts.get("ann"))
    assert store.accounts.session_user(token).name == "ann"
    assert store.accounts.session_user(token + "x") is None and store.accounts.session_user(None) is None
    store.accounts.end_session(token)
    assert store.accounts.session_user(token) is None
    token = store.accounts.new_session(store.accounts.get("ann"))
    clock.advance(hours=13)
    assert store.accounts.session_user(token) is None


def test_agreement_metrics():
    assert stats.pairwise_agreement([1, 2, 3], [1, 2, 3]) == 1.0
    assert stats.pairwise_agreement([1, 2, 3], [3, 2, 1]) == 0.0
    assert stats.pairwise_agreement([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / 3)  # the tie pair disagrees
    assert stats.kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert stats.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert stats.kendall_tau([1, 1, 1], [1, 2, 3]) is None
    same = [{"item_id": i, "reviewer": r, "ranks": [1, 2, 3, 4][::(1 if i % 2 else -1)]}
            for i in range(4) for r in ("a", "b")]
    report = stats.agreement(same)
    assert report["items_compared"] == 4 and report["pairwise_agreement"] == 1.0
    assert report["krippendorff_alpha"] == pytest.approx(1.0)
    opposite = [{"item_id": i, "reviewer": r, "ranks": [1, 2, 3, 4] if r == "a" else [4, 3, 2, 1]}
                for i in range(4) for r in ("a", "b")]
    report = stats.agreement(opposite)
    assert report["kendall_tau"] == pytest.approx(-1.0) and report["krippendorff_alpha"] < 0
    assert stats.agreement([{"item_id": 1, "reviewer": "a", "ranks": [1, 2]}])["krippendorff_alpha"] is None
