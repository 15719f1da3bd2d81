"""The Arena leaderboard: Bradley-Terry strengths with bootstrap intervals, and which pair to show next.

Pure statistics over `Vote`s (one judged turn: model A, model B, outcome "a" / "b" / "tie" /
"both_bad"); no UI, no database.

Model. Bradley-Terry, P(a beats b) = sigmoid(s_a - s_b), s a log-strength. A tie counts as half a
win each way (Chatbot Arena's BT with ties split), not Rao-Kupper / Davidson: those add a tie
parameter that changes nothing in the order, and splitting keeps the fitted P(a beats b) the same
quantity as the `win_rate` table (ties half), so the two can be read against each other. A
"both_bad" vote says nothing about which model is better: it is left out of the fit but counted in
`Standing.votes`. The votes are aggregated into a pair-by-pair win matrix W (W[i, j] = i's wins over
j plus half their ties), so a fit costs O(models^2) whatever the number of votes.

Fit. MAP under a Gaussian prior N(0, PRIOR_SD^2), PRIOR_SD = 10, on every log-strength: an L2
penalty s^2 / 200, i.e. precision 0.01 where one vote on an even pair adds 0.25, so invisible next
to real data but enough to give a model that won every vote a finite strength (+6.4 after 10 wins
over each of three even models). scipy's L-BFGS-B with the analytic gradient; the bootstrap refits
all resamples at once by damped Newton (`fit_batch`, same optimum). The prior is symmetric, so the
fit does not depend on the anchor; strengths are reported relative to it, i.e. the anchor is fixed
at exactly 0 (interval [0, 0]). Default anchor: the model named "sft" (the SFT policy) if it has
decisive votes, else the first model to appear in the votes.

Intervals. Votes (both_bad included) are resampled with replacement `bootstrap` times (one
multinomial draw over the distinct (pair, outcome) cells), refitted, and the 2.5 / 97.5
percentiles of s - s_anchor taken. A model with no decisive (a / b / tie) votes gets strength 0
and bounds (-inf, inf); so does every model not linked to the anchor by a chain of decisive votes
(its strength is then centred on its own group by the prior, not comparable to the anchor's).
These come last, by name. A model that won every vote wins every vote of every resample too: its
interval says "high", but its width is set by the prior, not the data. bootstrap=0: nan bounds.

`to_elo` maps log-strength to the familiar Elo scale (400 / ln 10 per unit, anchor at 1000).
`next_pair` is documented there.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.sparse.csgraph import connected_components
from scipy.special import expit, log_expit

OUTCOMES = ("a", "b", "tie", "both_bad")
PRIOR_SD = 10.0
FIT_OPTIONS = {"maxiter": 500, "ftol": 1e-12, "gtol": 1e-7}


@dataclass(frozen=True)
class Vote:
    """One judged turn: `outcome` is "a" (model_a better), "b", "tie" or "both_bad"."""
    model_a: str
    model_b: str
    outcome: str


@dataclass(frozen=True)
class Standing:
    model: str
    strength: float   # BT log-strength relative to the anchor (to_elo for the Elo scale)
    low: float        # bootstrap 95% percentile interval; (-inf, inf) when not identified
    high: float
    votes: int        # every vote with this model, both_bad included
    wins: int
    losses: int
    ties: int


@dataclass(frozen=True)
class Leaderboard:
    standings: list[Standing]                        # best first; unidentified ones last
    win_rate: dict[str, dict[str, float | None]]     # row's share vs column, ties half; None: no votes
    votes_per_pair: dict[tuple[str, str], int]       # sorted pair -> every vote, both_bad included
    anchor: str | None                               # strength fixed at 0


def to_elo(strength):
    """Log-strength -> Elo-like rating: 400 / ln(10) per unit, 0 (the anchor) at 1000."""
    return 400.0 / math.log(10.0) * strength + 1000.0


def _neg_log_posterior(s: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """-log posterior of BT under the N(0, PRIOR_SD^2) prior, and its gradient. w: win matrix."""
    d = s[:, None] - s[None, :]
    g = w * expit(-d)                               # d/d s_i of w_ij log sigmoid(s_i - s_j)
    grad = g.sum(1) - g.sum(0) - s / PRIOR_SD ** 2
    return -(np.sum(w * log_expit(d)) - s @ s / (2 * PRIOR_SD ** 2)), -grad


def fit_strengths(w: np.ndarray, x0: np.ndarray | None = None) -> np.ndarray:
    """MAP log-strengths (centred by the prior, not anchored) for the win matrix w."""
    x0 = np.zeros(len(w)) if x0 is None else x0
    return minimize(_neg_log_posterior, x0, args=(w,), jac=True, method="L-BFGS-B",
                    options=FIT_OPTIONS).x


def _log_posterior(s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """log posterior (up to a constant) of a batch: s (B, m), w (B, m, m)."""
    return (w * log_expit(s[:, :, None] - s[:, None, :])).sum((1, 2)) - (s * s).sum(1) / (2 * PRIOR_SD ** 2)


def fit_batch(w: np.ndarray, s0: np.ndarray, tol: float = 1e-9, max_iter: int = 100) -> np.ndarray:
    """MAP log-strengths of a batch of win matrices w (B, m, m), all at once: damped Newton from s0
    (the full-data fit, so a few steps), halving a step until it does not lower the posterior."""
    s = np.broadcast_to(s0, w.shape[:2]).copy()
    eye = np.eye(w.shape[1]) / PRIOR_SD ** 2
    n = w + w.transpose(0, 2, 1)
    for _ in range(max_iter):
        d = s[:, :, None] - s[:, None, :]
        g = w * expit(-d)
        grad = g.sum(2) - g.sum(1) - s / PRIOR_SD ** 2
        busy = np.abs(grad).max(1) > tol
        if not busy.any():
            break
        q = n * expit(d) * expit(-d)
        info = q.sum(2)[:, :, None] * np.eye(w.shape[1]) - q + eye     # minus the Hessian
        step = np.linalg.solve(info, grad[:, :, None])[:, :, 0] * busy[:, None]
        f0 = _log_posterior(s, w)
        for _ in range(30):
            worse = _log_posterior(s + step, w) < f0 - 1e-12 * np.abs(f0)
            if not worse.any():
                break
            step[worse] /= 2
        s += step
    return s


def _check(votes: list[Vote]) -> None:
    for v in votes:
        if v.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {v.outcome!r} (expected one of {OUTCOMES})")
        if v.model_a == v.model_b:
            raise ValueError(f"a vote of {v.model_a!r} against itself")


def _cells(votes: list[Vote], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b, outcome) cells of the votes as rows of ints, and how many votes each holds."""
    codes = np.array([(index[v.model_a], index[v.model_b], OUTCOMES.index(v.outcome)) for v in votes])
    return np.unique(codes, axis=0, return_counts=True)


