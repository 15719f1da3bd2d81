"""`python -m reward --config configs/reward.yaml --run NAME`: learn a reward model from rankings.

Reads the labeling export (or any rankings / preference pairs), holds out a share of the prompts,
trains a one-output sequence classifier initialised from the SFT model (`--ensemble_size M`: M
outputs, the members of an ensemble on one shared base), fits the reward normalisation, and
publishes runs/<run>/reward/ in one rename: the model folder that `ranktune.scoring.RewardScorer.load`
reads, reward_normalization.json, metrics.json and PNGs. Checkpoints stay in runs/<run>/reward.work/
until then, for `--resume`.
"""

from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path

import torch

from ranktune.config import lora_config, parse_config
from ranktune.lora import top_layers_adapter
from ranktune.errors import InputError, exit_on_input_error
from ranktune.jsonl import write_json_atomic
from ranktune.model_card import write_model_card
from ranktune.models import load_sequence_classifier
from ranktune.plots import plot_curves
from ranktune.records import read_demonstrations
from ranktune.runs import (check_writable, publish_folder, resume_point, run_dir, stage_dir, upstream_model,
                           work_dir)
from ranktune.tracking import check_report_to, point_trackers, tracker_dir
from ranktune.scoring import RewardScorer
from reward.config import RewardScriptArguments
from reward.data import split_by_prompt, subsample, to_dataset, ungroup
from reward.evaluate import (by_ranking, member_metrics, pair_metrics, plot_evaluation, score_answers,
                             score_member_answers, score_ranking_members, score_rankings)
from reward.normalization import fit_members, fit_normalization, sample_answers, write_normalization
from reward.records import read_rankings, resolve_source
from reward.trainer import RankingRewardConfig, RankingRewardTrainer


def load_data(script_args, training_args) -> tuple[list, list, dict]:
    """Read, check and split all data before any model is loaded: bad input fails in a second."""
    weighting = script_args.label_weighting
    source = resolve_source(script_args.data, run_dir(script_args.run, script_args.runs_dir) / "export",
                            consensus=weighting == "consensus")
    rankings, stats = read_rankings(source, script_args.skip_flagged, script_args.convert_hh,
                                    require_weight=weighting == "reliability")
    if weighting != "reliability":
        for r in rankings:
            r.weight = 1.0
    if training_args.loss_type == "listwise":
        partial = next((r for r in rankings if r.ranks is None), None)
        if partial is not None:
            raise InputError("loss_type listwise needs full rankings, but these pairs of ranking "
                             f"'{partial.ranking_id}' are not a complete order (use the export's rankings.jsonl)",
                             partial.where)
    # Weight-0 rankings stay in the held-out set: it must be the same set whatever label_weighting says.
    train, test = split_by_prompt(rankings, script_args.eval_fraction, training_args.seed)
    trainable = [r for r in train if r.weight > 0]
    stats.zero_weight_rankings_left_out = len(train) - len(trainable)
    if train and not trainable:
        raise InputError("no rankings to train on: every training ranking has weight 0 (label_weighting "
                         "reliability)", source, field="weight")
    train = subsample(trainable, script_args.max_train_rankings, training_args.seed)
    if training_args.loss_type == "pairwise":
        train = [r for r in train if r.pairs]  # a full tie gives no pair (counted in data_stats)
    if not any(r.pairs for r in train):
        raise InputError("no preference pairs to train on: every training ranking is a full tie", source)
    if training_args.eval_strategy != "no" and not any(r.pairs for r in test):
        raise InputError("evaluation during training needs held-out pairs: set eval_fraction > 0 "
                         "(or eval_strategy no)", field="eval_strategy")
    info = {"data": source, "data_stats": vars(stats), "train_rankings": len(train),
            "train_pairs": sum(len(r.pairs) for r in train), "test_prompts": len({r.prompt_key for r in test}),
            "train_prompts": len({r.prompt_key for r in train}), "label_weighting": weighting,
            "train_weights": _weight_stats(train)}
    return train, test, info


