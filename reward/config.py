"""Settings of the reward stage that TRL's `RewardConfig` and `ModelConfig` do not already have.

How the model learns (loss, grouping, margins) lives in `reward.trainer.RankingRewardConfig`;
here is only where data comes from and where the model goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ranktune.errors import InputError

LABEL_WEIGHTINGS = ("all", "reliability", "consensus")


@dataclass
class RewardScriptArguments:
    run: str = field(default="default", metadata={"help": "Run name: outputs go to <runs_dir>/<run>/reward."})
    runs_dir: str = field(default="runs", metadata={"help": "Folder holding all runs."})
    data: str | None = field(
        default=None,
        metadata={"help": "Rankings or pairs: the labeling export folder (default: <runs_dir>/<run>/export), "
                          "a JSONL file (rankings and/or prompt+chosen+rejected records), or a HF dataset name."})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Share of PROMPTS held out for evaluation (a prompt is never on both sides)."})
    max_train_rankings: int | None = field(
        default=None, metadata={"help": "Train on at most this many rankings/pairs (seeded sample; quick runs)."})
    skip_flagged: bool = field(
        default=False, metadata={"help": "Leave out rankings a reviewer flagged (the export already does by default)."})
    convert_hh: bool = field(
        default=True,
        metadata={"help": "Turn HH-RLHF transcripts ('\\n\\nHuman: ...\\n\\nAssistant:') into chat messages."})
    normalization_data: str | None = field(
        default=None,
        metadata={"help": "Answers of the SFT policy (prompt + completion JSONL) to fit the reward normalisation on; "
                          "default: the training rankings' answers (they were sampled from the SFT policy)."})
    normalization_samples: int = field(
        default=512, metadata={"help": "Score at most this many answers (seeded sample) to fit the normalisation."})
    calibration_bins: int = field(default=10, metadata={"help": "Bins of the calibration table and plot."})
    label_weighting: str = field(
        default="all",
        metadata={"help": "all: every ranking counts once (any 'weight' field ignored); reliability: each ranking's "
                          "loss is multiplied by its record's reviewer 'weight' (0 = left out); consensus: train on "
                          "the export folder's consensus.jsonl (one ranking per item ranked by 2+ reviewers)."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint of this run."})

    def __post_init__(self):
        if self.label_weighting not in LABEL_WEIGHTINGS:
            raise InputError(f"must be one of {', '.join(LABEL_WEIGHTINGS)}, got '{self.label_weighting}'",
                             field="label_weighting")
