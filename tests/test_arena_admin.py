"""The Arena in the admin tab and in the run report (issue 21): the admin's Arena view refuses
anyone but an admin (called directly and over HTTP), shows the store's counts, the leaderboard,
the win rates and the registry; the app without an arena has no such sub-tab; report.html gets an
Arena section (table, plot, win-rate matrix) from a run whose labels.db has votes, and none
without. Votes are cast by hand; the models are registered as the bundled model and never loaded."""

from __future__ import annotations

import json
import random
import re

import gradio as gr
import pytest

from labeling_ui.app import build_blocks
from labeling_ui.arena.admin import arena_admin_view, win_rate_html
from labeling_ui.arena.leaderboard import Vote, leaderboard
from labeling_ui.arena.models import ArenaEngine
from labeling_ui.arena.store import ArenaStore
from labeling_ui.arena.tables import win_rate_rows
from labeling_ui.db import sqlite_url
from labeling_ui.server import build_app
from labeling_ui.store import LabelStore
from labeling_ui.testing import GradioSession, http_login, running_server
from report.build import main as report_main

PASSWORD = "correct horse battery"
# (winner, reviewer): None = a tie; "both_bad" = both bad. rlhf: 3 wins, 1 loss, 1 tie of 5 decisive-or-tied.
VOTES = [("rlhf", "ann"), ("rlhf", "ann"), ("sft", "ann"), (None, "ben"), ("rlhf", "ben"), ("both_bad", "ben")]


class Request:
    """What who.admin reads from a gr.Request: the login session's name."""

    def __init__(self, username):
        self.username = username


def make_arena(path) -> tuple[LabelStore, ArenaStore]:
    store = LabelStore(sqlite_url(path))
    for name, admin in (("ann", False), ("ben", False), ("boss", True)):
        store.accounts.add(name, PASSWORD, admin=admin)
    arena = ArenaStore(store, rate_limit_per_minute=0, rng=random.Random(0))
    for name in ("sft", "rlhf"):
        arena.add_model(name, "smollm2-135m", "test")  # never loaded
    return store, arena


def cast(arena: ArenaStore, votes=VOTES) -> None:
    """One conversation of one turn per vote, voted so that `winner` wins whichever side it was drawn on."""
    for winner, reviewer in votes:
        conv = arena.start(reviewer)
        turn = arena.add_turn(conv.id, reviewer, "Say something <b>bold</b>.", "answer A", "answer B")
        if winner is None:
            outcome = "tie"
        elif winner == "both_bad":
            outcome = "both_bad"
        else:
            outcome = "a" if conv.model_a == winner else "b"
        arena.vote(turn.id, reviewer, outcome)
        arena.reveal(conv.id, reviewer)


@pytest.fixture
def voted(tmp_path):
    store, arena = make_arena(tmp_path / "runs" / "r" / "labels.db")
    cast(arena)
    yield store, arena
    store.close()


def test_the_win_rates_count_ties_half_and_leave_out_both_bad(voted):
    _, arena = voted
    models, rows = win_rate_rows(leaderboard(arena.votes()))
    assert models == ["rlhf", "sft"]  # best first
    assert rows == [["", "0.70"], ["0.30", ""]]  # (3 + 0.5) / 5 and (1 + 0.5) / 5; diagonal blank


def test_the_admin_arena_view_refuses_anyone_but_an_admin(voted):
    store, arena = voted
    for who_ in ("ann", None, "nobody"):
        with pytest.raises(gr.Error) as err:
            arena_admin_view(store, arena, Request(who_))
        assert str(err.value.message) in ("Admins only.", "Not logged in.")
    store.set_disabled("cli", "boss", True)
    with pytest.raises(gr.Error):
        arena_admin_view(store, arena, Request("boss"))  # a disabled admin is nobody


def test_the_admin_arena_view_shows_counts_leaderboard_win_rates_and_registry(voted):
    store, arena = voted
    summary, board, matrix, pairs, registry = arena_admin_view(store, arena, Request("boss"))
    counts = arena.counts()
    assert counts["votes"] == 6 and counts["tie"] == 1 and counts["both_bad"] == 1 and counts["a"] + counts["b"] == 4
    assert f"**6 votes** on 6 turns in 6 conversations: A better {counts['a']}, B better {counts['b']}, tie 1, " \
           "both bad 1" in summary
    assert "2 models registered, 2 enabled" in summary and "(sft = 1000)" in summary
    assert [row[1] for row in board] == ["rlhf", "sft"]
    rlhf, sft = board
    assert rlhf[0] == 1 and rlhf[2] > 1000 and sft[2] == 1000  # sft is the anchor
    assert rlhf[4:] == [6, 3, 1, 1] and sft[4:] == [6, 1, 3, 1]  # votes (both_bad too), won, lost, tied
    assert re.fullmatch(r"\d+ – \d+", rlhf[3]) and sft[3] == "1000 – 1000"
    assert "<th>rlhf</th><th>sft</th>" in matrix and "<td>0.70</td>" in matrix and "<td>0.30</td>" in matrix
    assert pairs == [["rlhf", "sft", 6]]
    assert [r[:4] for r in registry] == [["sft", "smollm2-135m", "admin", "yes"], ["rlhf", "smollm2-135m", "admin",
                                                                                   "yes"]]
    assert [r[5] for r in registry] == [6, 6]
    arena.set_model_enabled("sft", False, "boss")
    summary, *_, registry = arena_admin_view(store, arena, Request("boss"))
    assert "2 models registered, 1 enabled" in summary and registry[0][3] == "no"