def _weight_stats(train: list) -> dict:
    weights = [r.weight for r in train]
    return {"sum": round(sum(weights), 4), "mean": round(sum(weights) / len(weights), 4) if weights else None,
            "min": min(weights, default=None), "max": max(weights, default=None),
            "below_1": sum(w < 1 for w in weights)}


@exit_on_input_error
def main(args: list[str] | None = None) -> Path:
    from trl import ModelConfig
    from transformers import set_seed
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    script_args, training_args, model_args = parse_config(
        (RewardScriptArguments, RankingRewardConfig, ModelConfig), args)
    final = stage_dir(script_args.run, "reward", script_args.runs_dir)
    work = work_dir(final)
    check_writable(final.parent)
    check_report_to(training_args)

    train, test, info = load_data(script_args, training_args)
    norm_source = script_args.normalization_data
    norm_records = read_demonstrations(norm_source) if norm_source else None
    spec = upstream_model(model_args.model_name_or_path, script_args.run, script_args.runs_dir)

    resume_from = resume_point(work, script_args.resume)
    training_args.output_dir = str(work)
    training_args.prediction_loss_only = True
    if model_args.use_peft:
        model_args.lora_task_type = "SEQ_CLS"  # peft then trains the new score head in full

    set_seed(training_args.seed)  # the new score head's (and LoRA's) initialisation: a rerun is the same run
    with suppress_seqcls_warning():  # "score.weight newly initialised" is the point here
        model, tokenizer = load_sequence_classifier(spec, num_labels=training_args.ensemble_size)
    rows = train if training_args.group_by_ranking else ungroup(train)
    train_ds, cut = to_dataset(rows, tokenizer, training_args.max_length, training_args.ensemble_size,
                               training_args.seed)
    eval_ds = None
    if test and training_args.eval_strategy != "no":
        eval_ds, _ = to_dataset([r for r in test if r.pairs], tokenizer, training_args.max_length)
    peft_config = lora_config(model_args)
    if peft_config is not None:
        peft_config = top_layers_adapter(peft_config, model, training_args.lora_top_layers)
    trainer = RankingRewardTrainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                                   processing_class=tokenizer, peft_config=peft_config)
    point_trackers(trainer, tracker_dir(script_args.run, "reward", script_args.runs_dir))

    start = time.time()
    result = trainer.train(resume_from_checkpoint=resume_from)
    metrics = {"base_model": spec, **info, "loss_type": training_args.loss_type,
               "group_by_ranking": training_args.group_by_ranking, "margin_scale": training_args.margin_scale,
               "max_length": training_args.max_length, "train_answers_cut_to_max_length": cut,
               "use_peft": model_args.use_peft,
               "lora_top_layers": training_args.lora_top_layers if model_args.use_peft else None,
               "ensemble_size": training_args.ensemble_size, "train_seconds": round(time.time() - start, 1),
               "train_loss": result.training_loss, "global_step": trainer.state.global_step,
               "world_size": trainer.accelerator.num_processes}

    if hasattr(trainer.model, "merge_and_unload"):  # LoRA: ship a plain model any stage can load
        trainer.model = trainer.model.merge_and_unload()
    is_main = trainer.accelerator.is_main_process
    staging = work / "final-model"
    trainer.save_model(str(staging))  # every process takes part (ZeRO-3 gathers here)
    if is_main:
        scorer = RewardScorer(trainer.model, tokenizer, max_length=training_args.max_length or 10**6)
        normalized = _normalize(scorer, train, norm_records, script_args, training_args.seed, staging, metrics)
        if test:
            _evaluate(scorer, test, training_args.per_device_eval_batch_size, script_args.calibration_bins, metrics)
        metrics["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        metrics["log_history"] = trainer.state.log_history
        write_json_atomic(staging / "metrics.json", metrics)
        plot_curves(trainer.state.log_history, ["loss", "accuracy", "margin", "eval_loss", "eval_accuracy"],
                    staging / "training.png", title=f"reward model ({training_args.loss_type})")
        plot_evaluation(metrics.get("test", {}), normalized, staging / "calibration.png")
        write_model_card(staging, "reward", metrics, (training_args, model_args, script_args),
                         {"labels": metrics["data"], "normalisation answers": norm_source}, final)
        publish_folder(staging, final)
        shutil.rmtree(work, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    if is_main:
        _print_summary(metrics, final)
    return final


def _normalize(scorer, train, norm_records, script_args, seed: int, folder: Path, metrics: dict) -> list[float]:
    """Fit gain/bias on SFT-policy answers and write reward_normalization.json; returns the normalised scores."""
    if norm_records is not None:
        prompts, answers = [r["prompt"] for r in norm_records], [r["completion"] for r in norm_records]
        ended = None
        source = f"SFT-policy answers from {script_args.normalization_data}"
    else:
        prompts = [r.prompt for r in train for _ in r.answers]
        answers = [a for r in train for a in r.answers]
        ended = [e for r in train for e in r.answer_ended()]
        source = "answers of the training rankings (sampled from the SFT policy when the data came from the labeling app)"
    prompts, answers, ended = sample_answers(prompts, answers, script_args.normalization_samples, seed, ended)
    members = None
    if scorer.members == 1:
        raw = score_answers(scorer, prompts, answers, batch_size=16, desc="normalisation", ended=ended)
        fitted = fit_normalization(raw)
    else:
        raw_members = score_member_answers(scorer, prompts, answers, batch_size=16, desc="normalisation", ended=ended)
        fitted, members = fit_members(raw_members)
    extra = {"members": members} if members else {}
    write_normalization(folder, {**fitted, "max_length": scorer.max_length, **extra}, source)
    metrics["normalization"] = {**fitted, "source": source, **extra}
    if members:
        gains, biases = (torch.tensor([m[k] for m in members]) for k in ("gain", "bias"))
        return (gains * raw_members + biases).mean(dim=-1).tolist()  # the ensemble's score, as `score` gives it
    return [fitted["gain"] * x + fitted["bias"] for x in raw]


def _evaluate(scorer, test, batch_size: int, bins: int, metrics: dict) -> None:
    """metrics["test"]: held-out metrics of the raw scores (an ensemble: the members' mean), and for an
    ensemble metrics["test_members"]: each member's accuracy and calibration, from the same pass."""
    if scorer.members == 1:
        scores = score_rankings(scorer, test, batch_size, desc="held-out")
    else:
        members = score_ranking_members(scorer, test, batch_size, desc="held-out")
        scores = by_ranking(test, members.mean(dim=-1).tolist())
        metrics["test_members"] = member_metrics(test, members, bins)
    metrics["test"] = pair_metrics(test, scores, bins)


def _print_summary(metrics: dict, final: Path) -> None:
    lines = [f"reward model written to {final} ({metrics['train_pairs']} training pairs from "
             f"{metrics['train_rankings']} rankings, {metrics['train_seconds']:.0f} s)"]
    test = metrics.get("test")
    if test and test.get("pairs"):
        lines.append(f"held-out ({test['pairs']} pairs, {metrics['test_prompts']} prompts never trained on): "
                     f"accuracy {test['accuracy']:.3f} | longer-answer baseline {test['length_baseline_accuracy']:.3f}"
                     f" | loss {test['loss']:.3f} | calibration error {test['expected_calibration_error']:.3f}")
    members = [m["accuracy"] for m in metrics.get("test_members", []) if m.get("accuracy") is not None]
    if members:
        lines.append(f"ensemble of {metrics['ensemble_size']} members: held-out accuracy {min(members):.3f} to "
                     f"{max(members):.3f} each (their mean's is the one above)")
    norm = metrics["normalization"]
    lines.append(f"normalisation: gain {norm['gain']:.4f}, bias {norm['bias']:.4f} "
                 f"(raw mean {norm['raw_mean']:.3f}, std {norm['raw_std']:.3f} over {norm['samples']} answers)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
