"""The report's "Choosing what to label" section: the reward model's gold agreement against the number
of rankings, for items sent in random order and for items chosen by the ensemble's disagreement
(`benchmarks/active_learning.py --run NAME` writes runs/<run>/active_learning.json). Nothing when the
run has no such file.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from ranktune.plots import _figure, save_figure
from report.html import _img, _json, _num, _table, _td
from ranktune.stats import mean_se

FILE = "active_learning.json"
LABELS = {"random": "random order", "uncertainty": "ensemble disagreement (BALD + diversity)"}


def curves(results: dict, split: str) -> dict[str, list[tuple[int, float, float]]]:
    """{method: [(budget, mean agreement, s.e.)]} over the seeds."""
    out = {}
    for m in results["methods"]:
        out[m] = []
        for b in results["budgets"]:
            xs = [p[split] for p in results["points"] if p["method"] == m and p["budget"] == b]
            if xs:
                out[m].append((b, *mean_se(xs)))
    return out


def budget_to_reach(curve: list[tuple[int, float]], target: float) -> float | None:
    """The smallest budget (linear between measured ones) at which a (budget, agreement) curve reaches `target`."""
    prev = None
    for budget, value in curve:
        if value >= target:
            if prev is None:
                return float(budget)
            frac = (target - prev[1]) / (value - prev[1])
            return prev[0] + frac * (budget - prev[0])
        prev = (budget, value)
    return None


def labels_saved(results: dict, split: str) -> dict | None:
    """Per seed: 1 - (rankings active selection needed to reach random's final agreement) / (rankings random
    order itself needed to first reach it); a seed where active never got there counts 0 saved. Random's own
    need is its final budget when its curve rises, less when it got there earlier: on a flat curve nothing
    is saved, however early active selection gets there. None without both methods."""
    if not {"random", "uncertainty"} <= set(results["methods"]):
        return None
    per_seed, reached = [], []
    for seed in sorted({p["seed"] for p in results["points"]}):
        by = {m: sorted((p["budget"], p[split]) for p in results["points"] if p["method"] == m and p["seed"] == seed)
              for m in ("random", "uncertainty")}
        if len(by["random"]) != len(results["budgets"]) or len(by["uncertainty"]) != len(results["budgets"]):
            continue
        target = by["random"][-1][1]
        baseline = budget_to_reach(by["random"], target)
        need = budget_to_reach(by["uncertainty"], target)
        reached.append(need is not None)
        per_seed.append(1 - need / baseline if need is not None else 0.0)
    if not per_seed:
        return None
    mean, se = mean_se(per_seed)
    return {"per_seed": per_seed, "mean": mean, "se": se, "reached": reached, "split": split}


def curve_figure(results: dict, split: str, path: Path) -> Path | None:
    data = curves(results, split)
    if not any(data.values()):
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for m, rows in data.items():
        ses = [0.0 if math.isnan(s) else s for _, _, s in rows]
        ax.errorbar([b for b, _, _ in rows], [v for _, v, _ in rows], yerr=ses, marker="o", capsize=3,
                    label=LABELS.get(m, m))
    ax.set_xscale("log", base=2)
    ax.set_xticks(results["budgets"], [str(b) for b in results["budgets"]])
    ax.set_xlabel("rankings the reward model was trained on")
    ax.set_ylabel(f"gold agreement on {split} items")
    ax.set_title(f"labels against reward-model quality ({results['seeds']} seeds, ± 1 s.e.)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def active_learning_section(run: Path, figures: Path) -> str:
    results = _json(run / FILE)
    if not results:
        return ""
    split = results.get("report_split", "test")
    data = curves(results, split)
    saved = labels_saved(results, split)
    parts = ["<p>Each point trains a reward-model ensemble on that many rankings from the simulated panel and "
             f"measures how often it orders held-out answer pairs as the gold rule does ({html.escape(split)} items, "
             "never chosen from or tuned on).</p>",
             _img(curve_figure(results, split, figures / "active_learning.png"), "gold agreement against rankings")]
    header = ["rankings"] + [LABELS.get(m, m) for m in data]
    rows = []
    for i, b in enumerate(results["budgets"]):
        cells = [_td(str(b))]
        for m in data:
            row = data[m][i] if i < len(data[m]) else None
            se = None if row is None or math.isnan(row[2]) else row[2]
            cells.append(_td(f"{_num(row[1])} ± {_num(se)}" if row else ""))
        rows.append(cells)
    parts.append(_table(header, rows))
    if saved:
        verdict = ("reached random's final agreement" if all(saved["reached"])
                   else f"reached it in {sum(saved['reached'])} of {len(saved['reached'])} seeds")
        parts.append(f"<p><b>Labels saved: {100 * saved['mean']:.0f}%</b> (s.e. {100 * saved['se']:.0f}%, per seed "
                     + ", ".join(f"{100 * s:.0f}%" for s in saved["per_seed"])
                     + f"): choosing by disagreement {verdict} with that share fewer rankings than random order "
                     f"needed to first reach it (at most {results['budgets'][-1]}).</p>")
    return "".join(parts)
