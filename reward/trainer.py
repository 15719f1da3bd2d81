"""TRL's RewardTrainer, taught to learn from whole rankings (pairwise or Plackett-Luce).

TRL batches independent (chosen, rejected) pairs. Here a training example is a whole ranking:
its K answers are scored in one forward pass and the loss uses every pair of it (or the whole
ordering, listwise). Everything else — model and LoRA set-up, pad handling, dropout off,
checkpoints, logging — is RewardTrainer's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from trl import RewardConfig, RewardTrainer

from reward.collator import RankingCollator
from reward.losses import listwise_loss, pairwise_loss

LOSS_TYPES = ("pairwise", "listwise")


@dataclass
class RankingRewardConfig(RewardConfig):
    """RewardConfig plus how rankings become a loss. `per_device_train_batch_size` counts rankings."""

    loss_type: str = field(
        default="pairwise",
        metadata={"help": "pairwise: -log sigmoid(r_better - r_worse) over every pair of a ranking (InstructGPT); "
                          "listwise: Plackett-Luce over the K answers, ties grouped (needs ranks)."})
    group_by_ranking: bool = field(
        default=True,
        metadata={"help": "Keep all pairs of one ranking in one batch (InstructGPT). false: shuffle pairs apart."})
    margin_scale: float = field(
        default=0.0,
        metadata={"help": "Pairwise only: require r_better - r_worse > margin_scale * distance, the pair's strength "
                          "(pairwise questions: 1-3) or else its rank distance (0 = off). A pair record's own "
                          "`margin` (TRL's field, in reward logits) is used as it is instead."})
    lora_top_layers: int = field(
        default=0, metadata={"help": "With LoRA (use_peft): adapters on the top N transformer layers only, so backward "
                                     "passes stop there (0 = every layer)."})
    num_train_epochs: float = field(
        default=1.0, metadata={"help": "Passes over the data; one, as the reward models of InstructGPT and "
                                       "'N implementation details of RLHF' (more overfits)."})

    def __post_init__(self):
        super().__post_init__()
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got '{self.loss_type}'")
        if self.loss_type == "listwise" and not self.group_by_ranking:
            raise ValueError("loss_type listwise needs whole rankings: set group_by_ranking true")


def pair_margins(margin_scale: float, distance: torch.Tensor, own: torch.Tensor | None) -> torch.Tensor | None:
    """(P,) what each pair's score difference must exceed: its own `margin` (TRL's, in reward logits) where
    the data gave one (NaN elsewhere), else margin_scale * its distance; None when no pair has either."""
    scaled = margin_scale * distance if margin_scale else None
    if own is None or bool(torch.isnan(own).all()):
        return scaled
    return torch.where(torch.isnan(own), scaled if scaled is not None else torch.zeros_like(own), own)


class RankingRewardTrainer(RewardTrainer):
    """Trains on datasets made by `reward.data.to_dataset` (one row per ranking)."""

    _tag_names = ["trl", "reward-trainer", "ranktune"]

    def __init__(self, model, args: RankingRewardConfig, train_dataset, eval_dataset=None,
                 processing_class=None, data_collator=None, **kwargs):
        if data_collator is None:
            data_collator = RankingCollator(pad_token_id=processing_class.pad_token_id,
                                            pad_to_multiple_of=args.pad_to_multiple_of)
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, data_collator=data_collator, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if "answer_ids" not in dataset.column_names:
            raise ValueError(f"{dataset_name} dataset: expected rows made by reward.data.to_dataset")
        return dataset  # tokenized, cut to max_length and grouped already

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["answer_ids", "better", "worse", "distance", "ranks", "weight", "margin"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        group, ranks = inputs["group"], inputs["ranks"]  # (N,)
        better, worse, distance = inputs["better"], inputs["worse"], inputs["distance"]  # (P,)
        # (B,) Evaluation weighs every ranking 1, so that eval_loss compares across label_weighting settings.
        weights = inputs.get("weight") if mode == "train" else None
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
        rewards = outputs.logits.squeeze(-1)  # (N,) read at each answer's last real token, its EOS

        if self.args.loss_type == "listwise":
            loss = listwise_loss(rewards, ranks, group, weights)
        else:
            loss = pairwise_loss(rewards, better, worse, group, pair_margins(self.args.margin_scale, distance,
                                                                              inputs.get("margin")), weights)
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean(rewards**2)

        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        with torch.no_grad():
            # Sums over every process: ranks hold different numbers of answers and pairs (K varies,
            # ties give none), so per-process tensors cannot be gathered, and a collective only some
            # processes reach would hang.
            r = rewards.detach().float()
            diff = r[better] - r[worse]  # (P,)
            n, s1, s2, pairs, correct, margin = self.accelerator.reduce(torch.stack([
                r.new_tensor(r.numel()), r.sum(), (r * r).sum(),
                r.new_tensor(diff.numel()), (diff > 0).float().sum(), diff.sum()]), "sum").tolist()
            mean = s1 / max(n, 1)
            self._metrics[mode]["mean_reward"].append(mean)
            self._metrics[mode]["std_reward"].append(max(0.0, (s2 - n * mean * mean) / (n - 1)) ** 0.5 if n > 1 else 0.0)
            if pairs:
                self._metrics[mode]["accuracy"].append(correct / pairs)
                self._metrics[mode]["margin"].append(margin / pairs)
        return (loss, outputs) if return_outputs else loss
