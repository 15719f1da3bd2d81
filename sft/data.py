"""Demonstrations -> the prompt/completion text datasets SFTTrainer trains on."""

from __future__ import annotations

import random

from datasets import Dataset

from ranktune.errors import InputError
from ranktune.prompting import render_answer, render_prompt


def to_text_dataset(records: list[dict], tokenizer) -> Dataset:
    """Render each record with the pipeline's shared prompt convention.

    SFTTrainer then masks the prompt part, so the loss is on the answer (and its EOS) only.
    """
    return Dataset.from_list([
        {"prompt": render_prompt(tokenizer, r["prompt"]), "completion": render_answer(tokenizer, r["completion"])}
        for r in records
    ])


def split_records(records: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded split; at least one example on each side when eval is asked for."""
    if not 0.0 <= eval_fraction < 1.0:
        raise InputError(f"must be in [0, 1), got {eval_fraction}", field="eval_fraction")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = int(round(len(records) * eval_fraction))
    if eval_fraction > 0:
        n_eval = max(1, n_eval)
    if len(records) - n_eval < 1:
        raise InputError(f"only {len(records)} demonstration(s): too few to hold out {eval_fraction:.0%} "
                         "for evaluation", field="data")
    eval_idx = set(order[:n_eval])
    train = [records[i] for i in order if i not in eval_idx]
    held_out = [records[i] for i in sorted(eval_idx)]
    return train, held_out
