"""`python -m alternatives dpo --config configs/dpo.yaml --run NAME`: DPO on the labeling export's pairs.

TRL's `DPOTrainer` learns straight from (prompt, chosen, rejected) pairs, with no reward model and
no sampling during training; the implicit reward is beta * log(pi / pi_SFT). Reads the run's
export/pairs.jsonl (or any JSONL of prompt/chosen/rejected), starts from the run's SFT policy and
publishes runs/<run>/dpo/ with the same held-out evaluation as PPO, scored by the run's reward model
when there is one.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from alternatives.common import (ScriptArguments, check_settings, evaluate, keep_pad_token, peak_rss_mib,
                                  print_summary, prompt_key, prompt_split, publish, reward_model_folder,
                                  starting_policy)
from ranktune.config import lora_config, parse_config
from ranktune.errors import InputError, exit_on_input_error
from ranktune.jsonl import read_jsonl
from ranktune.prompting import render_answer, render_prompt
from ranktune.records import load_records, preference
from ranktune.runs import check_writable, resume_point, run_dir, stage_dir, upstream_model, work_dir
from ranktune.tracking import check_report_to, point_trackers, tracker_dir

CURVES = ["loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "logps/chosen",
          "grad_norm", "learning_rate"]


@dataclass
class DPOScriptArguments(ScriptArguments):
    data: str | None = field(
        default=None, metadata={"help": "Preference pairs: JSONL of prompt/chosen/rejected (default: "
                                        "<runs_dir>/<run>/export/pairs.jsonl) or a HF dataset name."})
    max_train_pairs: int | None = field(
        default=None, metadata={"help": "Train on at most this many pairs (seeded sample; quick runs)."})
    # named as in RLOOConfig/GRPOConfig, so one set of overrides fits every method (DPOConfig has neither)
    max_completion_length: int = field(
        default=48, metadata={"help": "Most new tokens per held-out answer (PPO's response_length)."})
    temperature: float = field(
        default=0.7, metadata={"help": "Sampling temperature of the held-out answers (PPO's temperature)."})


def pair_record(obj: dict, path: Path, lineno: int) -> dict:
    """A preference pair; `chosen_ended`/`rejected_ended` (booleans) say an answer was cut off."""
    rec = preference(obj, path, lineno)
    for side in ("chosen", "rejected"):
        key = f"{side}_ended"
        if key in obj:
            if not isinstance(obj[key], bool):
                raise InputError(f"expected true or false, got {type(obj[key]).__name__}", path, lineno, key)
            rec[key] = obj[key]
    return rec


def _ranking_endings(obj: dict, path: Path, lineno: int) -> dict:
    answers, ended = obj.get("answers"), obj.get("ended")
    if ended is None:
        return {}
    if (not isinstance(answers, list) or not isinstance(ended, list) or len(answers) != len(ended)
            or not all(isinstance(e, bool) for e in ended) or not all(isinstance(a, str) for a in answers)):
        raise InputError("expected one true/false per answer", path, lineno, "ended")
    return {(str(obj.get("ranking_id")), a): e for a, e in zip(answers, ended)}


def answer_endings(pairs_file: Path) -> dict[tuple[str, str], bool]:
    """(ranking_id, answer) -> whether the generator's answer ended, from the export's rankings.jsonl.

    The export's pairs do not carry it, and most answers of a short demo were cut off at
    max_new_tokens: giving those an EOS would teach the policy to stop mid-sentence. The reward
    model was trained on them without EOS for the same reason.
    """
    rankings = pairs_file.with_name("rankings.jsonl")
    if not pairs_file.is_file() or not rankings.is_file():
        return {}
    endings: dict[tuple[str, str], bool] = {}
    for rec in read_jsonl(rankings, _ranking_endings, "rankings"):
        endings.update(rec)
    return endings


def load_pairs(script_args: DPOScriptArguments, eval_prompts: list, seed: int) -> tuple[list[dict], dict]:
    source = script_args.data or str(run_dir(script_args.run, script_args.runs_dir) / "export" / "pairs.jsonl")
    pairs = load_records(source, pair_record, "preference pairs (prompt, chosen, rejected)")
    endings = answer_endings(Path(source))
    for rec in pairs:
        rid = str(rec.get("ranking_id"))
        for side in ("chosen", "rejected"):
            rec.setdefault(f"{side}_ended", endings.get((rid, rec[side]), True))
    held_out = {prompt_key(p) for p in eval_prompts}
    kept = [r for r in pairs if prompt_key(r["prompt"]) not in held_out]  # never train on a held-out prompt
    if not kept:
        raise InputError("every pair's prompt is among the held-out evaluation prompts: nothing to train on", source)
    info = {"data": source, "pairs_read": len(pairs), "pairs_on_held_out_prompts_left_out": len(pairs) - len(kept)}
    if script_args.max_train_pairs is not None:
        if script_args.max_train_pairs < 1:
            raise InputError("must be at least 1", field="max_train_pairs")
        kept = random.Random(seed).sample(kept, min(len(kept), script_args.max_train_pairs))
    info["train_pairs"] = len(kept)
    info["train_answers_cut_off"] = sum((not r["chosen_ended"]) + (not r["rejected_ended"]) for r in kept)
    return kept, info


def tokenize_pairs(pairs: list[dict], tokenizer, max_prompt_length: int):
    """TRL's token format (prompt_ids, chosen_ids, rejected_ids) built with the pipeline's text convention:
    the prompt rendered as every stage renders it, each answer tokenized after it as the policy would
    have generated it, and EOS only after answers that ended."""
    from datasets import Dataset

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    rows = []
    for r in pairs:
        rows.append({"prompt_ids": ids(render_prompt(tokenizer, r["prompt"]))[-max_prompt_length:],
                     "chosen_ids": ids(render_answer(tokenizer, r["chosen"]) if r["chosen_ended"] else r["chosen"]),
                     "rejected_ids": ids(render_answer(tokenizer, r["rejected"]) if r["rejected_ended"]
                                         else r["rejected"])})
    return Dataset.from_list(rows)


def _trainer_class():
    from trl import DPOTrainer

    class PairsDPOTrainer(DPOTrainer):
        """DPOTrainer on data already in its token format: its own preparation would add EOS to every
        answer and render the prompt its own way."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if args.max_length is not None:
                dataset = dataset.filter(lambda row: len(row["prompt_ids"]) < args.max_length)
            return dataset

    return PairsDPOTrainer


