"""Rankings -> the train/test split and the token datasets the trainer batches.

Each dataset row is one whole ranking (its K answers, tokenized once, and its pairs), so a batch
never holds part of a ranking: the collator (reward/collator.py) scores every answer once and
the loss uses all C(K,2) pairs of each ranking, the way InstructGPT trains.
"""

from __future__ import annotations

import json
import math
import random

from datasets import Dataset

from ranktune.errors import InputError
from ranktune.prompting import render_answer, render_prompt
from reward.records import Ranking


def split_by_prompt(rankings: list[Ranking], eval_fraction: float, seed: int) -> tuple[list[Ranking], list[Ranking]]:
    """Hold out a seeded share of the distinct prompts: no prompt is in both train and test."""
    if not 0.0 <= eval_fraction < 1.0:
        raise InputError(f"must be in [0, 1), got {eval_fraction}", field="eval_fraction")
    keys = sorted({r.prompt_key for r in rankings})
    random.Random(seed).shuffle(keys)
    n_eval = int(round(len(keys) * eval_fraction))
    if eval_fraction > 0:
        n_eval = max(1, n_eval)
    if len(keys) - n_eval < 1:
        raise InputError(f"only {len(keys)} distinct prompt(s): too few to hold out {eval_fraction:.0%} of them "
                         "for evaluation (set --eval_fraction 0 to train on all)", field="data")
    test_keys = set(keys[:n_eval])
    train = [r for r in rankings if r.prompt_key not in test_keys]
    test = [r for r in rankings if r.prompt_key in test_keys]
    return train, test


def subsample(rankings: list[Ranking], n: int | None, seed: int) -> list[Ranking]:
    if n is None or n >= len(rankings):
        return rankings
    if n < 1:
        raise InputError(f"must be at least 1, got {n}", field="max_train_rankings")
    keep = sorted(random.Random(seed).sample(range(len(rankings)), n))
    return [rankings[i] for i in keep]


def ungroup(rankings: list[Ranking]) -> list[Ranking]:
    """Every pair as its own two-answer ranking, so the sampler shuffles a ranking's pairs apart.

    Only for comparison with the grouped default (`group_by_ranking: false`).
    """
    return [Ranking(r.prompt, [r.answers[i], r.answers[j]], [(0, 1, d)], [1, 2], r.reviewer, r.ranking_id, r.where,
                    [r.answer_ended()[i], r.answer_ended()[j]], r.weight, None if m is None else [m])
            for r in rankings for (i, j, d), m in zip(r.pairs, r.pair_margins())]


def model_texts(tokenizer, ranking: Ranking) -> list[str]:
    """The shared convention (as `RewardScorer.texts`): rendered prompt + answer + EOS when the model
    stopped by itself; an answer cut off at max_new_tokens gets no EOS, exactly as PPO will score it."""
    head = render_prompt(tokenizer, ranking.prompt)
    return [head + (render_answer(tokenizer, a) if e else a) for a, e in zip(ranking.answers, ranking.answer_ended())]


def tokenize(tokenizer, texts: list[str], max_length: int | None) -> tuple[list[list[int]], int]:
    """Token ids, cut from the left past `max_length`: the answer's end is where the score is read
    (`RewardScorer` cuts the same way). Returns the ids and how many texts were cut."""
    full = tokenizer(texts, add_special_tokens=False)["input_ids"]
    if max_length is None:
        return full, 0
    return [ids[-max_length:] for ids in full], sum(len(ids) > max_length for ids in full)


def _poisson1(rng: random.Random) -> int:
    """A draw of Poisson(1) (Knuth's method: multiply uniforms until the product falls below e^-1)."""
    k, product, limit = 0, rng.random(), math.exp(-1.0)
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def bootstrap_counts(ranking: Ranking, members: int, seed: int) -> list[int]:
    """How often `ranking` is in each member's bootstrap sample: Poisson(1) per member (the online
    bootstrap, Oza & Russell 2001), drawn from the seed and the ranking itself, so a rerun or a resumed
    run gives every ranking the same counts whatever order the rankings come in."""
    key = json.dumps([seed, ranking.ranking_id, ranking.reviewer, ranking.prompt, ranking.answers,
                      ranking.ranks, [list(p) for p in ranking.pairs]], sort_keys=True, default=str)
    rng = random.Random(f"bootstrap:{key}")  # a str seed is hashed with SHA-512: the same on every machine
    return [_poisson1(rng) for _ in range(members)]


def to_dataset(rankings: list[Ranking], tokenizer, max_length: int | None, ensemble_size: int = 1,
               seed: int = 0) -> tuple[Dataset, int]:
    """One row per ranking: answer_ids (K lists), better/worse/distance (one per pair), ranks (K or []),
    weight (the ranking's share in the training loss); `margin` (one per pair, NaN where a pair has
    none) when some pair record brought its own (TRL's `margin`, in reward logits); and, for an
    ensemble (ensemble_size > 1), `bootstrap`: the ranking's bootstrap count for each member."""
    own_margins = any(r.margins is not None for r in rankings)
    rows, truncated = [], 0
    for r in rankings:
        ids, n_cut = tokenize(tokenizer, model_texts(tokenizer, r), max_length)
        truncated += n_cut
        rows.append({"answer_ids": ids, "better": [p[0] for p in r.pairs], "worse": [p[1] for p in r.pairs],
                     "distance": [float(p[2]) for p in r.pairs], "ranks": list(r.ranks or []),
                     "weight": float(r.weight)})
        if own_margins:
            rows[-1]["margin"] = [math.nan if m is None else float(m) for m in r.pair_margins()]
        if ensemble_size > 1:
            rows[-1]["bootstrap"] = bootstrap_counts(r, ensemble_size, seed)
    return Dataset.from_list(rows), truncated
