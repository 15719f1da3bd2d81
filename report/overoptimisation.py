"""The report's "Over-optimisation" section: gold and proxy reward against KL to the SFT policy for a
long PPO run on a single reward model and on an ensemble optimised conservatively (Gao et al. 2022's
figure; `benchmarks/overoptimisation.py --run NAME` writes runs/<run>/overoptimisation.json).
Nothing when the run has no such file.

Every PPO update logs its rollouts' KL, proxy score (what the run optimises) and gold score. The
updates of all runs are put in KL bins (equal widths up to the furthest KL the single-model runs
reach); within a bin each seed's updates are averaged, then the seeds give a mean and its standard
error, so a seed with many updates in one bin weighs as much as a seed with one.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from ranktune.plots import _figure, save_figure
from ranktune.stats import mean_se
from report.html import _img, _json, _num, _table, _td

FILE = "overoptimisation.json"
BINS = 6


def kl_edges(results: dict, bins: int = BINS) -> list[float]:
    """Bin edges from 0 to the largest KL the reference method's runs reach."""
    ref = results.get("reference", "single")
    top = max((u["kl"] for r in results["runs"] if r["method"] == ref for u in r["updates"]), default=0.0)
    top = top if top > 0 else max((u["kl"] for r in results["runs"] for u in r["updates"]), default=1.0)
    return [top * i / bins for i in range(bins + 1)]


def binned(results: dict, method: str, key: str, edges: list[float]) -> list[tuple[float, float, float, int] | None]:
    """Per bin: (mean KL, mean of `key` over seeds, its s.e., seeds) or None where no seed has an update there.
    Updates below 0 KL (noise of the first updates) go in the first bin, beyond the last edge in none."""
    out = []
    for lo, hi in zip(edges, edges[1:]):
        first = lo == edges[0]
        per_seed, kls = [], []
        for r in results["runs"]:
            if r["method"] != method:
                continue
            inside = [u for u in r["updates"] if (u["kl"] < hi or (hi == edges[-1] and u["kl"] <= hi))
                      and (u["kl"] >= lo or first)]
            if inside:
                per_seed.append(sum(u[key] for u in inside) / len(inside))
                kls.append(sum(u["kl"] for u in inside) / len(inside))
        if per_seed:
            m, se = mean_se(per_seed)
            out.append((sum(kls) / len(kls), m, se, len(per_seed)))
        else:
            out.append(None)
    return out


def verdict(results: dict, edges: list[float] | None = None) -> dict | None:
    """Where the reference (single) model's gold peaks, and the conservative run's gold minus it at that
    bin and every later one: {peak_bin, rows: [(bin, diff, se)], higher: bool (every diff > its s.e.)}."""
    ref, cons = results.get("reference", "single"), results.get("conservative")
    if cons is None or not any(r["method"] == cons for r in results["runs"]):
        return None
    edges = edges or kl_edges(results)
    single, other = binned(results, ref, "gold", edges), binned(results, cons, "gold", edges)
    measured = [i for i, b in enumerate(single) if b is not None]
    if not measured:
        return None
    peak = max(measured, key=lambda i: single[i][1])
    rows = []
    for i in range(peak, len(edges) - 1):
        if single[i] is None or other[i] is None:
            continue
        se = math.sqrt(sum(0.0 if math.isnan(x) else x ** 2 for x in (single[i][2], other[i][2])))
        rows.append((i, other[i][1] - single[i][1], se))
    return {"peak_bin": peak, "peak_kl": (edges[peak], edges[peak + 1]), "rows": rows,
            "higher": bool(rows) and all(d > se for _, d, se in rows)}


def kl_figure(results: dict, path: Path) -> Path | None:
    if not results.get("runs"):
        return None
    edges = kl_edges(results)
    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8))
    for ax, key, title in ((axes[0], "gold", "gold score (the simulated reviewers' rule)"),
                           (axes[1], "proxy", "proxy score (what the run optimises)")):
        for method in results["methods"]:
            points = [b for b in binned(results, method, key, edges) if b is not None]
            if points:
                ax.errorbar([p[0] for p in points], [p[1] for p in points],
                            yerr=[0.0 if math.isnan(p[2]) else p[2] for p in points], marker="o", capsize=3,
                            label=method)
        ax.set_xlabel("KL to the SFT policy (nats per answer)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"over-optimisation: {results.get('seeds', '?')} seeds, ± 1 s.e. over seeds", fontsize=10)
    return save_figure(fig, path)


def overoptimisation_section(run: Path, figures: Path) -> str:
    results = _json(run / FILE)
    if not results or not results.get("runs"):
        return ""
    edges = kl_edges(results)
    parts = ["<p>Long PPO runs from the same SFT policy: on a single reward model, and on an ensemble whose "
             "score is taken conservatively. Each point is the rollouts of the updates whose KL falls in one bin, "
             "averaged per seed; bars are one standard error over seeds.</p>",
             _img(kl_figure(results, figures / "overoptimisation.png"), "gold and proxy against KL")]
    header = ["KL bin"] + [f"{html.escape(m)}: gold" for m in results["methods"]]
    columns = {m: binned(results, m, "gold", edges) for m in results["methods"]}
    rows = []
    for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
        cells = [_td(f"{_num(lo)}–{_num(hi)}")]
        for m in results["methods"]:
            b = columns[m][i]
            cells.append(_td("" if b is None else f"{_num(b[1])} ± {_num(None if math.isnan(b[2]) else b[2])}"))
        rows.append(cells)
    parts.append(_table(header, rows))
    v = verdict(results, edges)
    if v:
        diffs = ", ".join(f"{_num(d)} ± {_num(se)}" for _, d, se in v["rows"])
        parts.append(f"<p><b>{'The conservative run keeps more gold' if v['higher'] else 'Not shown'}</b>: the "
                     f"single model's gold peaks at KL {_num(v['peak_kl'][0])}–{_num(v['peak_kl'][1])}; from there "
                     f"on, {html.escape(results['conservative'])} minus {html.escape(results.get('reference', 'single'))}"
                     f" is {diffs or 'not measured'} (bin by bin){'' if v['higher'] else ', not above one standard error in every bin'}.</p>")
    return "".join(parts)
