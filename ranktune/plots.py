"""PNG plots of training curves, written atomically (people would rather look than read)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        _figure().close(fig)
    return path


def plot_curves(records: Iterable[dict], keys: list[str], path: str | Path, x_key: str = "step",
                title: str = "") -> Path:
    """One panel per metric in `keys`, plotted against `x_key`; records missing a key are skipped."""
    plt = _figure()
    records = list(records)
    keys = [k for k in keys if any(k in r for r in records)] or keys[:1]
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.4 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        pts = [(r[x_key], r[key]) for r in records if key in r and x_key in r and r[key] is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, markersize=3)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(x_key)
    if title:
        axes[0, 0].set_title(title)
    return save_figure(fig, path)
