"""Small statistics every benchmark and report shares (one definition, so their tables agree)."""

from __future__ import annotations

import math
import statistics


def mean_se(values) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n)) of the values that are numbers; None and NaN
    are left out. NaN for the error with fewer than two values, for both with none."""
    xs = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not xs:
        return float("nan"), float("nan")
    m = statistics.fmean(xs)
    return m, statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")
