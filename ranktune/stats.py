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


def t_interval(mean: float, se: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval for a mean over n independent units with standard error se (NaNs when there
    are fewer than two units or no error): with 24 held-out prompts a 95% interval is ±2.07 s.e., not ±1.96."""
    from scipy.stats import t

    if n is None or n < 2 or se is None or not math.isfinite(se) or not math.isfinite(mean):
        return float("nan"), float("nan")
    half = float(t.ppf(0.5 + level / 2, n - 1)) * se
    return mean - half, mean + half


def gold_gain_verdict(ev: dict) -> tuple[str, str]:
    """(one sentence, status) on the tuned policy's held-out gold gain over its start, from the metrics
    of ranktune.policy_eval.summarize(). status: "established" or "worse" when the 95% interval over
    prompts excludes 0, "not established" when it includes it, "unknown" with fewer than two prompts.
    The gold score is the simulated reviewers' rule, which no model trained on, so this is the
    figure that says whether tuning helped rather than only pleased the reward model."""
    gain = ev["ppo_gold"] - ev["sft_gold"]
    se, n = ev.get("gold_gain_se"), ev.get("prompts") or 0
    lo, hi = t_interval(gain, se, n)
    where = f"{n} held-out prompts x {ev.get('samples_per_prompt', 1)} answers"
    if lo != lo:  # NaN: no interval
        return f"gold score gain {gain:+.3f} on {where}: too few prompts for an interval", "unknown"
    status = "established" if lo > 0 else "worse" if hi < 0 else "not established"
    says = {"established": "an improvement beyond noise (the interval excludes 0)",
            "worse": "worse than the start beyond noise (the interval excludes 0)",
            "not established": "not established (the interval includes 0: this could be noise)"}[status]
    return (f"gold score gain {gain:+.3f}, 95% interval {lo:+.3f} to {hi:+.3f} "
            f"({gain / se if se else float('nan'):.1f} standard errors, {where}): {says}"), status
