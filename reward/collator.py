"""Batches of whole rankings: every answer of every ranking in the batch, scored once.

A batch of B rankings with K_b answers each becomes N = sum(K_b) padded sequences, plus the
index bookkeeping the losses need to find each ranking's answers and pairs again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.data.data_collator import DataCollatorMixin
from trl.trainer.utils import pad


@dataclass
class RankingCollator(DataCollatorMixin):
    """Rows of `reward.data.to_dataset` -> one flat, right-padded batch of answers.

    Returns input_ids/attention_mask (N, L); `group` (N,) the ranking of each answer; `ranks` (N,)
    (0 where unknown); `better`/`worse` (P,) answer indices into the N rows and `distance` (P,)
    each pair's distance (strength or rank distance); `weight` (B,) each ranking's share in the loss,
    indexed by `group`; and, when some row has a `margin` column, `margin` (P,): a pair's own margin
    in reward logits, NaN where it has none; and, when the rows have a `bootstrap` column (an
    ensemble's training set), `bootstrap` (B, M): each ranking's bootstrap count for each member.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids, group, ranks, better, worse, distance, weight, margin = [], [], [], [], [], [], [], []
        offset = 0
        for g, ex in enumerate(examples):
            k = len(ex["answer_ids"])
            ids.extend(torch.tensor(a, dtype=torch.long) for a in ex["answer_ids"])
            group.extend([g] * k)
            ranks.extend(ex["ranks"] if ex["ranks"] else [0] * k)
            better.extend(offset + i for i in ex["better"])
            worse.extend(offset + j for j in ex["worse"])
            distance.extend(ex["distance"])
            weight.append(ex.get("weight", 1.0))  # rows made before weights existed count once
            margin.extend(ex.get("margin") or [float("nan")] * len(ex["better"]))
            offset += k
        own_margins = any(ex.get("margin") for ex in examples)
        batch = {
            "input_ids": pad(ids, padding_value=self.pad_token_id, padding_side="right",
                             pad_to_multiple_of=self.pad_to_multiple_of),
            "attention_mask": pad([torch.ones_like(a) for a in ids], padding_value=0, padding_side="right",
                                  pad_to_multiple_of=self.pad_to_multiple_of),
            "group": torch.tensor(group, dtype=torch.long),
            "ranks": torch.tensor(ranks, dtype=torch.long),
            "better": torch.tensor(better, dtype=torch.long),
            "worse": torch.tensor(worse, dtype=torch.long),
            "distance": torch.tensor(distance, dtype=torch.float),
            "weight": torch.tensor(weight, dtype=torch.float),
        }
        if own_margins:
            batch["margin"] = torch.tensor(margin, dtype=torch.float)
        if examples and "bootstrap" in examples[0]:
            batch["bootstrap"] = torch.tensor([ex["bootstrap"] for ex in examples], dtype=torch.float)
        return batch
