"""`python -m alternatives {rloo,grpo} --config configs/<method>.yaml --run NAME`: RLOO or GRPO
(TRL's trainers) on the run's SFT policy against our reward model.

Both sample several answers per prompt and use the other answers to the same prompt as the baseline
instead of a value model: RLOO the mean of the others' rewards (KL to the SFT policy subtracted from
the reward, as in PPO), GRPO the group's mean and spread (KL, when beta > 0, in the loss). The
reward is what PPO's score is: the reward model's normalised score through `RewardScorer` (or the
same served over HTTP: `--reward_model http://host:port`), at the length it was trained at, with
`missing_eos_penalty` taken off answers that never ended.
Trains on PPO's training prompts; evaluates on PPO's held-out prompts; publishes runs/<run>/<method>/.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from alternatives.common import (ScriptArguments, check_settings, evaluate, keep_pad_token, peak_rss_mib,
                                  print_summary, prompt_split, publish, reward_model_folder, starting_policy)
from ranktune.config import lora_config, parse_config
from ranktune.errors import InputError, exit_on_input_error
from ranktune.gold import gold_score
from ranktune.prompting import prompt_text, render_prompt
from ranktune.runs import check_writable, resume_point, stage_dir, upstream_model, work_dir
from ranktune.tracking import check_report_to, point_trackers, tracker_dir

METHODS = ("rloo", "grpo")
CURVES = ["reward", "score", "gold", "kl", "ended", "completions/mean_length", "entropy", "reward_std"]


@dataclass
class OnlineScriptArguments(ScriptArguments):
    missing_eos_penalty: float | None = field(
        default=1.0, metadata={"help": "Subtracted from the score of an answer that never emitted EOS (as in PPO)."})
    reward_batch_size: int = field(default=16, metadata={"help": "Answers per reward-model forward pass."})


class ModelReward:
    """A TRL reward function: one float per completion, from our reward model.

    TRL gives the decoded answers (special tokens dropped) and their token ids; an answer ended when
    its last id is an EOS, and RewardScorer puts that EOS back into the text it scores, exactly as
    PPO's rollout does. Also logs the score before the penalty, the gold score of the simulated
    reviewers' rule and the share of answers that ended, so the curves read like PPO's.
    """

    __name__ = "reward_model"  # TRL names the metrics rewards/<name>/...

    def __init__(self, scorer, eos_token_ids, missing_eos_penalty: float | None = 1.0, batch_size: int = 16):
        self.scorer, self.eos_token_ids = scorer, set(eos_token_ids)
        self.missing_eos_penalty, self.batch_size = missing_eos_penalty, batch_size
        self.scored = 0  # answers scored so far: the run's episode count

    def __call__(self, prompts: list, completions: list[str], completion_ids: list[list[int]],
                 source_prompt: list[str] | None = None, log_metric=None, **_) -> list[float]:
        # the dataset's `prompt` is rendered for the policy; the reward model renders the original its own way
        originals = [json.loads(s) for s in source_prompt] if source_prompt is not None else list(prompts)
        ended = [bool(ids) and ids[-1] in self.eos_token_ids for ids in completion_ids]
        scores = self.scorer.score(originals, list(completions), ended, batch_size=self.batch_size)
        self.scored += len(scores)
        if log_metric is not None:
            gold = [gold_score(prompt_text(p), a, e) for p, a, e in zip(originals, completions, ended)]
            log_metric("score", sum(scores) / len(scores))
            log_metric("gold", sum(gold) / len(gold))
            log_metric("ended", sum(ended) / len(ended))
        if self.missing_eos_penalty is not None:
            scores = [s if e else s - self.missing_eos_penalty for s, e in zip(scores, ended)]
        return scores


def _trainer_class(method: str):
    from trl import GRPOTrainer, RLOOTrainer

    base = RLOOTrainer if method == "rloo" else GRPOTrainer

    class PipelinePrompts(base):
        """The prompts tokenized as every other stage does: the dataset holds them rendered already, so
        no special tokens are added, and a long prompt loses its start, never its end (PPO's cut)."""

        max_prompt_length: int | None = None

        def _tokenize_prompts(self, prompts: list):
            ids = self.processing_class(text=list(prompts), add_special_tokens=False)["input_ids"]
            if self.max_prompt_length:
                ids = [x[-self.max_prompt_length:] for x in ids]
            return ids, None, {}

    PipelinePrompts.__name__ = base.__name__
    return PipelinePrompts


def _eos_token_ids(model, tokenizer) -> list[int]:
    """The ids TRL stops generation at: the tokenizer's EOS and the model's generation_config's."""
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    return [tokenizer.eos_token_id, *ids]


def prompt_dataset(prompts: list, tokenizer):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": render_prompt(tokenizer, p), "source_prompt": json.dumps(p)}
                              for p in prompts])


