"""The report's "Arena" section: the leaderboard of the run's Arena votes (labeling_ui/arena/), a
plot of the ratings with their 95% intervals, and the win-rate matrix. Nothing when the run's
label store (runs/<run>/labels.db) holds no Arena votes.

The store is looked at read-only first (sqlite3, mode=ro): a run without Arena votes is left
exactly as it was. Model names are HTML-escaped like every other text on the page.
"""

from __future__ import annotations

import html
import math
import sqlite3
from pathlib import Path

from ranktune.errors import InputError
from ranktune.plots import _figure, save_figure
from report.html import _img, _table, _td

STORE = "labels.db"


def _has_votes(path: Path) -> bool:
    """Whether the SQLite store at `path` has an arena_votes table with a row, read-only."""
    if not path.is_file():
        return False
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            return "arena_votes" in tables and conn.execute("SELECT 1 FROM arena_votes LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return False


def read_votes(run: Path) -> list:
    """The run's Arena votes (leaderboard.Vote, oldest first); [] when there are none."""
    path = run / STORE
    if not _has_votes(path):
        return []
    from labeling_ui.arena.store import ArenaStore
    from labeling_ui.db import Database, sqlite_url

    db = Database(sqlite_url(path))
    try:
        return ArenaStore(db).votes()
    finally:
        db.dispose()


def ratings_figure(board, path: Path) -> Path | None:
    """Each model's Elo-like rating with its bootstrap 95% interval, best at the top."""
    from labeling_ui.arena.leaderboard import to_elo

    if not board.standings:
        return None
    plt = _figure()
    standings = list(reversed(board.standings))  # barh draws bottom-up
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(standings) + 1.4))
    for y, s in enumerate(standings):
        x = to_elo(s.strength)
        known = math.isfinite(s.low) and math.isfinite(s.high)
        xerr = [[max(0.0, x - to_elo(s.low))], [max(0.0, to_elo(s.high) - x)]] if known else None
        ax.errorbar([x], [y], xerr=xerr, fmt="o", ms=6, capsize=4, color="#1f77b4" if known else "#999")
        ax.annotate(f"{x:.0f}", (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax.set_yticks(range(len(standings)))
    ax.set_yticklabels([s.model for s in standings])
    ax.axvline(1000.0, color="#888", lw=0.8, ls=":")
    ax.set_xlabel(f"Elo-like rating ({board.anchor} = 1000), bootstrap 95% interval")
    ax.set_title("Arena leaderboard")
    ax.grid(alpha=0.3, axis="x")
    ax.margins(y=0.25)
    return save_figure(fig, path)


def arena_section(run: Path, figures: Path) -> str:
    """The section's HTML (under the caller's heading), or "" when the run has no Arena votes."""
    try:
        votes = read_votes(run)
    except InputError as err:  # a store this code cannot read (another schema version)
        return f"<p class='muted'>Arena votes not read: {html.escape(str(err))}</p>"
    if not votes:
        return ""
    from labeling_ui.arena.tables import leaderboard_rows, pair_rows, win_rate_rows
    from labeling_ui.arena.leaderboard import leaderboard

    board = leaderboard(votes)
    decisive = sum(v.outcome in ("a", "b") for v in votes)
    ties = sum(v.outcome == "tie" for v in votes)
    intro = (f"<p>{len(votes)} votes in the Arena ({decisive} decisive, {ties} ties, {len(votes) - decisive - ties} "
             "both bad): reviewers chatted with two anonymous models of the run and voted on each turn. "
             "Bradley-Terry strengths on an Elo-like scale "
             f"({html.escape(board.anchor or '-')} = 1000) with bootstrap 95% intervals; ties count half a win "
             "each way, both-bad votes count as votes but not in the fit.</p>")
    rows = [[_td(rank, "num"), _td(html.escape(model)), _td(rating, "num"), _td(ci, "num"), _td(n, "num"),
             _td(f"{w} / {lost} / {t}", "num")] for rank, model, rating, ci, n, w, lost, t in leaderboard_rows(board)]
    table = _table(["#", "model", "rating", "95% interval", "votes", "won / lost / tied"], rows)
    fig = _img(ratings_figure(board, figures / "arena.png"), "Arena ratings with 95% intervals")
    models, matrix = win_rate_rows(board)
    wins = _table(["row vs column", *models],
                  [[_td(f"<b>{html.escape(m)}</b>")] + [_td(c, "num") for c in cells]
                   for m, cells in zip(models, matrix)])
    pairs = _table(["model", "against", "votes"],
                   [[_td(html.escape(a)), _td(html.escape(b)), _td(n, "num")] for a, b, n in pair_rows(board)])
    return (intro + table + fig + "<h3>Win rates</h3><p class='muted'>The row model's share of its decisive votes "
            "against the column model (ties half); blank: no such votes.</p>" + wins
            + "<h3>Votes per pair</h3>" + pairs)