def _win_matrices(cells: np.ndarray, counts: np.ndarray, m: int) -> np.ndarray:
    """Win matrices (..., m, m) for counts (..., n_cells): a win 1 to the winner, a tie 0.5 each way."""
    a, b, o = cells.T
    t = np.zeros((len(cells), m * m))
    rows = np.arange(len(cells))
    t[rows, a * m + b] += (o == 0) + 0.5 * (o == 2)
    t[rows, b * m + a] += (o == 1) + 0.5 * (o == 2)
    return (counts @ t).reshape(counts.shape[:-1] + (m, m))


def leaderboard(votes: list[Vote], anchor: str | None = None, bootstrap: int = 200,
                seed: int = 0) -> Leaderboard:
    """Standings (best first), win-rate table and vote counts; see the module docstring."""
    _check(votes)
    models = list(dict.fromkeys(m for v in votes for m in (v.model_a, v.model_b)))
    if anchor is not None and anchor not in models:
        raise ValueError(f"anchor {anchor!r} has no votes")
    if not models:
        return Leaderboard([], {}, {}, None)
    index = {name: i for i, name in enumerate(models)}
    m = len(models)
    cells, counts = _cells(votes, index)
    w = _win_matrices(cells, counts, m)
    n = w + w.T                                      # decisive votes per pair (ties count 1)
    if anchor is None:
        anchor = "sft" if "sft" in index and n[index["sft"]].sum() > 0 else models[0]
    k = index[anchor]
    s = fit_strengths(w)
    _, comp = connected_components(n > 0, directed=False)
    known = (comp == comp[k]) & (n.sum(1) > 0)
    rel = np.where(known, s - s[k], s)
    rel[n.sum(1) == 0] = 0.0
    if bootstrap > 0:
        draws = np.random.default_rng(seed).multinomial(counts.sum(), counts / counts.sum(),
                                                        size=bootstrap)
        boot = fit_batch(_win_matrices(cells, draws, m), s)
        boot -= boot[:, [k]]
        low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    else:
        low = high = np.full(m, np.nan)

    tally = {name: [0, 0, 0, 0] for name in models}  # votes, wins, losses, ties
    pair_votes: dict[tuple[str, str], int] = {}
    for v in votes:
        tally[v.model_a][0] += 1
        tally[v.model_b][0] += 1
        if v.outcome == "tie":
            tally[v.model_a][3] += 1
            tally[v.model_b][3] += 1
        elif v.outcome in ("a", "b"):
            win, lose = (v.model_a, v.model_b) if v.outcome == "a" else (v.model_b, v.model_a)
            tally[win][1] += 1
            tally[lose][2] += 1
        key = tuple(sorted((v.model_a, v.model_b)))
        pair_votes[key] = pair_votes.get(key, 0) + 1
    standings = [Standing(name, float(rel[i]),
                          float(low[i]) if known[i] else -math.inf,
                          float(high[i]) if known[i] else math.inf, *tally[name])
                 for i, name in enumerate(models)]
    standings.sort(key=lambda st: (0, -st.strength, st.model) if known[index[st.model]] else (1, 0, st.model))
    win_rate = {r: {c: (float(w[i, j] / n[i, j]) if n[i, j] > 0 else None) for j, c in enumerate(models)}
                for i, r in enumerate(models)}
    return Leaderboard(standings, win_rate, dict(sorted(pair_votes.items())), anchor)