def test_the_win_rate_matrix_escapes_model_names():
    # The registry refuses such names (MODEL_NAME_RE): the escape is the second line of defence.
    html = win_rate_html(leaderboard([Vote("<img src=x onerror=alert(1)>", "b", "a")]))
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_the_app_has_the_admin_arena_tab_only_with_an_arena(voted, tmp_path):
    store, arena = voted
    with_arena = build_blocks(store, tmp_path / "export", arena=(arena, None, []))
    without = build_blocks(store, tmp_path / "export")

    def admin_names(blocks):
        return {fn.api_name for fn in blocks.fns.values() if (fn.api_name or "").startswith("admin")}

    assert "admin_arena_view" in admin_names(with_arena)
    assert "admin_arena_view" not in admin_names(without) and "admin_view" in admin_names(without)
    ids = lambda blocks: {getattr(b, "elem_id", None) for b in blocks.blocks.values()}  # noqa: E731
    assert "arena-admin-board" in ids(with_arena) and "arena-admin-board" not in ids(without)


def test_over_http_a_reviewer_is_refused_the_arena_admin_view_and_an_admin_sees_it(voted, tmp_path):
    store, arena = voted
    engine = ArenaEngine(arena.model_path)  # no job is sent: nothing loads
    try:
        with running_server(build_app(store, tmp_path / "export", arena=(arena, engine, ["Say hello"]))) as base:
            import httpx

            with httpx.Client(base_url=base, timeout=30) as ann, httpx.Client(base_url=base, timeout=30) as boss:
                for client, name in ((ann, "ann"), (boss, "boss")):
                    assert http_login(client, name, PASSWORD).status_code == 303
                refused = GradioSession(ann).call("admin_arena_view")
                assert refused["success"] is False and refused["output"]["error"] == "Admins only."
                assert "0.70" not in json.dumps(refused) and "rlhf" not in json.dumps(refused)
                seen = GradioSession(boss).call("admin_arena_view")
                assert seen["success"], seen
                summary, board, matrix, pairs, registry = seen["output"]["data"]
                assert "**6 votes**" in summary and "<td>0.70</td>" in matrix
                assert [row[1] for row in board["data"]] == ["rlhf", "sft"]
                assert [row[0] for row in registry["data"]] == ["sft", "rlhf"]
    finally:
        engine.close()


# ---- the report ---------------------------------------------------------------------------------

def test_the_report_has_an_arena_section_when_the_run_has_votes(voted, tmp_path):
    page = report_main(["--run", "r", "--runs_dir", str(tmp_path / "runs")]).read_text()
    section = page[page.index("<h2>7. Arena</h2>"):]
    assert "6 votes in the Arena (4 decisive, 1 ties, 1 both bad)" in section
    assert section.index("<td>rlhf</td>") < section.index("<td>sft</td>")  # the leaderboard, best first
    assert '<td class="num">3 / 1 / 1</td>' in section and '<td class="num">1 / 3 / 1</td>' in section
    assert 'alt="Arena ratings with 95% intervals" src="data:image/png;base64,' in section
    assert (tmp_path / "runs" / "r" / "report" / "arena.png").stat().st_size > 1000
    matrix = section[section.index("<h3>Win rates</h3>"):section.index("<h3>Votes per pair</h3>")]
    assert '<td class="num">0.70</td>' in matrix and '<td class="num">0.30</td>' in matrix
    assert "<th>rlhf</th><th>sft</th>" in matrix


def test_the_report_has_no_arena_section_without_votes(tmp_path):
    runs = tmp_path / "runs"
    store, arena = make_arena(runs / "novotes" / "labels.db")  # models, a conversation, a turn: no vote
    conv = arena.start("ann")
    arena.add_turn(conv.id, "ann", "hi", "a", "b")
    store.close()
    (runs / "nostore").mkdir(parents=True)
    for run in ("novotes", "nostore"):
        page = report_main(["--run", run, "--runs_dir", str(runs)]).read_text()
        assert "Arena" not in page, run
        assert not (runs / run / "report" / "arena.png").exists()
    assert not (runs / "nostore" / "labels.db").exists()  # the report created no store
