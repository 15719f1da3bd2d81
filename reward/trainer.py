"""TRL's RewardTrainer, taught to learn from whole rankings (pairwise or Plackett-Luce).

TRL batches independent (chosen, rejected) pairs. Here a training example is a whole ranking:
its K answers are scored in one forward pass and the loss uses every pair of it (or the whole
ordering, listwise). Everything else — model and LoRA set-up, pad handling, dropout off,
checkpoints, logging — is RewardTrainer's own.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from trl import RewardConfig, RewardTrainer

from reward.collator import RankingCollator
from reward.losses import ensemble_loss, listwise_loss, pairwise_loss

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
    ensemble_size: int = field(
        default=1, metadata={"help": "Reward-model members: one score-head row each on one shared base (one forward "
                                     "pass scores all), each trained on its own bootstrap weighting of the "
                                     "rankings (Poisson(1) per ranking, seeded). 1 = a single model."})

    def __post_init__(self):
        super().__post_init__()
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got '{self.loss_type}'")
        if self.loss_type == "listwise" and not self.group_by_ranking:
            raise ValueError("loss_type listwise needs whole rankings: set group_by_ranking true")
        if isinstance(self.ensemble_size, bool) or not isinstance(self.ensemble_size, int) or self.ensemble_size < 1:
            raise ValueError(f"ensemble_size must be a whole number of at least 1, got {self.ensemble_size!r}")


def pair_margins(margin_scale: float, distance: torch.Tensor, own: torch.Tensor | None) -> torch.Tensor | None:
    """(P,) what each pair's score difference must exceed: its own `margin` (TRL's, in reward logits) where
    the data gave one (NaN elsewhere), else margin_scale * its distance; None when no pair has either."""
    scaled = margin_scale * distance if margin_scale else None
    if own is None or bool(torch.isnan(own).all()):
        return scaled
    return torch.where(torch.isnan(own), scaled if scaled is not None else torch.zeros_like(own), own)


@contextlib.contextmanager
def _one_output_for_trl(model):
    """TRL's RewardTrainer refuses a model whose config says num_labels != 1. An ensemble's N outputs are
    its members' scores, each a reward: TRL is shown one label while it checks, then the N are put back."""
    config = getattr(model, "config", None)
    saved = (config.id2label, config.label2id) if config is not None else None
    if saved is not None and config.num_labels != 1:
        config.num_labels = 1
    try:
        yield
    finally:
        if saved is not None:
            config.id2label, config.label2id = saved


class RankingRewardTrainer(RewardTrainer):
    """Trains on datasets made by `reward.data.to_dataset` (one row per ranking)."""

    _tag_names = ["trl", "reward-trainer", "ranktune"]

    def __init__(self, model, args: RankingRewardConfig, train_dataset, eval_dataset=None,
                 processing_class=None, data_collator=None, **kwargs):
        if data_collator is None:
            data_collator = RankingCollator(pad_token_id=processing_class.pad_token_id,
                                            pad_to_multiple_of=args.pad_to_multiple_of)
        with _one_output_for_trl(model):
            super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                             processing_class=processing_class, data_collator=data_collator, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if "answer_ids" not in dataset.column_names:
            raise ValueError(f"{dataset_name} dataset: expected rows made by reward.data.to_dataset")
        return dataset  # tokenized, cut to max_length and grouped already

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["answer_ids", "better", "worse", "distance", "ranks", "weight", "margin",
                                      "bootstrap"]

    def _ranking_loss(self, rewards: torch.Tensor, inputs: dict, weights: torch.Tensor | None) -> torch.Tensor:
        """One member's loss on the batch: rewards (N,), weights (B,) per ranking or None."""
        if self.args.loss_type == "listwise":
            return listwise_loss(rewards, inputs["ranks"], inputs["group"], weights)
        margins = pair_margins(self.args.margin_scale, inputs["distance"], inputs.get("margin"))
        return pairwise_loss(rewards, inputs["better"], inputs["worse"], inputs["group"], margins, weights)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        better, worse = inputs["better"], inputs["worse"]  # (P,)
        # (B,) Evaluation weighs every ranking 1, so that eval_loss compares across label_weighting settings.
        weights = inputs.get("weight") if mode == "train" else None
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
        logits = outputs.logits  # (N, M): each member's score, read at each answer's last real token, its EOS
        # (B, M) how often each ranking is in each member's bootstrap sample (train only; M = 1 has none)
        bootstrap = inputs.get("bootstrap") if mode == "train" else None
        loss = ensemble_loss(logits, weights, bootstrap, lambda rewards, w: self._ranking_loss(rewards, inputs, w))
        rewards = logits.squeeze(-1) if logits.shape[-1] == 1 else logits.mean(-1)  # (N,) logged: the members' mean
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean(logits.squeeze(-1) ** 2)

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