def next_pair(votes: list[Vote], models: list[str], rng: random.Random) -> tuple[str, str]:
    """The pair of distinct models to show next, as (model_a, model_b) in a random order.

    Pairs never voted on come first (uniformly among them). Then pair (a, b) is drawn with
    probability proportional to the expected reduction, from one more vote on it, in the total
    variance of the strength differences, sum over all pairs of Var(s_i - s_j) = m tr(C Cov C),
    C the centring matrix: the quantity behind every interval on the board, whichever the anchor.
    Cov is the Laplace approximation of the BT posterior, the inverse of its Fisher information
    F = Laplacian(n_ij p_ij (1 - p_ij)) + I / PRIOR_SD^2 at the current fit, and one vote with
    x = e_a - e_b, v = p_ab (1 - p_ab) lowers it by the rank-one (Sherman-Morrison) amount

        v |C Cov x|^2 / (1 + v x' Cov x),

    times the pair's chance of a decisive vote, (decisive + 1) / (votes + 2), since a both_bad vote
    teaches nothing. So few votes and close pairs are drawn most. This is the spirit of Chatbot
    Arena's rule (Chiang et al. 2024, section 5: draw a pair in proportion to the shrinkage of its
    own win-rate interval, sqrt(v / n) - sqrt(v / (n + 1))) aimed at the strengths themselves,
    which also counts what a pair learns through the others. Drawing rather than taking the best
    keeps every pair in play. Deterministic for a given rng; votes on other models are ignored.
    """
    _check(votes)
    models = list(dict.fromkeys(models))
    if len(models) < 2:
        raise ValueError("next_pair needs at least two models")
    index = {name: i for i, name in enumerate(models)}
    m = len(models)
    mine = [v for v in votes if v.model_a in index and v.model_b in index]
    every = np.zeros((m, m))
    for v in mine:
        every[index[v.model_a], index[v.model_b]] += 1
    every += every.T
    pairs = np.array([(i, j) for i in range(m) for j in range(i + 1, m)])
    i, j = pairs.T
    fresh = np.flatnonzero(every[i, j] == 0)
    if len(fresh):
        k = int(fresh[rng.randrange(len(fresh))])
    else:
        cells, counts = _cells(mine, index)
        w = _win_matrices(cells, counts, m)
        n = w + w.T                                  # decisive votes
        s = fit_batch(w[None], np.zeros(m))[0]
        p = expit(s[:, None] - s[None, :])
        q = n * p * (1 - p)
        cov = np.linalg.inv(np.diag(q.sum(1)) - q + np.eye(m) / PRIOR_SD ** 2)
        cx = cov[:, i] - cov[:, j]                   # Cov x, one column per pair
        v = p[i, j] * (1 - p[i, j])
        gain = v * ((cx - cx.mean(0)) ** 2).sum(0) / (1 + v * (cx[i, range(len(i))] - cx[j, range(len(i))]))
        gain *= (n[i, j] + 1) / (every[i, j] + 2)
        u = rng.random() * gain.sum()
        k = min(int(np.searchsorted(np.cumsum(gain), u, side="right")), len(gain) - 1)
    a, b = models[pairs[k, 0]], models[pairs[k, 1]]
    return (a, b) if rng.random() < 0.5 else (b, a)
