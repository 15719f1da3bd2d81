"""The label store through a PostgreSQL outage (issue #22): while the server is down every read and
write raises StoreUnavailable (never the driver's error) and stores nothing half-way; the same
LabelStore works again by itself once the server is back; a connection lost during COMMIT is
never reported as saved, and sending the same token again answers "Already saved" if it landed;
a restart in the middle of concurrent submits loses no ranking that was answered, and stores none
twice. The page's and the Arena tab's handlers say "try again" instead of failing.

On a throwaway server of this module's own (conftest.py's pg_instance: it is stopped and started
here); skipped, with the reason, when initdb/pg_ctl or psycopg2 are not installed.
"""

from __future__ import annotations

import html
import re
import secrets
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import event, func, select, text

from labeling_ui.schema import Meta, Ranking
from labeling_ui.store import LabelStore
from labeling_ui.tasks import StoreUnavailable
from labeling_ui.testing import submit_inputs

PASSWORD = "correct horse battery"
K = 4
UNREACHABLE = r"cannot be reached right now .*Try again in a moment"


def seeded(url: str, items: int = 6, reviewers=("ann", "ben")) -> LabelStore:
    store = LabelStore(url, overlap=1, shuffle=False)
    for i in range(items):
        store.add_item(f"prompt {i}", [f"answer {i}.{j}" for j in range(K)], [True] * K, "pol", 1)
    for name in reviewers:
        store.accounts.add(name, PASSWORD)
    return store


def stored_tokens(store: LabelStore) -> Counter:
    """submit token -> how many ranking rows carry it."""
    with store.db.read() as s:
        return Counter(dict(s.execute(select(Ranking.submit_token, func.count()).group_by(Ranking.submit_token)).all()))


def test_an_outage_raises_store_unavailable_and_the_same_store_works_again_after_it(pg):
    store = seeded(pg.url)
    saved = []
    for n in range(2):
        task = store.next_task("ann")
        token = f"before-{n}-{secrets.token_hex(4)}"
        assert not store.submit("ann", task.assignment_id, [1, 2, 3, 4], token=token).duplicate
        saved.append((task.assignment_id, token))
    on_screen = store.next_task("ann")
    pg.stop()
    down = {
        "next_task": lambda: store.next_task("ben"),
        "turn": lambda: store.turn("ann"),
        "progress": lambda: store.progress("ann"),
        "the login's account lookup": lambda: store.accounts.get("ann"),
        "submit": lambda: store.submit("ann", on_screen.assignment_id, [1, 2, 3, 4], token="during-outage"),
        "submit_and_next": lambda: store.submit_and_next("ann", on_screen.assignment_id, [1, 2, 3, 4],
                                                         token="during-outage"),
        "undo": lambda: store.undo_last("ann"),
    }
    for what, call in down.items():
        with pytest.raises(StoreUnavailable, match=UNREACHABLE) as caught:
            call()
        assert not caught.value.maybe_saved, what  # it could not even connect: nothing was sent
    pg.start()
    # The same object, no reconnect step: its pooled connections (from before the stop) are replaced.
    assert store.progress("ann").done == 2
    assert store.next_task("ann").assignment_id == on_screen.assignment_id  # the claim is intact
    assert stored_tokens(store) == Counter({t: 1 for _, t in saved})  # nothing of the outage's clicks
    # Sent again afterwards: the submit the outage refused lands, once; one answered before it
    # (its reply lost, say) answers "Already saved".
    assert not store.submit("ann", on_screen.assignment_id, [2, 1, 3, 4], token="during-outage").duplicate
    assert store.submit("ann", saved[0][0], [1, 2, 3, 4], token=saved[0][1]).duplicate
    assert stored_tokens(store) == Counter({**{t: 1 for _, t in saved}, "during-outage": 1})
    # A restart while the store is idle: the first call after it works.
    pg.restart()
    assert store.turn("ann").progress.done == 3
    store.close()


def test_a_connection_lost_during_commit_is_maybe_saved_and_a_resend_lands_once(pg):
    store = seeded(pg.url)
    task = store.next_task("ann")
    armed = [True]

    def server_dies_before_commit(_conn):
        if armed[0]:
            armed[0] = False
            pg.stop(mode="immediate")

    event.listen(store.db.write_engine, "commit", server_dies_before_commit)
    try:
        with pytest.raises(StoreUnavailable, match=UNREACHABLE) as caught:
            store.submit("ann", task.assignment_id, [1, 2, 3, 4], token="lost-at-commit")
    finally:
        event.remove(store.db.write_engine, "commit", server_dies_before_commit)
    assert caught.value.maybe_saved  # the store cannot know whether COMMIT got there
    pg.start()
    assert "lost-at-commit" not in stored_tokens(store)  # here it did not
    assert not store.submit("ann", task.assignment_id, [1, 2, 3, 4], token="lost-at-commit").duplicate
    assert stored_tokens(store)["lost-at-commit"] == 1
    store.close()


def test_a_commit_whose_reply_was_lost_is_not_run_again_and_a_resend_answers_already_saved(pg, monkeypatch):
    import psycopg2

    store = seeded(pg.url)
    task = store.next_task("ann")
    dialect, commits = store.db.write_engine.dialect, []
    committed = dialect.do_commit

    def commit_then_lose_the_reply(dbapi_conn):
        committed(dbapi_conn)
        commits.append(1)
        if len(commits) == 1:
            raise psycopg2.OperationalError("server closed the connection unexpectedly\n\tThis probably means "
                                            "the server terminated abnormally")

    monkeypatch.setattr(dialect, "do_commit", commit_then_lose_the_reply)
    with pytest.raises(StoreUnavailable) as caught:
        store.submit("ann", task.assignment_id, [1, 2, 3, 4], token="reply-lost")
    assert caught.value.maybe_saved and len(commits) == 1  # not run a second time, not reported saved
    assert store.submit("ann", task.assignment_id, [1, 2, 3, 4], token="reply-lost").duplicate
    assert stored_tokens(store)["reply-lost"] == 1
    store.close()