@exit_on_input_error
def main(args: list[str] | None = None) -> Path:
    from transformers import set_seed
    from trl import DPOConfig, ModelConfig

    from ranktune.models import load_causal_lm
    from ranktune.sampling import sampling_config
    from ranktune.remote_scoring import is_remote, load_scorer
    from ranktune.scoring import RewardScorer

    script_args, config, model_args = parse_config((DPOScriptArguments, DPOConfig, ModelConfig), args)
    final = stage_dir(script_args.run, "dpo", script_args.runs_dir)
    work = work_dir(final)
    check_writable(final.parent)
    check_settings(script_args)
    check_report_to(config)
    if script_args.temperature <= 0:
        raise InputError("must be more than 0", field="temperature")
    if script_args.max_completion_length < 1:
        raise InputError("must be at least 1", field="max_completion_length")

    # Every input is read and checked before a model loads: bad input fails in a second.
    _, eval_prompts = prompt_split(script_args, config.seed)
    pairs, info = load_pairs(script_args, eval_prompts, config.seed)
    reward_spec = reward_model_folder(script_args.reward_model, script_args.run, script_args.runs_dir,
                                      required=bool(script_args.reward_model))
    # a served reward model is reached (and its token tried) now, not after training
    remote = load_scorer(reward_spec, script_args.reward_token_file) if is_remote(reward_spec) else None
    policy_spec = upstream_model(model_args.model_name_or_path, script_args.run, script_args.runs_dir)

    resume_from = resume_point(work, script_args.resume)
    config.output_dir = str(work)
    config.remove_unused_columns = False  # the dataset holds only TRL's token columns already

    set_seed(config.seed)
    policy, tokenizer = load_causal_lm(policy_spec)
    pad_id = tokenizer.pad_token_id
    dataset = tokenize_pairs(pairs, tokenizer, script_args.max_prompt_length)
    peft_config = lora_config(model_args)
    ref_model = None
    if peft_config is None:  # TRL would reload the folder, losing a pad token that load_causal_lm added
        import copy

        ref_model = copy.deepcopy(policy).eval().requires_grad_(False)
    trainer = _trainer_class()(model=policy, ref_model=ref_model, args=config, train_dataset=dataset,
                               processing_class=tokenizer, peft_config=peft_config)
    point_trackers(trainer, tracker_dir(script_args.run, "dpo", script_args.runs_dir))
    keep_pad_token(tokenizer, pad_id)

    start = time.time()
    trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.time() - start
    trained = trainer.accelerator.unwrap_model(trainer.model)

    metrics = {"method": "dpo", "policy": policy_spec, "reward_model": reward_spec, **info,
               "eval_prompts": len(eval_prompts), "use_peft": model_args.use_peft, "beta": config.beta,
               "loss_type": config.loss_type, "steps": trainer.state.global_step,
               "train_seconds": round(train_seconds, 1)}
    if resume_from:
        metrics["resumed_from"] = resume_from
    if reward_spec is None:
        metrics["note"] = ("no reward model in this run: the held-out evaluation has gold score, KL, ended and "
                           "words only")
    rows = []
    if eval_prompts:
        scorer = remote or (RewardScorer.load(reward_spec) if reward_spec else None)
        generation = sampling_config(tokenizer, script_args.max_completion_length, script_args.temperature)
        metrics["eval"], rows = evaluate(
            trained, starting_policy(trained, policy_spec, tokenizer), tokenizer, scorer, eval_prompts, generation,
            script_args.temperature, script_args.max_prompt_length, config.per_device_eval_batch_size,
            script_args.eval_samples_per_prompt)
        metrics["eval_settings"] = {"max_new_tokens": script_args.max_completion_length,
                                    "temperature": script_args.temperature}
    metrics["peak_rss_mib"] = peak_rss_mib()
    publish(trained, tokenizer, work, final, metrics, trainer.state.log_history, rows, CURVES,
            (script_args, config, model_args), {"preference pairs": info["data"], "prompts": script_args.prompts})
    print_summary(metrics, final)
    return final


if __name__ == "__main__":
    main()
