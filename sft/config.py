"""Settings of the SFT stage that TRL's `SFTConfig` and `ModelConfig` do not already have."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SFTScriptArguments:
    run: str = field(default="default", metadata={"help": "Run name: outputs go to <runs_dir>/<run>/sft."})
    runs_dir: str = field(default="runs", metadata={"help": "Folder holding all runs."})
    data: str = field(
        default="data/demonstrations.jsonl",
        metadata={"help": "Demonstrations: a JSONL file (prompt+completion, or chat messages) or a HF dataset name."})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Share of demonstrations held out to measure loss before and after."})
    extra_eval_data: str | None = field(
        default=None, metadata={"help": "Another demonstration file to report held-out loss on (base vs SFT)."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint of this run."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use at most this many training demonstrations (quick runs, tests)."})
