"""`python -m rlhf --config configs/rlhf.yaml --run NAME`: PPO on the SFT policy against the reward model.

Reads runs/<run>/sft (policy and reference) and runs/<run>/reward (reward model, its
normalisation, and the value model's starting point) or a reward model served over HTTP
(`--reward_model http://host:port`, `python -m reward serve`); checkpoints go to runs/<run>/rlhf.work/
(for --resume); the final policy — a plain model folder any stage loads — is published with
metrics.json (final evaluation), metrics.jsonl (every update), samples and PNG curves to
runs/<run>/rlhf/ in one rename.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from ranktune.config import lora_config, parse_config
from ranktune.errors import InputError, exit_on_input_error
from ranktune.stats import gold_gain_verdict
from ranktune.records import read_demonstrations, read_prompts, split_prompts
from ranktune.remote_scoring import RemoteRewardScorer, is_remote, read_token
from ranktune.runs import check_writable, publish_policy, resume_point, stage_dir, upstream_model, work_dir
from ranktune.scoring import read_member_normalization, read_normalization_settings
from ranktune.tracking import check_report_to, point_trackers, tracker_dir
from rlhf.checkpoint import last_checkpoint
from rlhf.config import PPOScriptArguments
from rlhf.data import ptx_batches
from rlhf.ppo import PPOConfig, PPOTrainer

CURVES = ["objective/scores", "objective/gold", "objective/kl", "objective/rlhf_reward", "answers/length",
          "policy/entropy", "value/explained_variance", "policy/clipfrac", "kl_coef"]


def _reward_spec(script_args) -> str:
    if is_remote(script_args.reward_model):
        return script_args.reward_model
    folder = Path(script_args.reward_model) if script_args.reward_model else stage_dir(
        script_args.run, "reward", script_args.runs_dir)
    if not (folder / "config.json").is_file():
        raise InputError("no reward model here: run `make reward` first, or pass --reward_model FOLDER", folder)
    return str(folder)


@exit_on_input_error
def main(args: list[str] | None = None) -> Path:
    from transformers import set_seed
    from trl import ModelConfig

    from ranktune.policy_eval import compare_policies
    from rlhf.models import build_models

    script_args, config, model_args = parse_config((PPOScriptArguments, PPOConfig, ModelConfig), args)
    final = stage_dir(script_args.run, "rlhf", script_args.runs_dir)
    work = work_dir(final)
    check_writable(final.parent)
    check_report_to(config)

    # Every input is read and checked before a model loads: bad input fails in a second.
    train_prompts, eval_prompts = split_prompts([r["prompt"] for r in read_prompts(script_args.prompts)],
                                                script_args.eval_fraction, script_args.max_eval_prompts, config.seed)
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun
    if len(train_prompts) < config.local_batch_size * world:
        raise InputError(f"{len(train_prompts)} training prompts, fewer than the {config.local_batch_size} x {world} "
                         "rollouts of one update", script_args.prompts)
    demos = read_demonstrations(script_args.ptx_data) if script_args.ptx_data and config.ptx_coef else None
    reward_spec = _reward_spec(script_args)
    remote = None
    if is_remote(reward_spec):
        # the server renders, cuts and normalises: its scores arrive in the normalised units
        remote = RemoteRewardScorer.load(reward_spec, read_token(script_args.reward_token_file))
        gain, bias, reward_max_length, members = 1.0, 0.0, None, None
        if config.value_model == "reward":  # no reward weights here to start it from (rlhf/models.py)
            config.value_model = "policy"
            print("value_model: policy (the reward model is remote: the value model starts from the SFT policy "
                  "with a fresh head)")
    else:
        gain, bias, reward_max_length = read_normalization_settings(reward_spec)
        members = read_member_normalization(reward_spec)
    policy_spec = upstream_model(model_args.model_name_or_path, script_args.run, script_args.runs_dir)

    resume_from = resume_point(work, script_args.resume, last_checkpoint)
    config.output_dir = str(work)

    set_seed(config.seed)  # LoRA and value-head initialisation: a rerun is the same run
    trained, roles, tokenizer, reward_tokenizer = build_models(policy_spec, None if remote else reward_spec,
                                                               lora_config(model_args), config.value_model,
                                                               config.lora_top_layers, (gain, bias), members)
    ptx = ptx_batches(demos, tokenizer, config.per_device_train_batch_size, 512, config.seed) if demos else None
    # the reward model scores texts cut where it was trained and normalised, never elsewhere
    trainer = PPOTrainer(config, trained, roles, tokenizer, reward_tokenizer, train_prompts, (gain, bias),
                         reward_max_length=reward_max_length or 512, ptx_batches=ptx, reward_scorer=remote,
                         member_normalization=members)
    point_trackers(trainer, tracker_dir(script_args.run, "rlhf", script_args.runs_dir))  # PPO's own metrics too
    start = time.time()
    history = trainer.train(resume_from)
    train_seconds = time.time() - start
    # Under DeepSpeed ZeRO-3 every process gathers the partitioned weights; the main process evaluates
    # and publishes them whole. Otherwise a plain unwrap, and the other processes just wait.
    with trainer.gathered() as trained:
        if trainer.accelerator.is_main_process:
            metrics = {"policy": policy_spec, "reward_model": reward_spec, "updates": trainer.num_updates,
                       "episodes": trainer.num_updates * config.local_batch_size * trainer.accelerator.num_processes,
                       "train_prompts": len(train_prompts), "eval_prompts": len(eval_prompts),
                       "use_peft": model_args.use_peft, "value_model": config.value_model,
                       "train_seconds": round(train_seconds, 1), "world_size": trainer.accelerator.num_processes}
            rows = []
            if eval_prompts:
                metrics["eval"], rows = compare_policies(
                    trained.policy, trainer.roles.reference, tokenizer, trainer.reward_scores, eval_prompts,
                    trainer.generation_config, config.temperature, config.max_prompt_length,
                    config.per_device_eval_batch_size, script_args.eval_samples_per_prompt)
            metrics["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            updates = [h for h in history if "objective/scores" in h]
            publish_policy(trained.policy, tokenizer, work, final, metrics, updates, CURVES, "ppo.png", "PPO",
                           {"samples.jsonl": trainer.samples_log, "eval_samples.jsonl": rows},
                           card={"stage": "rlhf", "configs": (config, model_args),
                                 "data": {"prompts": script_args.prompts,
                                          "ptx demonstrations": script_args.ptx_data if config.ptx_coef else None}})
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        _print_summary(metrics, final)
    return final


def _print_summary(metrics: dict, final: Path) -> None:
    lines = [f"PPO policy written to {final} ({metrics['updates']} updates, {metrics['episodes']} episodes, "
             f"{metrics['train_seconds']:.0f} s, peak RSS {metrics['peak_rss_mib']} MiB)"]
    ev = metrics.get("eval")
    if ev:
        lines.append(f"held-out ({ev['prompts']} prompts): reward-model score SFT {ev['sft_score']:+.3f} -> PPO "
                     f"{ev['ppo_score']:+.3f} at KL {ev['kl_to_sft']:.3f} ({ev['samples_per_prompt']} answers each); win rate vs SFT {ev['win_rate_vs_sft']:.2f}; "
                     f"gold (simulated reviewers' rule) {ev['sft_gold']:+.3f} -> {ev['ppo_gold']:+.3f} "
                     f"(gain ± {ev['gold_gain_se']:.3f} s.e.)")
        lines.append(gold_gain_verdict(ev)[0])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
