"""How far each reviewer can be trusted, and the consensus of several.

`assess(rankings, gold_rankings, gold)` fits one model over every ranking and reports, per
reviewer, a reliability, a training weight, gold accuracy, chance-corrected agreement with the
others and a few behaviour signs (speed, ties, submitting the shown order), plus each item's
consensus ranks. Pure functions over the dicts `LabelStore.rankings()` hands out (`item_id`,
`reviewer`, `ranks`, `seconds`, optionally `shown`); no database.

The model is Crowd-BT (Chen, Bennett, Collins-Thompson, Horvitz 2013, "Pairwise ranking
aggregation in a crowdsourced setting"). Each (item, answer position) has a latent score s, each
reviewer r a reliability eta_r, and

    P(r says i better than j) = eta_r * sigmoid(s_i - s_j) + (1 - eta_r) * sigmoid(s_j - s_i).

eta = 1 follows the latent order, 0.5 is a coin flip, below 0.5 reverses it. A ranking of K
answers gives its K(K-1)/2 pairs; a tie counts as half an observation each way. We fit the MAP
estimate under a Gaussian prior N(0, SCORE_PRIOR_SD^2) on every s (scores only enter as
differences, so it fixes each item's level and keeps a pair that everybody orders the same way
from running off to infinity) and a Beta(ETA_PRIOR) prior on eta, whose mode 0.75 leans honest.
The likelihood is unchanged by s -> -s, eta -> 1 - eta for everybody at once; the prior is what
picks the solution in which the reviewers are mostly honest.

Fitting. The posterior has more than one mode: a reviewer's votes can be absorbed into the scores
of the items they ranked (every item has K - 1 free score differences and only a few rankings), and
then even a lazy reviewer looks reliable. So the start matters: each eta starts at the reviewer's
rate of agreement with the leave-one-out majority (and gold), the scores at Borda counts weighted
by 2 * eta - 1. From there alternating Fisher-scoring steps (all items' K x K blocks at once, then
all etas) converge in a few sweeps, and scipy's L-BFGS-B with the analytic, vectorised gradient
(`crowd_bt.neg_log_posterior`; the fit lives in crowd_bt.py) finishes the MAP (0-10 iterations from there; alone it needs hundreds, since
one eta moves the scores of every item its reviewer ranked). 10,000 rankings of 4 answers by 20
reviewers: 0.25-0.5 s on a busy 2-core machine.

Limits. The model assumes reviewers err independently and knows nothing of positions. Two
reviewers who submit the same thing every time (two "lazy" ones, always the shown order) agree
perfectly wherever they meet, which to the model is strong evidence for both: in a simulated team
of twenty, one of two lazy reviewers came out at eta 0.99. The "always the shown order" warning is
what catches them. A reviewer who ties a pair says nothing about it, so eta -> 0.5 for one who
ties everything (the agreement figure shows it too: kappa ~ 0).

Why not crowd-kit's NoisyBradleyTerry: it has no ties (a reviewer who ties everything cannot even
be entered), and its per-reviewer "skill" mixes the reviewer's BT vote with a biased coin, so it
cannot express a reviewer who reverses the order - an adversarial reviewer comes out as a noisy
one at best, never as a reliably reversed one (whose votes, reversed, are information). It also
pulls in nltk, scikit-learn, pandas, pyarrow and transformers, and computes its gradient in a
Python loop over comparisons, for a fit that is a hundred lines of numpy here.

Gold items (known answers, `gold`: item id -> expected (better, worse) position pairs) enter twice:
reviewers' rankings of them are ordinary observations, and the expected pairs are observations of
a pseudo-reviewer with fixed reliability ANCHOR_ETA = 1, each counted ANCHOR_WEIGHT times. Why a
pseudo-reviewer rather than hard constraints: the gold items' scores are then pinned to the
expected order by the same likelihood (one objective, one gradient), so a reviewer's rankings of
gold items measure their eta against the truth rather than against their peers - which is what
rescues the fit when on some items the majority is wrong; a partial expectation ("answer 3 must be
last") constrains only the pairs it names; and a mistaken gold pair is a strong but finite pull, not
an infeasible constraint. An item id in `gold` is a gold item wherever its rankings are passed.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from labeling_ui.crowd_bt import ETA_PRIOR, fit
from ranktune.ranks import dense_ranks

ANCHOR_ETA = 1.0           # the gold pseudo-reviewer is right by definition
ANCHOR_WEIGHT = 4.0        # each expected gold pair counts as four comparisons of it
INIT_SCALE = 2.0           # starting scores: weighted Borda (-1 .. 1) times this
TIE_TOL = 1e-6             # consensus: scores closer than this share a rank

# Reliability and warnings thresholds.
MIN_SHARED_PAIRS = 10      # fewer comparisons on items someone else (or gold) also ranked: eta is None
MIN_PAIRS_LOW_RELIABILITY = 30   # "low reliability" needs about 5 shared rankings of 4 answers
LOW_RELIABILITY = 0.6      # eta below this: hardly better than a coin (weight 2*eta-1 < 0.2)
REVERSED = 0.4             # ... and below this, more often reversed than not: did they read 1 as worst?
MIN_RANKINGS = 5           # behaviour warnings (speed, ties, shown order) need this many rankings
FAST_FRACTION = 0.25       # "too fast": median seconds below a quarter of the team's median (the median
FAST_SECONDS = 5.0         # of the reviewers' medians) and under 5 s, over >= MIN_RANKINGS timed rankings
SHOWN_ORDER_SHARE = 0.8    # "always the shown order": at least 80% of rankings (chance: 1/K! ~ 4% for K = 4)
TIE_SHARE = 0.8            # "ties almost everything": at least 80% of answer pairs tied
LOW_GOLD_ACCURACY = 0.6    # below this on at least MIN_GOLD_PAIRS gold pairs
MIN_GOLD_PAIRS = 5

W_TOO_FAST = "too fast"
W_SHOWN_ORDER = "always the shown order"
W_TIES = "ties almost everything"
W_LOW_RELIABILITY = "low reliability"
W_LOW_GOLD = "low gold accuracy"
W_REVERSED = "reverses the order"
W_NO_OVERLAP = "too little overlap to estimate reliability"


@dataclass(frozen=True)
class ReviewerReliability:
    reviewer: str
    rankings: int                 # rankings used (gold items included)
    reliability: float | None     # Crowd-BT eta; None with fewer than MIN_SHARED_PAIRS comparisons on shared items
    weight: float                 # max(0, 2*eta - 1); unknown eta: the median weight of the known ones (1.0 if none)
    gold_accuracy: float | None   # share of expected gold pairs ordered as expected, a tie counting half
    gold_pairs: int
    agreement: float | None       # kappa against the leave-one-out consensus of the other reviewers
    median_seconds: float | None
    tie_share: float | None       # share of answer pairs called a tie
    shown_order_share: float | None  # share of rankings that are exactly the order shown
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Assessment:
    reviewers: list[ReviewerReliability]   # most reliable first, unknown reliability last
    consensus: dict[int, list[int]]        # item_id -> dense consensus ranks (1 = best), >= 2 distinct reviewers
    scores: dict[int, list[float]]         # item_id -> latent score per answer position, every item fitted


# ---------------------------------------------------------------------------------------------
# Input


def _shown(r: dict, k: int) -> list[int]:
    shown = r.get("shown")
    if shown is None:
        return list(range(k))
    shown = [int(p) for p in shown]
    if sorted(shown) != list(range(k)):
        raise ValueError(f"ranking of item {r['item_id']} by {r['reviewer']}: shown {shown} "
                         f"is not a permutation of 0..{k - 1}")
    return shown


def _check_ranks(r: dict) -> list[int]:
    ranks = [int(v) for v in r["ranks"]]
    if ranks and sorted(set(ranks)) != list(range(1, max(ranks) + 1)):
        raise ValueError(f"ranking of item {r['item_id']} by {r['reviewer']}: {ranks} are not dense ranks from 1")
    return ranks


def _gold_pairs(gold: dict, k_of: dict[int, int]) -> dict[int, np.ndarray]:
    out = {}
    for item, pairs in gold.items():
        if item not in k_of:
            continue  # nobody ranked it: nothing to anchor
        arr = np.asarray([(int(i), int(j)) for i, j in pairs], dtype=np.int64).reshape(-1, 2)
        k = k_of[item]
        if not len(arr):
            continue
        if ((arr < 0) | (arr >= k)).any() or (arr[:, 0] == arr[:, 1]).any():
            raise ValueError(f"gold item {item}: expected pairs {pairs} must be distinct positions in 0..{k - 1}")
        out[item] = arr
    return out


# ---------------------------------------------------------------------------------------------
# The assessment


def assess(rankings: list[dict], gold_rankings: list[dict] = (), gold: dict[int, list[tuple[int, int]]] | None = None
           ) -> Assessment:
    """Reliability per reviewer and consensus per item; see the module docstring.

    `rankings`, `gold_rankings`: dicts with `item_id`, `reviewer`, `ranks` (dense, 1 = best, by
    answer position), `seconds` (or None) and optionally `shown` (positions in display order;
    default 0..K-1). `gold`: gold item id -> expected (better, worse) position pairs; every
    ranking of such an item, in either list, counts towards gold accuracy. Raises ValueError for
    ranks that are not dense, an item ranked with different K, a bad `shown` or gold pair, or a
    gold ranking of an item without expected pairs.
    """
    gold = dict(gold or {})
    all_r = list(rankings) + list(gold_rankings)
    for r in gold_rankings:
        if r["item_id"] not in gold:
            raise ValueError(f"gold ranking of item {r['item_id']} by {r['reviewer']}: "
                             "the item has no expected pairs in `gold`")
    if not all_r:
        return Assessment([], {}, {})

    ranks_of = [_check_ranks(r) for r in all_r]
    k_of: dict[int, int] = {}
    for r, ranks in zip(all_r, ranks_of):
        if k_of.setdefault(r["item_id"], len(ranks)) != len(ranks):
            raise ValueError(f"item {r['item_id']} has rankings of {k_of[r['item_id']]} and of {len(ranks)} answers")
    items = sorted(k_of)
    item_index = {it: n for n, it in enumerate(items)}
    ks = np.array([k_of[it] for it in items], dtype=np.int64)
    offset = np.concatenate([[0], np.cumsum(ks)])
    n_scores = int(offset[-1])
    names = sorted({r["reviewer"] for r in all_r})
    rev_index = {name: n for n, name in enumerate(names)}
    n_rev = len(names)
    anchors = _gold_pairs(gold, k_of)

    reviewers_of_item: dict[int, set[str]] = defaultdict(set)
    for r in all_r:
        reviewers_of_item[r["item_id"]].add(r["reviewer"])
    shared_item = np.array([len(reviewers_of_item[it]) >= 2 or it in anchors for it in items])

    # Per reviewer tallies (filled per K group below).
    n_rankings = np.zeros(n_rev, dtype=np.int64)
    pairs_total = np.zeros(n_rev)
    ties_total = np.zeros(n_rev)
    shared_pairs = np.zeros(n_rev)
    shown_hits = np.zeros(n_rev)
    shown_total = np.zeros(n_rev)
    agree_n = np.zeros(n_rev)
    agree_same = np.zeros(n_rev)
    agree_own_tie = np.zeros(n_rev)
    agree_cons_tie = np.zeros(n_rev)
    gold_score = np.zeros(n_rev)
    gold_count = np.zeros(n_rev, dtype=np.int64)
    seconds: dict[int, list[float]] = defaultdict(list)

    loo_score = np.zeros(n_rev)     # votes against a strict leave-one-out consensus: 1 same, 0.5 tie, 0 reversed
    loo_n = np.zeros(n_rev)
    obs_a, obs_b, obs_y, obs_r, obs_w = [], [], [], [], []
    borda_at, borda_val, borda_rev = [], [], []

    by_k: dict[int, list[int]] = defaultdict(list)
    for n, (r, ranks) in enumerate(zip(all_r, ranks_of)):
        by_k[len(ranks)].append(n)
        rv = rev_index[r["reviewer"]]
        n_rankings[rv] += 1
        if r.get("seconds") is not None:
            seconds[rv].append(float(r["seconds"]))
        if r["item_id"] in anchors and len(ranks) >= 2:
            exp = anchors[r["item_id"]]
            ra = np.asarray(ranks)
            better, worse = ra[exp[:, 0]], ra[exp[:, 1]]
            gold_score[rv] += (better < worse).sum() + 0.5 * (better == worse).sum()
            gold_count[rv] += len(exp)

    for k, idx in sorted(by_k.items()):
        if k < 2:
            continue
        R = np.array([ranks_of[n] for n in idx], dtype=np.int64)                       # (m, k)
        S = np.array([_shown(all_r[n], k) for n in idx], dtype=np.int64)               # (m, k)
        it = np.array([item_index[all_r[n]["item_id"]] for n in idx], dtype=np.int64)
        rv = np.array([rev_index[all_r[n]["reviewer"]] for n in idx], dtype=np.int64)
        m = len(idx)
        pi, pj = np.triu_indices(k, 1)
        n_pairs = len(pi)
        sign = np.sign(R[:, pj] - R[:, pi])            # +1: i better, -1: j better, 0: tie; (m, n_pairs)
        base = offset[it][:, None]
        obs_a.append((base + pi).ravel())
        obs_b.append((base + pj).ravel())
        obs_y.append(((sign + 1) / 2).ravel())
        obs_r.append(np.repeat(rv, n_pairs))
        obs_w.append(np.ones(m * n_pairs))

        # Borda: each answer's wins minus losses over the others, / (K - 1), in -1 .. 1.
        beats = (R[:, None, :] > R[:, :, None]).sum(axis=2) - (R[:, None, :] < R[:, :, None]).sum(axis=2)
        borda_at.append((base + np.arange(k)).ravel())
        borda_val.append((beats / (k - 1)).ravel())
        borda_rev.append(np.repeat(rv, k))

        ties = (sign == 0).sum(axis=1)
        pairs_total += np.bincount(rv, np.full(m, n_pairs), n_rev)
        ties_total += np.bincount(rv, ties, n_rev)
        shared_pairs += np.bincount(rv, np.where(shared_item[it], n_pairs, 0), n_rev)
        in_shown_order = (np.take_along_axis(R, S, axis=1) == np.arange(1, k + 1)).all(axis=1)
        shown_hits += np.bincount(rv, in_shown_order, n_rev)
        shown_total += np.bincount(rv, minlength=n_rev)

        # Leave-one-out consensus of the other reviewers: the sign of the sum of their votes on
        # each pair (a reviewer who ranked an item twice is left out entirely on it).
        local_items, it_local = np.unique(it, return_inverse=True)
        item_sum = np.zeros((len(local_items), n_pairs))
        np.add.at(item_sum, it_local, sign)
        item_cnt = np.bincount(it_local, minlength=len(local_items))
        _, ri = np.unique(rv * len(items) + it, return_inverse=True)
        own_sum = np.zeros((ri.max() + 1, n_pairs))
        np.add.at(own_sum, ri, sign)
        own_cnt = np.bincount(ri)
        others = np.sign(item_sum[it_local] - own_sum[ri])
        has_others = (item_cnt[it_local] - own_cnt[ri]) > 0
        if has_others.any():
            o, sg, rvo = others[has_others], sign[has_others], rv[has_others]
            agree_n += np.bincount(rvo, np.full(len(rvo), n_pairs), n_rev)
            agree_same += np.bincount(rvo, (sg == o).sum(axis=1), n_rev)
            agree_own_tie += np.bincount(rvo, (sg == 0).sum(axis=1), n_rev)
            agree_cons_tie += np.bincount(rvo, (o == 0).sum(axis=1), n_rev)
            strict = o != 0
            loo_score += np.bincount(rvo, (((sg == o) + 0.5 * (sg == 0)) * strict).sum(axis=1), n_rev)
            loo_n += np.bincount(rvo, strict.sum(axis=1), n_rev)

    for item, exp in anchors.items():
        base = offset[item_index[item]]
        obs_a.append(base + exp[:, 0])
        obs_b.append(base + exp[:, 1])
        obs_y.append(np.ones(len(exp)))
        obs_r.append(np.full(len(exp), n_rev, dtype=np.int64))   # the pseudo-reviewer, past the real ones
        obs_w.append(np.full(len(exp), ANCHOR_WEIGHT))

    eta_hat = np.full(n_rev, np.nan)
    s_hat = np.zeros(n_scores)
    if obs_a:
        a, b = np.concatenate(obs_a), np.concatenate(obs_b)
        y, rr, w = np.concatenate(obs_y), np.concatenate(obs_r), np.concatenate(obs_w)
        fixed = np.array([ANCHOR_ETA] if anchors else [])
        # The start (see "Fitting" above): eta0 = agreement with the leave-one-out majority and
        # the gold pairs, smoothed by the prior's pseudo-counts; scores = Borda counts weighted by
        # 2 * eta0 - 1, so a reversed reviewer's votes already count reversed.
        alpha, beta = ETA_PRIOR
        eta0 = np.clip((loo_score + gold_score + alpha - 1) / (loo_n + gold_count + alpha + beta - 2), 0.05, 0.95)
        at, val, rev = np.concatenate(borda_at), np.concatenate(borda_val), np.concatenate(borda_rev)
        s0 = (INIT_SCALE * np.bincount(at, val * (2 * eta0[rev] - 1), n_scores)
              / np.maximum(np.bincount(at, None, n_scores), 1))
        x0 = np.concatenate([s0, eta0])
        item_of_score = np.repeat(np.arange(len(items)), ks)
        pos_of_score = np.arange(n_scores) - offset[item_of_score]
        s_hat, eta_hat = fit(x0, a, b, y, rr, w, n_scores, fixed, item_of_score, pos_of_score)

    known = shared_pairs >= MIN_SHARED_PAIRS
    weights = np.maximum(0.0, 2 * eta_hat - 1)
    # Unknown is unmeasured, not bad: such a reviewer weighs like the team's median reviewer, and
    # when nobody is measured (overlap 1, no gold) everybody keeps today's unweighted 1.0 rather
    # than 0, which would leave nothing to train on.
    default_weight = float(np.median(weights[known])) if known.any() else 1.0
    medians = {rv: statistics.median(v) for rv, v in seconds.items() if v}
    team_median = statistics.median(medians.values()) if medians else None

    out = []
    for rv, name in enumerate(names):
        eta = float(eta_hat[rv]) if known[rv] else None
        gold_acc = float(gold_score[rv] / gold_count[rv]) if gold_count[rv] else None
        agreement = None
        if agree_n[rv]:
            p_o = agree_same[rv] / agree_n[rv]
            t_own, t_cons = agree_own_tie[rv] / agree_n[rv], agree_cons_tie[rv] / agree_n[rv]
            # Cohen's kappa on better/tie/worse, each pair counted in both orientations so that
            # "better" and "worse" share their mass and which answer is first does not matter.
            p_e = t_own * t_cons + (1 - t_own) * (1 - t_cons) / 2
            agreement = None if p_e >= 1 else float((p_o - p_e) / (1 - p_e))
        tie_share = float(ties_total[rv] / pairs_total[rv]) if pairs_total[rv] else None
        shown_share = float(shown_hits[rv] / shown_total[rv]) if shown_total[rv] else None
        med = medians.get(rv)
        warn = []
        if (med is not None and len(seconds[rv]) >= MIN_RANKINGS and team_median is not None
                and med < FAST_FRACTION * team_median and med < FAST_SECONDS):
            warn.append(W_TOO_FAST)
        if shown_share is not None and shown_total[rv] >= MIN_RANKINGS and shown_share >= SHOWN_ORDER_SHARE:
            warn.append(W_SHOWN_ORDER)
        if tie_share is not None and n_rankings[rv] >= MIN_RANKINGS and tie_share >= TIE_SHARE:
            warn.append(W_TIES)
        if eta is None:
            warn.append(W_NO_OVERLAP)
        elif eta < LOW_RELIABILITY and shared_pairs[rv] >= MIN_PAIRS_LOW_RELIABILITY:
            warn.append(W_LOW_RELIABILITY)
            if eta < REVERSED:
                warn.append(W_REVERSED)
        if gold_acc is not None and gold_count[rv] >= MIN_GOLD_PAIRS and gold_acc < LOW_GOLD_ACCURACY:
            warn.append(W_LOW_GOLD)
        out.append(ReviewerReliability(
            reviewer=name, rankings=int(n_rankings[rv]), reliability=eta,
            weight=float(weights[rv]) if eta is not None else default_weight,
            gold_accuracy=gold_acc, gold_pairs=int(gold_count[rv]), agreement=agreement,
            median_seconds=None if med is None else float(med), tie_share=tie_share,
            shown_order_share=shown_share, warnings=tuple(warn)))
    out.sort(key=lambda v: (v.reliability is None, -(v.reliability or 0.0), v.reviewer))

    scores = {it: [float(v) for v in s_hat[offset[n]:offset[n + 1]]] for n, it in enumerate(items)}
    consensus = {it: dense_ranks(scores[it], TIE_TOL) for it in items if len(reviewers_of_item[it]) >= 2}
    return Assessment(out, consensus, scores)
