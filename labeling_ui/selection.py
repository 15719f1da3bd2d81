"""Choosing which candidate items reviewers get (`python -m labeling_ui generate --select ...`).

Reviewers' time is the scarce part of the pipeline, so a round can answer more prompts than it
sends (the pool) and send the ones a ranking teaches the reward model most about:

    uncertainty(item)   an ensemble of M reward models scores each of the item's K answers; for
                        every answer pair (i, j) each member m says P(i beats j) = sigmoid(r_i^m - r_j^m);
                        the pair's BALD information gain (Houlsby et al. 2011) is
                            H(mean_m p_m) - mean_m H(p_m)        (H: binary entropy, in nats)
                        the members' *disagreement*: 0 when they all say the same (however unsure
                        each is: a coin-flip pair they agree on is noise, not something to learn),
                        at most ln 2 when half are sure one way and half the other. The item's
                        score is the MAX over its pairs: reviewers rank all K answers at once, so
                        one contested pair is worth the item; a mean would dilute it among the
                        K(K-1)/2 - 1 pairs everyone agrees on (with K = 4, one pair in six).
    choose(...)         greedy: each step takes the candidate with the highest
                            uncertainty / max(uncertainty) - diversity * max cos(prompt, prompts chosen)
                        so a batch of near-identical prompts (one contested topic, asked five ways)
                        is not sent five times. The uncertainty is scaled by the pool's highest so
                        `diversity` means the same whatever the ensemble's units: 0.5 = a copy of a
                        chosen prompt must be half the top uncertainty more contested to win.
    embed(texts)        hashed character 3-gram counts (log-scaled, L2-normalised): cheap, no
                        dependency beyond numpy, and enough to see that two prompts share their words.

Pure numpy: the scores come in as an array (torch tensors are turned into one by the caller).
The greedy costs O(count * pool * DIM); fine for pools of thousands.
"""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

METHODS = ("order", "random", "uncertainty")
DIM = 2048  # hashed n-gram buckets
NGRAM = 3


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) in nats, elementwise; 0 at p = 0 or 1."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def pair_bald(scores: np.ndarray) -> np.ndarray:
    """scores (n, K, M): M members' scores of each item's K answers -> (n, P) BALD of every pair i < j,
    P = K(K-1)/2, in np.triu_indices(K, 1) order."""
    _, k, _ = scores.shape
    i, j = np.triu_indices(k, 1)
    p = 1 / (1 + np.exp(-(scores[:, i, :] - scores[:, j, :])))  # (n, P, M): member m's P(i beats j)
    bald = binary_entropy(p.mean(axis=-1)) - binary_entropy(p).mean(axis=-1)  # (n, P)
    return np.maximum(bald, 0.0)  # >= 0 by Jensen (H is concave); clip rounding below it


def item_uncertainty(scores: np.ndarray) -> np.ndarray:
    """scores (n, K, M) -> (n,): each item's most contested pair's BALD (the module docstring says why max)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 3 or scores.shape[1] < 2:
        raise ValueError(f"expected scores shaped (items, K >= 2 answers, members), got {scores.shape}")
    return pair_bald(scores).max(axis=-1)


def embed(texts: Sequence[str], dim: int = DIM) -> np.ndarray:
    """(len(texts), dim) float32, rows of unit length (an empty text: zeros), so a dot product is the cosine."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        s = " " + " ".join(text.lower().split()) + " "  # case and spacing do not make prompts different
        for g in range(len(s) - NGRAM + 1):
            out[row, zlib.crc32(s[g:g + NGRAM].encode("utf-8")) % dim] += 1  # crc32: the same in every process
    out = np.log1p(out)  # a word said ten times is not ten times the topic
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1)


def choose(uncertainty: Sequence[float], texts: Sequence[str], count: int, diversity: float,
           chosen_before: Sequence[str] = ()) -> list[int]:
    """Indices of `count` candidates (or all, if fewer), best first, by the greedy in the docstring.

    uncertainty (n,), texts (n,): the candidates; chosen_before: prompts already sent (the round's
    earlier items), which count as chosen for the similarity term. Ties go to the earlier candidate."""
    u = np.asarray(uncertainty, dtype=np.float64)  # (n,)
    top = u.max() if len(u) else 0.0
    value = u / top if top > 0 else np.zeros_like(u)  # (n,) in [0, 1]
    vectors = embed(list(texts))  # (n, DIM)
    similar = np.zeros(len(u))  # (n,): each candidate's largest cosine to anything chosen so far
    if len(chosen_before) and len(u):
        similar = (vectors @ embed(list(chosen_before)).T).max(axis=1)
    picked: list[int] = []
    free = np.ones(len(u), dtype=bool)
    for _ in range(min(count, len(u))):
        gain = np.where(free, value - diversity * similar, -np.inf)  # (n,)
        best = int(np.argmax(gain))  # the first of equal gains
        picked.append(best)
        free[best] = False
        similar = np.maximum(similar, vectors @ vectors[best])
    return picked


def draw(n: int, count: int, seed: int) -> list[int]:
    """`random`: `count` of n candidates (or all), in a seeded random order."""
    return [int(i) for i in np.random.default_rng(seed).permutation(n)[:count]]


def priority(rank: int) -> float:
    """What the store serves by (higher first): 1/rank for the rank-th item chosen in a round, so the
    round's items go out in the order chosen, ahead of unselected items (priority 0)."""
    return 1.0 / rank


def record(method: str, rank: int, pool: int, score: float | None = None) -> dict:
    """items.selection: how the item was chosen (`score`: its uncertainty in nats, for uncertainty)."""
    return {"method": method, "score": None if score is None else round(float(score), 6), "pool": pool, "rank": rank}


def summary(uncertainty: np.ndarray, chosen: Sequence[int]) -> dict:
    """For generate's summary: the pool's mean uncertainty against the chosen items' (nats)."""
    return {"pool_mean": round(float(np.mean(uncertainty)), 6),
            "chosen_mean": round(float(np.mean(uncertainty[list(chosen)])), 6) if len(chosen) else None}
