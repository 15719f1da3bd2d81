"""The Arena's leaderboard as table rows, for the admin tab (labeling_ui/arena/admin.py) and the
run report (report/arena.py): plain values, no markup (each caller escapes for its page)."""

from __future__ import annotations

import math

from labeling_ui.arena.leaderboard import Leaderboard, to_elo

PAIR_COLUMNS = ["model", "against", "votes"]


def interval(low: float, high: float) -> str:
    """A 95% interval on the Elo-like scale; '–' where the model is not tied to the anchor by votes."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "–"
    return f"{to_elo(low):.0f} – {to_elo(high):.0f}"


def leaderboard_rows(board: Leaderboard) -> list[list]:
    """#, model, rating, 95% interval, votes, won, lost, tied: best first."""
    return [[rank, s.model, round(to_elo(s.strength)), interval(s.low, s.high), s.votes, s.wins, s.losses, s.ties]
            for rank, s in enumerate(board.standings, 1)]


def win_rate_rows(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """(models in standing order, rows): cell [i][j] = row model's share of its decisive votes against
    the column model (ties half), as text; '' where the two have no such votes (and on the diagonal)."""
    models = [s.model for s in board.standings]
    rows = []
    for r in models:
        cells = []
        for c in models:
            x = board.win_rate.get(r, {}).get(c) if r != c else None
            cells.append("" if x is None else f"{x:.2f}")
        rows.append(cells)
    return models, rows


def pair_rows(board: Leaderboard) -> list[list]:
    """model, against, votes (every vote, both-bad ones too), most voted first."""
    return [[a, b, n] for (a, b), n in sorted(board.votes_per_pair.items(), key=lambda kv: (-kv[1], kv[0]))]