def test_a_connection_lost_before_commit_is_run_again_once_on_a_new_connection(pg):
    store = seeded(pg.url, items=0, reviewers=())
    backends = []

    def write(s):
        backends.append(s.execute(text("SELECT pg_backend_pid()")).scalar())
        s.merge(Meta(key="outage-test", value=str(len(backends))))
        s.flush()
        if len(backends) == 1:  # as if the server restarted after the pool checked this connection
            s.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return len(backends)

    assert store.db.retry(write) == 2 and backends[0] != backends[1]
    assert store.db.scalar(select(Meta.value).where(Meta.key == "outage-test")) == "2"
    store.close()


def test_a_restart_during_concurrent_submits_loses_no_answered_ranking_and_stores_none_twice(pg):
    names = [f"r{i}" for i in range(4)]
    store = seeded(pg.url, items=300, reviewers=names)
    answered: dict[str, bool] = {}  # token -> duplicate, for every submit that returned
    outages, unexpected = Counter(), []
    lock, stop = threading.Lock(), threading.Event()
    deadline = time.monotonic() + 120

    def reviewer(name: str) -> None:
        task, token = None, None
        # On after `stop` while a submit is unanswered: a reviewer clicks until the page says Saved.
        while (not stop.is_set() or token is not None) and time.monotonic() < deadline:
            try:
                if task is None:
                    task = store.next_task(name)
                    if task is None:
                        return
                token = token or secrets.token_hex(8)
                turn = store.submit_and_next(name, task.assignment_id, [1, 2, 3, 4], token=token)
                with lock:
                    answered[token] = turn.submitted.duplicate
                task, token = turn.task, None
                if task is None:
                    return
            except StoreUnavailable:
                with lock:
                    outages[name] += 1
                time.sleep(0.02)  # the same ticket (same token) is clicked again
            except Exception as err:  # noqa: BLE001 - anything but StoreUnavailable fails the test
                unexpected.append(f"{name}: {err!r}")
                return

    def wait_for(n: int, timeout_s: float = 60) -> None:
        until = time.monotonic() + timeout_s
        while len(answered) < n and time.monotonic() < until and not unexpected:
            time.sleep(0.01)
        assert len(answered) >= n and not unexpected, (len(answered), unexpected)

    threads = [threading.Thread(target=reviewer, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    try:
        wait_for(20)
        pg.restart(down_s=1.0)
        wait_for(len(answered) + 20)  # it recovers by itself
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not unexpected and not any(t.is_alive() for t in threads)
    assert sum(outages.values()) >= len(names), outages  # the outage was seen, by every reviewer
    stored = stored_tokens(store)
    assert set(stored) == set(answered) and set(stored.values()) == {1}  # every answered one, once, no others
    done = sum(store.progress(n).done for n in names)
    assert done == len(stored)
    store.close()


class Request:
    """What the handlers read from a gr.Request: the login session's name."""

    def __init__(self, username: str):
        self.username = username


def status_text(outputs: list) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", outputs[-1] or ""))


def test_the_page_and_the_arena_tab_say_try_again_while_the_store_is_down(pg, tmp_path):
    from labeling_ui.app import build_blocks
    from labeling_ui.arena.store import ArenaStore

    store = seeded(pg.url)
    arena = ArenaStore(store, rate_limit_per_minute=0)
    for model in ("sft", "rlhf"):
        arena.add_model(model, "smollm2-135m", "test")  # never loaded: no message is generated here
    conv = arena.start("ann")
    turn = arena.add_turn(conv.id, "ann", "Say hello.", "hello", "hi")
    demo = build_blocks(store, tmp_path / "export", arena=(arena, None, []))
    fns = {f.fn.__name__: f.fn for f in demo.fns.values() if f.fn is not None}
    ann = Request("ann")
    loaded = fns["on_load"](ann)
    ticket = loaded[2]
    assert "prompt 0" in loaded[4]

    pg.stop()
    outputs = fns["on_load"](ann)
    assert re.search(UNREACHABLE, status_text(outputs)) and "reload the page" in status_text(outputs)
    for name, values in (("on_submit", submit_inputs(ticket, [1, 2, 3, 4])), ("on_skip", [ticket, [], "", ""])):
        outputs = fns[name](ann, *values)
        assert status_text(outputs).startswith("Nothing was saved: The label store cannot be reached"), name
        assert outputs[0] == {"__type__": "update"}  # the page keeps its ticket, to send again
    assert re.search(UNREACHABLE, status_text(fns["on_undo"](ann)))
    vote = fns["on_arena_vote_a"](ann, conv.id, turn.id, "")
    assert status_text(vote).startswith("Nothing was saved: The label store cannot be reached")
    sent = next(fns["on_send"](ann, conv.id, None, "Hello again"))
    assert re.search(UNREACHABLE, status_text(sent))
    board, _mine = fns["on_select"](ann)
    assert re.search(UNREACHABLE, html.unescape(board))

    pg.start()
    outputs = fns["on_submit"](ann, *submit_inputs(ticket, [1, 2, 3, 4]))  # the same click, once the store is back
    assert status_text(outputs).startswith("Saved.")
    assert stored_tokens(store) == Counter({next(iter(stored_tokens(store))): 1})
    assert "Vote saved" in status_text(fns["on_arena_vote_a"](ann, conv.id, turn.id, ""))
    store.close()
