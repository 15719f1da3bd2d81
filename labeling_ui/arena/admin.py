"""The admin tab's Arena sub-tab: the leaderboard, the win-rate matrix, votes per pair, and the
model registry with the store's counts.

`arena_admin_view(store, arena, request)` is the handler: it starts with `who.admin`, like every
admin handler (the sub-tab being hidden from reviewers is cosmetic). The tables are plain rows
(Gradio renders cells as text); the win-rate matrix, whose columns are the models, is HTML with
every name escaped. The rows come from labeling_ui/arena/tables.py, which the run report
(report/arena.py) shares.
"""

from __future__ import annotations

import html

import gradio as gr

from labeling_ui import who
from labeling_ui.arena.leaderboard import Leaderboard, leaderboard
from labeling_ui.arena.store import ArenaStore
from labeling_ui.arena.tables import PAIR_COLUMNS, leaderboard_rows, pair_rows, win_rate_rows
from labeling_ui.page import inert

LEADERBOARD_COLUMNS = ["#", "model", "rating", "95% interval", "votes", "won", "lost", "tied"]
REGISTRY_COLUMNS = ["model", "path", "source", "enabled", "added (UTC)", "votes"]
PRIVATE = {"api_visibility": "private"}


def win_rate_html(board: Leaderboard) -> str:
    models, rows = win_rate_rows(board)
    if not models:
        return '<p class="muted">No votes yet.</p>'
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    body = "".join(f"<tr><th>{html.escape(m)}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
                   for m, cells in zip(models, rows))
    return inert(f'<table class="arena-winrate"><thead><tr><th>row vs column</th>{head}</tr></thead>'
                 f"<tbody>{body}</tbody></table>")


def counts_markdown(counts: dict, models: int, enabled: int, anchor: str | None) -> str:
    return (f"**{counts['votes']} votes** on {counts['turns']} turns in {counts['conversations']} conversations: "
            f"A better {counts['a']}, B better {counts['b']}, tie {counts['tie']}, both bad {counts['both_bad']}. "
            f"{models} models registered, {enabled} enabled (only enabled ones are drawn).  \n"
            f"Ratings: Bradley-Terry strengths on an Elo-like scale ({html.escape(anchor or '-')} = 1000), bootstrap "
            "95% intervals; ties count half a win each way, both-bad votes count as votes but not in the fit. Win "
            "rate: the row model's share of its decisive votes against the column model (ties half); blank: no "
            "such votes.")


def arena_tables(arena: ArenaStore) -> tuple:
    """(summary, leaderboard rows, win-rate matrix HTML, pair rows, registry rows): the sub-tab's outputs."""
    board = leaderboard(arena.votes())
    registry = arena.models(enabled_only=False)
    votes = {s.model: s.votes for s in board.standings}
    rows = [[m.name, m.path, m.source, "yes" if m.enabled else "no", m.added_at.strftime("%Y-%m-%d %H:%M"),
             votes.get(m.name, 0)] for m in registry]
    summary = counts_markdown(arena.counts(), len(registry), sum(m.enabled for m in registry), board.anchor)
    return summary, leaderboard_rows(board), win_rate_html(board), pair_rows(board), rows


def arena_admin_view(store, arena: ArenaStore, request: gr.Request) -> tuple:
    who.admin(store, request)
    return arena_tables(arena)


def build_arena_admin(store, arena: ArenaStore):
    """The sub-tab's components, inside an open gr.Tab; returns (handler, outputs) for the caller's
    refresh button and the sub-tab's select event."""
    summary = gr.Markdown("", elem_id="arena-admin-summary")
    gr.Markdown("#### Leaderboard")
    board = gr.Dataframe(headers=LEADERBOARD_COLUMNS, interactive=False, elem_id="arena-admin-board",
                         datatype=["number", "str", "number", "str", "number", "number", "number", "number"])
    gr.Markdown("#### Win rates")
    matrix = gr.HTML("", elem_id="arena-admin-winrate")
    gr.Markdown("#### Votes per pair")
    pairs = gr.Dataframe(headers=PAIR_COLUMNS, interactive=False, elem_id="arena-admin-pairs",
                         datatype=["str", "str", "number"])
    gr.Markdown("#### Models")
    registry = gr.Dataframe(headers=REGISTRY_COLUMNS, interactive=False, elem_id="arena-admin-models", wrap=True,
                            datatype=["str", "str", "str", "str", "str", "number"])

    def admin_arena_view(request: gr.Request):
        return arena_admin_view(store, arena, request)

    return admin_arena_view, [summary, board, matrix, pairs, registry]
