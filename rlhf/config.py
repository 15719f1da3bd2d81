"""Settings of the PPO stage that `rlhf.ppo.PPOConfig` and TRL's `ModelConfig` do not already have.

`ModelConfig.model_name_or_path` is the policy to start from (default: this run's SFT model);
its LoRA keys (`use_peft`, `lora_r`, ...) choose LoRA or full fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PPOScriptArguments:
    run: str = field(default="default", metadata={"help": "Run name: outputs go to <runs_dir>/<run>/rlhf."})
    runs_dir: str = field(default="runs", metadata={"help": "Folder holding all runs."})
    prompts: str = field(default="data/prompts.jsonl",
                         metadata={"help": "Prompts the policy answers: JSONL with 'prompt', or a HF dataset name."})
    reward_model: str | None = field(
        default=None, metadata={"help": "Reward model folder (default: <runs_dir>/<run>/reward), or the URL of one "
                                        "served by `python -m reward serve` (http://host:port); the value model then "
                                        "starts from the policy (value_model: policy)."})
    reward_token_file: str | None = field(
        default=None, metadata={"help": "With a reward model URL: file holding the server's bearer token "
                                        "(default: $RANKTUNE_REWARD_TOKEN)."})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Share of prompts held out for the final evaluation (never trained on)."})
    max_eval_prompts: int = field(default=64, metadata={"help": "Evaluate on at most this many held-out prompts."})
    eval_samples_per_prompt: int = field(
        default=2, metadata={"help": "Answers per held-out prompt from each policy (more: smaller standard errors)."})
    ptx_data: str | None = field(
        default=None, metadata={"help": "Demonstrations for PPO-ptx (with ptx_coef > 0), e.g. data/demonstrations.jsonl."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint of this run."})
