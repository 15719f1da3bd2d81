"""What DPO, RLOO and GRPO share: their inputs from the run folder, the held-out evaluation that makes
them comparable with PPO, and publishing the tuned policy.

The held-out prompts are `split_prompts` of the same prompt file with the same fraction, cap and
seed as `python -m rlhf` uses, so every method is judged on the prompts PPO was judged on (none of
which reached the labeling app either: the loop draws labeling prompts from the training side).
"""

from __future__ import annotations

import contextlib
import resource
from dataclasses import dataclass, field
from pathlib import Path

from ranktune.errors import InputError
from ranktune.prompting import prompt_text
from ranktune.records import read_prompts, split_prompts
from ranktune.remote_scoring import is_remote
from ranktune.runs import publish_policy, run_dir, stage_dir

# the reward-model columns of compare_policies' summary: meaningless without a reward model
RM_KEYS = ("sft_score", "ppo_score", "score_gain_se", "win_rate_vs_sft")


@dataclass
class ScriptArguments:
    """Settings every alternative has; TRL's method config and ModelConfig hold the rest.

    `ModelConfig.model_name_or_path` is the starting policy (default: this run's SFT model); its LoRA
    keys choose LoRA (the reference is the adapter switched off) or full fine-tuning.
    """

    run: str = field(default="default", metadata={"help": "Run name: outputs go to <runs_dir>/<run>/<method>."})
    runs_dir: str = field(default="runs", metadata={"help": "Folder holding all runs."})
    prompts: str = field(
        default="data/prompts.jsonl",
        metadata={"help": "Prompts (JSONL with 'prompt', or a HF dataset name): the held-out evaluation split, "
                          "and what RLOO/GRPO train on. Use PPO's file so the held-out prompts are PPO's."})
    reward_model: str | None = field(
        default=None, metadata={"help": "Reward model folder (default: <runs_dir>/<run>/reward, else the last "
                                        "<runs_dir>/<run>/rounds/round-N/reward), or the URL of one served by "
                                        "`python -m reward serve` (http://host:port)."})
    reward_token_file: str | None = field(
        default=None, metadata={"help": "With a reward model URL: file holding the server's bearer token "
                                        "(default: $RANKTUNE_REWARD_TOKEN)."})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Share of prompts held out for the final evaluation (as in PPO)."})
    max_eval_prompts: int = field(default=64, metadata={"help": "Evaluate on at most this many held-out prompts."})
    eval_samples_per_prompt: int = field(
        default=2, metadata={"help": "Answers per held-out prompt from each policy (more: smaller standard errors)."})
    max_prompt_length: int = field(
        default=256, metadata={"help": "Prompts are cut from the left to this many tokens (training and evaluation)."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint of this run."})


def reward_model_folder(explicit: str | None, run: str, runs_dir: str, required: bool = True) -> str | None:
    """An explicit folder or URL; else the run's reward/; else the reward model of the run's last loop round."""
    if is_remote(explicit):
        return explicit
    if explicit:
        folder = Path(explicit)
        if not (folder / "config.json").is_file():
            raise InputError("no reward model here (no config.json)", folder)
        return str(folder)
    folder = stage_dir(run, "reward", runs_dir)
    if (folder / "config.json").is_file():
        return str(folder)
    rounds = sorted((p for p in (run_dir(run, runs_dir) / "rounds").glob("round-*")
                     if p.name[len("round-"):].isdigit() and (p / "reward" / "config.json").is_file()),
                    key=lambda p: int(p.name[len("round-"):]))
    if rounds:
        return str(rounds[-1] / "reward")
    if required:
        raise InputError("no reward model here or under rounds/round-N/: run `make reward` first, or pass "
                         "--reward_model FOLDER", folder)
    return None


def prompt_split(script_args: ScriptArguments, seed: int) -> tuple[list, list]:
    """(training prompts, held-out prompts), exactly as `python -m rlhf` splits them."""
    prompts = [r["prompt"] for r in read_prompts(script_args.prompts)]
    return split_prompts(prompts, script_args.eval_fraction, script_args.max_eval_prompts, seed)


def prompt_key(prompt) -> str:
    return prompt_text(prompt).strip()


def check_settings(script_args: ScriptArguments) -> None:
    if script_args.eval_samples_per_prompt < 1:
        raise InputError("must be at least 1", field="eval_samples_per_prompt")
    if script_args.max_prompt_length < 1:
        raise InputError("must be at least 1", field="max_prompt_length")


def keep_pad_token(tokenizer, pad_token_id: int) -> None:
    """TRL sets pad = EOS when it finds none; ours is distinct from EOS (see ranktune.models) and must stay so."""
    if tokenizer.pad_token_id != pad_token_id or pad_token_id == tokenizer.eos_token_id:
        raise RuntimeError(f"the pad token changed to {tokenizer.pad_token!r} (id {tokenizer.pad_token_id}); "
                           f"expected id {pad_token_id}, distinct from EOS")


def starting_policy(policy, spec: str, tokenizer):
    """`reference()` for compare_policies: the adapter switched off, or (full fine-tuning) a fresh copy of
    the starting policy, loaded only when the evaluation needs it."""
    if hasattr(policy, "disable_adapter"):
        @contextlib.contextmanager
        def adapter_off():
            with policy.disable_adapter():
                yield policy
        return adapter_off

    loaded = []

    @contextlib.contextmanager
    def frozen_copy():
        if not loaded:
            from ranktune.models import load_causal_lm

            start, _ = load_causal_lm(spec, tokenizer=tokenizer)
            loaded.append(start.eval().to(next(policy.parameters()).device))
        yield loaded[0]
    return frozen_copy


def evaluate(policy, start, tokenizer, scorer, prompts: list, generation_config, temperature: float,
             max_prompt_length: int, batch_size: int, samples_per_prompt: int) -> tuple[dict, list[dict]]:
    """PPO's held-out evaluation (compare_policies); without a reward model only gold, KL, ended and
    words remain, the reward-model columns being left out rather than filled with placeholders."""
    from ranktune.policy_eval import compare_policies

    if scorer is not None:
        def score(p, a, e):
            return scorer.score(p, a, e, batch_size=batch_size)
    else:
        def score(p, a, e):
            return [0.0] * len(a)
    metrics, rows = compare_policies(policy, start, tokenizer, score, prompts, generation_config, temperature,
                                     max_prompt_length, batch_size, samples_per_prompt)
    if scorer is None:
        for key in RM_KEYS:
            metrics.pop(key, None)
        for row in rows:
            row.pop("sft_score", None)
            row.pop("ppo_score", None)
    return metrics, rows


def peak_rss_mib() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def publish(policy, tokenizer, work: Path, final: Path, metrics: dict, history: list[dict], rows: list[dict],
            curves: list[str], configs: tuple = (), data: dict | None = None) -> Path:
    """runs/<run>/<method>/, laid out like PPO's folder (`ranktune.runs.publish_policy`); its model card
    takes the key settings from `configs` and counts the files of `data` ({role: file})."""
    return publish_policy(policy, tokenizer, work, final, metrics, history, curves, f"{metrics['method']}.png",
                          metrics["method"].upper(), {"eval_samples.jsonl": rows},
                          card={"stage": metrics["method"], "configs": configs, "data": data})


def print_summary(metrics: dict, final: Path) -> None:
    name = metrics["method"].upper()
    lines = [f"{name} policy written to {final} ({metrics['train_seconds']:.0f} s training, "
             f"peak RSS {metrics['peak_rss_mib']} MiB)"]
    ev = metrics.get("eval")
    if ev:
        rm = (f"reward-model score SFT {ev['sft_score']:+.3f} -> {name} {ev['ppo_score']:+.3f}, win rate vs SFT "
              f"{ev['win_rate_vs_sft']:.2f}; " if "ppo_score" in ev else "no reward model to score with; ")
        lines.append(f"held-out ({ev['prompts']} prompts x {ev['samples_per_prompt']}): {rm}KL {ev['kl_to_sft']:.3f}; "
                     f"gold {ev['sft_gold']:+.3f} -> {ev['ppo_gold']:+.3f} (gain ± {ev['gold_gain_se']:.3f} s.e.); "
                     f"ended {ev['sft_ended']:.2f} -> {ev['ppo_ended']:.2f}")
    print("\n".join(lines))
