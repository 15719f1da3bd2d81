"""One method over several training seeds: `ours@3.5e-4`, `ours+seed=1@3.5e-4` and `ours+seed=2@3.5e-4`
are one setting run three times, so their figures are summarised together, with standard errors over
seeds. Gain per nat of KL is taken per run and then averaged: one setting lands anywhere between KL
0.27 and 0.61 depending on its seed (2026-11-30), and a gain only compares at its own KL."""

from __future__ import annotations

from benchmarks.variants import parse_variant
from ranktune.stats import mean_se


def setting_of(spec: str) -> str:
    """The variant without its seed: `ours+seed=1+lora_r=8@3e-4` -> `ours+lora_r=8@3e-4`."""
    base, overrides, learning_rate = parse_variant(spec)
    rest = "".join(f"+{k}={v}" for k, v in overrides if k != "seed")
    return base + rest + (f"@{learning_rate}" if learning_rate else "")


def by_setting(runs: dict[str, dict]) -> dict[str, dict]:
    """`runs`: method spec -> {"episodes_per_second", "peak_rss_mib", "gain", "kl"} of one run each.
    Returns setting -> the runs' count and (mean, s.e.) of each figure and of gain / KL."""
    groups: dict[str, list[dict]] = {}
    for spec, r in runs.items():
        groups.setdefault(setting_of(spec), []).append(r)
    out = {}
    for setting, rs in groups.items():
        per_nat = [r["gain"] / r["kl"] if r.get("kl") and r["kl"] > 0 else None for r in rs]
        out[setting] = {"runs": len(rs), "gain_per_kl": mean_se(per_nat),
                        **{k: mean_se([r.get(k) for r in rs]) for k in ("episodes_per_second", "peak_rss_mib",
                                                                       "gain", "kl")}}
    return out


def versus(groups: dict[str, dict], baseline: str) -> dict[str, dict]:
    """Each setting against the baseline's: speed and memory ratios of the means, and whether its gain per
    nat of KL is above the baseline's by more than one standard error of the difference."""
    base = groups[baseline]
    out = {}
    for setting, g in groups.items():
        if setting == baseline:
            continue
        (m, se), (bm, bse) = g["gain_per_kl"], base["gain_per_kl"]
        diff_se = (se ** 2 + bse ** 2) ** 0.5
        out[setting] = {"speed": g["episodes_per_second"][0] / base["episodes_per_second"][0],
                        "memory": g["peak_rss_mib"][0] / base["peak_rss_mib"][0],
                        "gain_per_kl_difference": (m - bm, diff_se),
                        "above_by_one_se": m - bm > diff_se}
    return out
