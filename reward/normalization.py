"""Fit the reward normalisation: gain and bias so the SFT policy's answers score mean 0, std 1.

PPO's value head and KL coefficient are tuned for rewards on that scale ("The N implementation
details of RLHF with PPO", detail on reward normalisation); a raw reward model's offset is
arbitrary, since the pairwise loss only sees differences.

An ensemble's members are fitted one by one (`members`: each member's gain and bias), and the
top-level gain and bias are the fit of the members' raw mean, so a reader of the top level alone
(an older one, or one given a single model) still gets mean 0, std 1.
"""

from __future__ import annotations

import math
import random

from ranktune.jsonl import write_json_atomic
from ranktune.scoring import NORMALIZATION_FILE


def fit_normalization(raw_scores: list[float]) -> dict:
    """{gain, bias} with gain * raw + bias having mean 0 and (population) std 1 over `raw_scores`."""
    n = len(raw_scores)
    mean = sum(raw_scores) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in raw_scores) / n)
    gain = 1.0 / std if std > 1e-8 else 1.0  # all scores equal: only centre them
    return {"gain": gain, "bias": -mean * gain, "raw_mean": mean, "raw_std": std, "samples": n}


def fit_members(raw_members) -> tuple[dict, list[dict]]:
    """raw_members (n, M): the fit of the members' raw mean, and each member's own {gain, bias}."""
    fitted = fit_normalization(raw_members.mean(dim=-1).tolist())
    members = []
    for m in range(raw_members.shape[1]):
        own = fit_normalization(raw_members[:, m].tolist())
        members.append({"gain": own["gain"], "bias": own["bias"]})
    return fitted, members


def sample_answers(prompts: list, answers: list[str], n: int, seed: int, ended: list[bool] | None = None
                   ) -> tuple[list, list[str], list[bool]]:
    """At most `n` distinct (prompt, answer, ended) triples, seeded, so normalisation costs a bounded time."""
    ended = ended if ended is not None else [True] * len(answers)
    seen, unique = set(), []
    for p, a, e in zip(prompts, answers, ended):
        key = (repr(p), a, e)
        if key not in seen:
            seen.add(key)
            unique.append((p, a, e))
    if len(unique) > n:
        unique = random.Random(seed).sample(unique, n)
    return [p for p, _, _ in unique], [a for _, a, _ in unique], [e for _, _, e in unique]


def write_normalization(folder, fitted: dict, source: str) -> None:
    write_json_atomic(folder / NORMALIZATION_FILE, {**fitted, "source": source,
                                                     "formula": "normalised = gain * raw + bias"})
