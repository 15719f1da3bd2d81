"""What the admin tab shows: progress and throughput per reviewer, and how much reviewers agree
on the items they both ranked.

Agreement, for two reviewers' ranks a and b of the same K answers:
- pairwise agreement: the share of the K(K-1)/2 answer pairs that both order the same way
  (both say i > j, both j > i, or both call it a tie);
- Kendall's tau-b (scipy): rank correlation with ties, -1..1; undefined when one reviewer tied
  everything, and then left out;
- Krippendorff's alpha, ordinal (computed here), over all reviewers at once: each
  (item, answer) is a unit and its ranks the values. 1 = perfect, 0 = chance level.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import datetime, timedelta
from itertools import combinations


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def pairwise_agreement(a: list[int], b: list[int]) -> float | None:
    pairs = list(combinations(range(len(a)), 2))
    if not pairs:
        return None
    same = sum(_sign(a[i] - a[j]) == _sign(b[i] - b[j]) for i, j in pairs)
    return same / len(pairs)


def kendall_tau(a: list[int], b: list[int]) -> float | None:
    from scipy.stats import kendalltau

    if len(set(a)) < 2 or len(set(b)) < 2:
        return None  # a reviewer who tied every answer has no order to correlate
    tau = kendalltau(a, b).statistic  # tau-b, which accounts for ties
    return None if math.isnan(tau) else float(tau)


def _ordinal_alpha(data) -> float | None:
    """Krippendorff's alpha, ordinal metric, for a (coders, units) array with NaN = missing.

    Written out (Krippendorff 2011, "Computing Krippendorff's alpha-reliability") rather than
    taken from a package: it is a few lines, and the app should not need one more dependency.
    """
    import numpy as np

    values = np.unique(data[~np.isnan(data)])
    index = {v: i for i, v in enumerate(values)}
    coincidences = np.zeros((len(values), len(values)))
    for unit in data.T:
        present = [index[v] for v in unit[~np.isnan(unit)]]
        m = len(present)
        if m < 2:
            continue  # a value nobody else rated has nothing to agree with
        counts = np.bincount(present, minlength=len(values)).astype(float)
        coincidences += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    n_c = coincidences.sum(axis=1)
    n = n_c.sum()
    if n < 2:
        return None
    cum = np.concatenate([[0.0], np.cumsum(n_c)])  # cum[k + 1] - cum[c] = sum of n_g for g in c..k
    c, k = np.meshgrid(np.arange(len(values)), np.arange(len(values)), indexing="ij")
    lo, hi = np.minimum(c, k), np.maximum(c, k)
    delta = (cum[hi + 1] - cum[lo] - (n_c[c] + n_c[k]) / 2) ** 2
    expected = (np.outer(n_c, n_c) * delta).sum()
    if expected == 0:
        return None  # one value throughout: alpha is undefined
    return float(1 - (n - 1) * (coincidences * delta).sum() / expected)


def krippendorff_alpha(rankings: list[dict]) -> float | None:
    import numpy as np

    by_item: dict[int, list[dict]] = defaultdict(list)
    for r in rankings:
        by_item[r["item_id"]].append(r)
    shared = {i: rs for i, rs in by_item.items() if len({r["reviewer"] for r in rs}) >= 2}
    if not shared:
        return None
    reviewers = sorted({r["reviewer"] for rs in shared.values() for r in rs})
    units = [(i, pos) for i, rs in shared.items() for pos in range(len(rs[0]["ranks"]))]
    data = np.full((len(reviewers), len(units)), np.nan)  # (reviewers, units); NaN = did not rank it
    col = {u: c for c, u in enumerate(units)}
    row = {name: n for n, name in enumerate(reviewers)}
    for i, rs in shared.items():
        for r in rs:
            for pos, rank in enumerate(r["ranks"]):
                if (i, pos) in col:
                    data[row[r["reviewer"]], col[(i, pos)]] = rank
    alpha = _ordinal_alpha(data)
    return None if alpha is None or math.isnan(alpha) else alpha


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def agreement(rankings: list[dict]) -> dict:
    """Agreement over items ranked by two or more reviewers (`rankings`: LabelStore.rankings())."""
    by_item: dict[int, list[dict]] = defaultdict(list)
    for r in rankings:
        by_item[r["item_id"]].append(r)
    agree, taus = [], []
    per_reviewer: dict[str, list[float]] = defaultdict(list)
    items = 0
    for rs in by_item.values():
        if len(rs) < 2:
            continue
        items += 1
        for x, y in combinations(rs, 2):
            if x["reviewer"] == y["reviewer"] or len(x["ranks"]) != len(y["ranks"]):
                continue
            pa = pairwise_agreement(x["ranks"], y["ranks"])
            if pa is not None:
                agree.append(pa)
                per_reviewer[x["reviewer"]].append(pa)
                per_reviewer[y["reviewer"]].append(pa)
            tau = kendall_tau(x["ranks"], y["ranks"])
            if tau is not None:
                taus.append(tau)
    return {"items_compared": items, "reviewer_pairs": len(agree), "pairwise_agreement": _mean(agree),
            "kendall_tau": _mean(taus), "krippendorff_alpha": krippendorff_alpha(rankings),
            "per_reviewer": {name: _mean(v) for name, v in per_reviewer.items()}}


def reviewer_table(submissions: list[dict], remaining: dict[str, int], agreement_by_reviewer: dict[str, float],
                   now: datetime) -> list[list]:
    """One row per reviewer: done, skipped, still available, last hour, median time, agreement, last seen."""
    by_name: dict[str, list[dict]] = defaultdict(list)
    for sub in submissions:
        by_name[sub["name"]].append(sub)
    rows = []
    for name in sorted(set(by_name) | set(remaining)):
        subs = by_name.get(name, [])
        done = [s for s in subs if not s["skipped"]]
        secs = [s["seconds"] for s in done if s["seconds"] is not None]
        last_hour = sum(s["created_at"] > now - timedelta(hours=1) for s in done)
        last = max((s["created_at"] for s in subs), default=None)
        agree = agreement_by_reviewer.get(name)
        rows.append([name, len(done), len(subs) - len(done), remaining.get(name, 0), last_hour,
                     round(statistics.median(secs)) if secs else None,
                     None if agree is None else round(agree, 3),
                     last.strftime("%Y-%m-%d %H:%M UTC") if last else ""])
    return rows


REVIEWER_COLUMNS = ["reviewer", "ranked", "skipped", "left for them", "ranked in last hour", "median s / item",
                    "agreement with others", "last active"]


def throughput(submissions: list[dict], now: datetime) -> dict:
    done = [s for s in submissions if not s["skipped"]]
    first = min((s["created_at"] for s in done), default=None)
    hours = max((now - first).total_seconds() / 3600, 1 / 60) if first else None
    return {"rankings": len(done),
            "last_hour": sum(s["created_at"] > now - timedelta(hours=1) for s in done),
            "last_day": sum(s["created_at"] > now - timedelta(days=1) for s in done),
            "per_hour_overall": round(len(done) / hours, 1) if hours else None}


def progress_figure(submissions: list[dict]):
    """Cumulative rankings over time, one line per reviewer (a matplotlib figure)."""
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure  # not pyplot: a figure per refresh must not pile up in its registry

    fig = Figure(figsize=(7, 2.8))
    ax = fig.subplots()
    by_name: dict[str, list[datetime]] = defaultdict(list)
    for s in submissions:
        if not s["skipped"]:
            by_name[s["name"]].append(s["created_at"])
    for name, times in sorted(by_name.items()):
        times.sort()
        ax.plot(times, range(1, len(times) + 1), drawstyle="steps-post", marker="o", markersize=3, label=name)
    ax.set_ylabel("rankings")
    ax.set_title("Rankings submitted over time (UTC)")
    ax.grid(alpha=0.3)
    if by_name:
        first = min(min(t) for t in by_name.values())
        last = max(max(t) for t in by_name.values())
        pad = max((last - first) * 0.05, timedelta(minutes=5))  # one point would span years otherwise
        ax.set_xlim(first - pad, last + pad)
        ax.set_ylim(bottom=0)
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
