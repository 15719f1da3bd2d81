"""Dense ranks from scores: the form every ranking takes here (1 = best, ties share a rank, no gaps)."""

from __future__ import annotations

from typing import Sequence


def dense_ranks(scores: Sequence[float], tol: float = 0.0) -> list[int]:
    """1 = highest score; a score within `tol` of the one ranked just above it shares its rank."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: equal scores keep their order
    ranks = [0] * len(scores)
    rank, prev = 0, None
    for i in order:
        if prev is None or prev - scores[i] > tol:
            rank += 1
        ranks[i] = rank
        prev = scores[i]
    return ranks
