"""Demonstration batches for PPO-ptx."""

from __future__ import annotations

import random
from typing import Iterator

import torch

from ranktune.prompting import render_answer, render_prompt


def ptx_batches(records: list[dict], tokenizer, batch_size: int, max_length: int, seed: int
                ) -> Iterator[dict[str, torch.Tensor]]:
    """Endless seeded batches of demonstrations; loss only on the answer tokens (labels -100 elsewhere)."""
    rows = []
    for r in records:
        head = tokenizer(render_prompt(tokenizer, r["prompt"]), add_special_tokens=False)["input_ids"]
        answer = tokenizer(render_answer(tokenizer, r["completion"]), add_special_tokens=False)["input_ids"]
        ids = (head + answer)[-max_length:]
        n_answer = min(len(answer), len(ids))
        rows.append((ids, [-100] * (len(ids) - n_answer) + ids[-n_answer:]))
    rng = random.Random(seed)
    while True:
        batch = rng.sample(rows, min(batch_size, len(rows)))
        width = max(len(ids) for ids, _ in batch)
        pad = tokenizer.pad_token_id
        yield {"input_ids": torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch]),
               "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch]),
               "labels": torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])}