@exit_on_input_error
def main(method: str, args: list[str] | None = None) -> Path:
    from transformers import set_seed
    from trl import GRPOConfig, ModelConfig, RLOOConfig

    from ranktune.models import load_causal_lm
    from ranktune.sampling import sampling_config
    from ranktune.remote_scoring import load_scorer

    if method not in METHODS:
        raise InputError(f"unknown method '{method}' (one of {', '.join(METHODS)})")
    config_class = RLOOConfig if method == "rloo" else GRPOConfig
    script_args, config, model_args = parse_config((OnlineScriptArguments, config_class, ModelConfig), args)
    final = stage_dir(script_args.run, method, script_args.runs_dir)
    work = work_dir(final)
    check_writable(final.parent)
    check_settings(script_args)
    check_report_to(config)
    if not config.max_completion_length:
        raise InputError("must be a number of tokens", field="max_completion_length")

    # Every input is read and checked before a model loads: bad input fails in a second.
    train_prompts, eval_prompts = prompt_split(script_args, config.seed)
    per_batch = config.generation_batch_size // config.num_generations
    if len(train_prompts) < per_batch:
        raise InputError(f"{len(train_prompts)} training prompts, fewer than the {per_batch} prompts of one "
                         "generation batch", script_args.prompts)
    reward_spec = reward_model_folder(script_args.reward_model, script_args.run, script_args.runs_dir)
    policy_spec = upstream_model(model_args.model_name_or_path, script_args.run, script_args.runs_dir)

    resume_from = resume_point(work, script_args.resume)
    config.output_dir = str(work)

    set_seed(config.seed)
    policy, tokenizer = load_causal_lm(policy_spec)
    pad_id = tokenizer.pad_token_id
    # at the max_length its normalisation was fitted at, here or on the server
    scorer = load_scorer(reward_spec, script_args.reward_token_file)
    reward = ModelReward(scorer, _eos_token_ids(policy, tokenizer), script_args.missing_eos_penalty,
                         script_args.reward_batch_size)
    trainer = _trainer_class(method)(model=policy, reward_funcs=reward, args=config,
                                     train_dataset=prompt_dataset(train_prompts, tokenizer),
                                     processing_class=tokenizer, peft_config=lora_config(model_args))
    point_trackers(trainer, tracker_dir(script_args.run, method, script_args.runs_dir))
    trainer.max_prompt_length = script_args.max_prompt_length
    keep_pad_token(tokenizer, pad_id)

    start = time.time()
    trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.time() - start
    trained = trainer.accelerator.unwrap_model(trainer.model)

    metrics = {"method": method, "policy": policy_spec, "reward_model": reward_spec, "steps": trainer.state.global_step,
               "episodes": reward.scored, "train_prompts": len(train_prompts), "eval_prompts": len(eval_prompts),
               "num_generations": config.num_generations, "beta": config.beta, "use_peft": model_args.use_peft,
               "missing_eos_penalty": script_args.missing_eos_penalty, "train_seconds": round(train_seconds, 1)}
    if resume_from:
        metrics["resumed_from"] = resume_from  # episodes then counts this process's answers only
    rows = []
    if eval_prompts:
        generation = sampling_config(tokenizer, config.max_completion_length, config.temperature)
        metrics["eval"], rows = evaluate(
            trained, starting_policy(trained, policy_spec, tokenizer), tokenizer, scorer, eval_prompts, generation,
            config.temperature, script_args.max_prompt_length, config.per_device_eval_batch_size,
            script_args.eval_samples_per_prompt)
        metrics["eval_settings"] = {"max_new_tokens": config.max_completion_length, "temperature": config.temperature}
    metrics["peak_rss_mib"] = peak_rss_mib()
    publish(trained, tokenizer, work, final, metrics, trainer.state.log_history, rows, CURVES,
            (script_args, config, model_args), {"prompts": script_args.prompts})
    print_summary(metrics, final)
    return final
