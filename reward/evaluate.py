"""Held-out metrics of a reward model, from its scores of every answer of every test ranking.

Scores come from `ranktune.scoring.RewardScorer` — the same code path PPO will score with —
so what is measured here is what the next stage gets.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ranktune.plots import save_figure
from reward.records import Ranking


def score_answers(scorer, prompts: list, answers: list[str], batch_size: int = 16, raw: bool = True,
                  desc: str = "scoring", ended: list[bool] | None = None) -> list[float]:
    """`scorer.score` in chunks, with a progress bar."""
    scores: list[float] = []
    chunk = batch_size * 4
    ended = ended if ended is not None else [True] * len(answers)
    for i in tqdm(range(0, len(answers), chunk), desc=desc, unit="chunk", leave=False):
        scores.extend(scorer.score(prompts[i:i + chunk], answers[i:i + chunk], ended[i:i + chunk],
                                   batch_size=batch_size, raw=raw))
    return scores


def score_member_answers(scorer, prompts: list, answers: list[str], batch_size: int = 16, raw: bool = True,
                         desc: str = "scoring", ended: list[bool] | None = None) -> torch.Tensor:
    """`scorer.score_members` in chunks, with a progress bar: (answers, members)."""
    chunk = batch_size * 4
    ended = ended if ended is not None else [True] * len(answers)
    parts = [scorer.score_members(prompts[i:i + chunk], answers[i:i + chunk], ended[i:i + chunk],
                                  batch_size=batch_size, raw=raw)
             for i in tqdm(range(0, len(answers), chunk), desc=desc, unit="chunk", leave=False)]
    return torch.cat(parts) if parts else torch.zeros(0, scorer.members)


def by_ranking(rankings: list[Ranking], flat: list) -> list[list]:
    """A flat list over every answer of every ranking, cut back into one list per ranking."""
    out, at = [], 0
    for r in rankings:
        out.append(flat[at:at + len(r.answers)])
        at += len(r.answers)
    return out


def _flat_inputs(rankings: list[Ranking]) -> tuple[list, list[str], list[bool]]:
    return ([r.prompt for r in rankings for _ in r.answers], [a for r in rankings for a in r.answers],
            [e for r in rankings for e in r.answer_ended()])


def score_rankings(scorer, rankings: list[Ranking], batch_size: int = 16, raw: bool = True,
                   desc: str = "scoring") -> list[list[float]]:
    """Scores of each ranking's answers, in order (raw scores by default: what the loss saw)."""
    prompts, answers, ended = _flat_inputs(rankings)
    return by_ranking(rankings, score_answers(scorer, prompts, answers, batch_size, raw, desc, ended))


def score_ranking_members(scorer, rankings: list[Ranking], batch_size: int = 16, raw: bool = True,
                          desc: str = "scoring") -> torch.Tensor:
    """(answers, members): every member's score of every answer of the rankings, flat, in order."""
    prompts, answers, ended = _flat_inputs(rankings)
    return score_member_answers(scorer, prompts, answers, batch_size, raw, desc, ended)


def member_metrics(rankings: list[Ranking], members: torch.Tensor, bins: int = 10) -> list[dict]:
    """Each ensemble member's held-out accuracy, loss and expected calibration error, from `members`
    (answers, M) as `score_ranking_members` gives them."""
    out = []
    for m in range(members.shape[1]):
        got = pair_metrics(rankings, by_ranking(rankings, members[:, m].tolist()), bins)
        out.append({"member": m, "pairs": got["pairs"], "accuracy": got.get("accuracy"), "loss": got.get("loss"),
                    "expected_calibration_error": got.get("expected_calibration_error")})
    return out


def _pairs(rankings: list[Ranking], scores: list[list[float]]):
    """(diff = score_better - score_worse, rank distance, reviewer, len_better, len_worse) per pair."""
    for r, s in zip(rankings, scores):
        for i, j, d in r.pairs:
            yield s[i] - s[j], d, r.reviewer, len(r.answers[i]), len(r.answers[j])


def pair_win(diff: float) -> float:
    """1 if the better answer scored higher, 0 if lower; a tie is a coin flip (a constant model scores 0.5, not 0)."""
    return 1.0 if diff > 0 else 0.5 if diff == 0 else 0.0


def accuracy_cells(rankings: list[Ranking], scores: list[list[float]]) -> dict[str, list[float]]:
    """Per prompt: [pairs won, pairs], the clusters `clustered_ratio` takes."""
    cells = defaultdict(lambda: [0.0, 0])
    for r, s in zip(rankings, scores):
        for better, worse, _ in r.pairs:
            cells[r.prompt_key][0] += pair_win(s[better] - s[worse])
            cells[r.prompt_key][1] += 1
    return dict(cells)


