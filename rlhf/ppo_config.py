"""`PPOConfig`: TrainingArguments plus PPO's own settings (beside `rlhf.ppo.PPOTrainer`, as TRL keeps its
configs apart from its trainers)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from ranktune.aggregation import check_aggregation
from ranktune.quantize import check_sampling_weights
from ranktune.sampling import ENGINES


@dataclass
class PPOConfig(TrainingArguments):
    """TrainingArguments plus PPO's own settings. `save_steps` and `logging_steps` count updates."""

    total_episodes: int = field(default=512, metadata={"help": "Rollouts (prompt + sampled answer) in the whole run."})
    num_ppo_epochs: int = field(default=4, metadata={"help": "Passes over each rollout batch."})
    num_mini_batches: int = field(default=1, metadata={"help": "Optimizer steps per pass over a rollout batch."})
    response_length: int = field(default=48, metadata={"help": "Most new tokens per answer."})
    max_prompt_length: int = field(default=256, metadata={"help": "Prompts are cut from the left to this many tokens."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature, also used for every log-prob."})
    kl_coef: float = field(default=0.05, metadata={"help": "Weight of the per-token KL penalty (initial value if adaptive)."})
    kl_estimator: str = field(default="k1", metadata={"help": "KL estimator in the reward: k1 (log ratio) or k3."})
    target_kl: float | None = field(
        default=None, metadata={"help": "Adaptive KL (Ziegler et al.): steer kl_coef so the sequence KL to the "
                                        "reference tracks this. None = fixed kl_coef. Not CleanRL's / old TRL's "
                                        "target_kl (stop an update's epochs early once approx-KL passes it)."})
    kl_horizon: int = field(default=10000, metadata={"help": "Adaptive KL horizon, in episodes."})
    missing_eos_penalty: float | None = field(
        default=1.0, metadata={"help": "Subtracted from the score of an answer that never emitted EOS (the EOS trick)."})
    reward_aggregation: str = field(
        default="mean", metadata={"help": "With an ensemble reward model (python -m reward --ensemble_size N): mean, "
                                          "min (worst case) or mean_minus_std (mean - uncertainty_coef * std over "
                                          "members), the conservative ones resisting over-optimisation (Coste et "
                                          "al. 2024). A single reward model's score is the same under every one."})
    uncertainty_coef: float = field(default=1.0, metadata={"help": "The std's weight under mean_minus_std."})
    whiten_rewards: bool = field(default=False, metadata={"help": "Whiten the shaped rewards before GAE."})
    gamma: float = field(default=1.0, metadata={"help": "Discount."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    cliprange: float = field(default=0.2, metadata={"help": "Policy ratio clip."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Value clip."})
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss."})
    ptx_coef: float = field(default=0.0, metadata={"help": "PPO-ptx: weight of the SFT loss on demonstrations (0 = off)."})
    value_model: str = field(
        default="reward", metadata={"help": "reward: a value model initialised from the reward model (LoRA over the "
                                            "same weights); policy: a separate one from the SFT policy with a fresh "
                                            "head (what a remote reward model gets); shared: a value head on the "
                                            "policy's backbone."})
    lora_top_layers: int = field(
        default=0, metadata={"help": "With LoRA: adapters on the top N transformer layers only (policy and value), "
                                     "so backward passes stop there. 0 = every layer."})
    cache_frozen_layers: bool = field(
        default=True, metadata={"help": "With lora_top_layers: run the frozen layers below the adapters once per "
                                        "rollout, not in every PPO epoch (off by itself where the split forward "
                                        "does not reproduce the full one, and under DeepSpeed)."})
    generation_engine: str = field(
        default="generate", metadata={"help": "generate: transformers' generate() with a KV cache; continuous_batching: "
                                              "transformers' paged continuous batching (for many rollouts on a GPU)."})
    sampling_weights: str = field(
        default="fp32", metadata={"help": "int8: the rollout samples through int8 copies of the policy's frozen layers "
                                          "and head (CPU, with lora_top_layers; rlhf/int8_sampling.py), the old "
                                          "log-probs then from the fp32 forward. Changes which tokens are drawn."})
    sample_every: int = field(default=10, metadata={"help": "Print and keep a table of samples every N updates."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (1e-4 suits LoRA; ~3e-6 full)."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "Decays over all optimizer steps."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N updates."})
    save_steps: float = field(default=10, metadata={"help": "Checkpoint every N updates."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Rollouts per micro-batch."})

    def __post_init__(self):
        super().__post_init__()
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"kl_estimator must be k1 or k3, got '{self.kl_estimator}'")
        if self.temperature <= 0:
            raise ValueError("temperature must be more than 0")
        check_aggregation(self.reward_aggregation, self.uncertainty_coef)
        check_sampling_weights(self.sampling_weights)
        if self.sampling_weights == "int8" and (self.generation_engine != "generate" or self.bf16 or self.fp16):
            raise ValueError("sampling_weights int8 runs with generation_engine generate, in fp32 (no bf16/fp16)")
        if self.generation_engine not in ENGINES:
            raise ValueError(f"generation_engine must be one of {', '.join(ENGINES)}, "
                             f"got '{self.generation_engine}'")

    @property
    def local_batch_size(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.num_mini_batches