def clustered_ratio(cells: dict[str, list[float]], minus: dict[str, list[float]] | None = None) -> tuple[float, float]:
    """sum(hits) / sum(count) over clusters (prompts), with its cluster standard error; `minus`: a
    paired difference against another scorer on the same prompts and pairs. `cells`: {prompt: [hits, count]}."""
    keys = sorted(cells)
    y = [cells[k][0] - (minus[k][0] if minus else 0.0) for k in keys]
    n = [cells[k][1] for k in keys]
    total, m = sum(n), len(keys)
    if not total:
        return float("nan"), float("nan")
    est = sum(y) / total
    se = math.sqrt(m / max(1, m - 1) * sum((yi - est * ni) ** 2 for yi, ni in zip(y, n))) / total
    return est, se


def _accuracy(diffs: list[float]) -> float:
    return sum(pair_win(x) for x in diffs) / len(diffs)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def calibration_table(diffs: list[float], bins: int) -> tuple[list[dict], float]:
    """Predicted P(first answer better) = sigmoid(diff) against how often it was, in equal-width bins.

    Each pair is counted in both orders ((p, 1) and (1 - p, 0)); otherwise every observed value
    would be 1 and the table would say nothing. Returns the rows and the expected calibration error.
    """
    points = [(_sigmoid(x), 1.0) for x in diffs] + [(1 - _sigmoid(x), 0.0) for x in diffs]
    rows = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [(p, y) for p, y in points if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        row = {"bin": [round(lo, 3), round(hi, 3)], "count": len(inside)}
        if inside:
            row["mean_predicted"] = sum(p for p, _ in inside) / len(inside)
            row["observed"] = sum(y for _, y in inside) / len(inside)
        rows.append(row)
    ece = sum(r["count"] * abs(r["mean_predicted"] - r["observed"]) for r in rows if r["count"]) / len(points)
    return rows, ece


def pair_metrics(rankings: list[Ranking], scores: list[list[float]], bins: int = 10) -> dict:
    """Accuracy, loss, accuracy by rank distance and by reviewer, calibration, and the length baseline."""
    pairs = list(_pairs(rankings, scores))
    if not pairs:
        return {"pairs": 0}
    diffs = [p[0] for p in pairs]
    by_distance, by_reviewer = defaultdict(list), defaultdict(list)
    for diff, dist, reviewer, _lb, _lw in pairs:
        by_distance[f"{dist:g}"].append(diff)
        if reviewer is not None:
            by_reviewer[reviewer].append(diff)
    # "The longer answer wins" (length in characters): reward models often learn little more.
    length = [float(lb - lw) for *_rest, lb, lw in pairs]
    table, ece = calibration_table(diffs, bins)
    out = {
        "rankings": len(rankings),
        "pairs": len(pairs),
        "accuracy": _accuracy(diffs),
        "loss": sum(-math.log(max(_sigmoid(x), 1e-12)) for x in diffs) / len(diffs),
        "mean_score_gap": sum(diffs) / len(diffs),
        "length_baseline_accuracy": _accuracy(length),
        "accuracy_by_rank_distance": {k: {"pairs": len(v), "accuracy": _accuracy(v)}
                                      for k, v in sorted(by_distance.items(), key=lambda kv: float(kv[0]))},
        "calibration": table,
        "expected_calibration_error": ece,
    }
    if by_reviewer:
        out["accuracy_by_reviewer"] = {k: {"pairs": len(v), "accuracy": _accuracy(v)}
                                       for k, v in sorted(by_reviewer.items())}
    return out


def plot_evaluation(metrics: dict, normalized_scores: list[float], path: str | Path) -> Path:
    """Calibration (reliability diagram) beside accuracy by rank distance and the score histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 4))
    rows = [r for r in metrics.get("calibration", []) if r["count"]]
    ax1.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    if rows:
        ax1.plot([r["mean_predicted"] for r in rows], [r["observed"] for r in rows], marker="o", label="model")
    ax1.set(xlabel="predicted P(first answer preferred) = sigmoid(score gap)", ylabel="observed frequency",
            title=f"calibration (ECE {metrics.get('expected_calibration_error', float('nan')):.3f})",
            xlim=(0, 1), ylim=(0, 1))
    ax1.legend(loc="upper left")
    dist = metrics.get("accuracy_by_rank_distance", {})
    ax2.bar(list(dist), [v["accuracy"] for v in dist.values()])
    ax2.axhline(metrics.get("length_baseline_accuracy", 0.5), color="orange", linestyle="--", label="longer wins")
    ax2.axhline(0.5, color="grey", linewidth=1)
    ax2.set(xlabel="rank distance", ylabel="held-out pairwise accuracy", ylim=(0, 1),
            title=f"accuracy {metrics.get('accuracy', float('nan')):.3f} on {metrics.get('pairs', 0)} pairs")
    ax2.legend(loc="lower right")
    ax3.hist(normalized_scores, bins=30)
    ax3.set(xlabel="normalised reward", ylabel="answers", title="normalisation sample (mean 0, std 1)")
    fig.tight_layout()
    return save_figure(fig, path)
