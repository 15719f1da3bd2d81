"""`python -m sft --config configs/sft.yaml`: fine-tune a causal LM on demonstrations.

Checkpoints go to runs/<run>/sft.work/ (so `--resume` survives a crash); the finished model,
with `metrics.json` and `loss.png`, is published to runs/<run>/sft/ in one rename.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ranktune.config import lora_config, parse_config
from ranktune.errors import exit_on_input_error
from ranktune.jsonl import write_json_atomic
from ranktune.model_card import write_model_card
from ranktune.models import DEFAULT_MODEL, load_causal_lm
from ranktune.plots import plot_curves
from ranktune.records import read_demonstrations
from ranktune.runs import check_writable, publish_folder, resume_point, stage_dir, work_dir
from ranktune.tracking import check_report_to, point_trackers, tracker_dir
from sft.config import SFTScriptArguments
from sft.data import split_records, to_text_dataset


def _eval_loss(trainer, dataset) -> float:
    return float(trainer.evaluate(eval_dataset=dataset, metric_key_prefix="eval")["eval_loss"])


@exit_on_input_error
def main(args: list[str] | None = None) -> Path:
    from trl import ModelConfig, SFTConfig, SFTTrainer

    script_args, training_args, model_args = parse_config((SFTScriptArguments, SFTConfig, ModelConfig), args)
    spec = model_args.model_name_or_path or DEFAULT_MODEL
    final = stage_dir(script_args.run, "sft", script_args.runs_dir)
    work = work_dir(final)
    check_writable(final.parent)
    check_report_to(training_args)

    # Read and check all data before loading a model: bad input should fail in a second.
    records = read_demonstrations(script_args.data)
    extra = read_demonstrations(script_args.extra_eval_data) if script_args.extra_eval_data else None
    train_records, eval_records = split_records(records, script_args.eval_fraction, training_args.seed)
    if script_args.max_train_samples:
        train_records = train_records[: script_args.max_train_samples]

    resume_from = resume_point(work, script_args.resume)
    training_args.output_dir = str(work)
    training_args.completion_only_loss = True

    model, tokenizer = load_causal_lm(spec)
    train_ds = to_text_dataset(train_records, tokenizer)
    eval_ds = to_text_dataset(eval_records, tokenizer) if eval_records else None
    extra_ds = to_text_dataset(extra, tokenizer) if extra else None

    trainer = SFTTrainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tokenizer, peft_config=lora_config(model_args))
    point_trackers(trainer, tracker_dir(script_args.run, "sft", script_args.runs_dir))

    metrics: dict = {"base_model": spec, "data": script_args.data, "train_examples": len(train_ds),
                     "eval_examples": len(eval_ds) if eval_ds else 0}
    is_main = trainer.accelerator.is_main_process
    # Losses of the untouched model; on resume they were measured by the first attempt.
    state_file = work / "base_losses.json"
    if resume_from and state_file.is_file():
        metrics.update(json.loads(state_file.read_text()))
    else:
        base = {}
        if eval_ds is not None:
            base["base_eval_loss"] = _eval_loss(trainer, eval_ds)
        if extra_ds is not None:
            base["base_extra_eval_loss"] = _eval_loss(trainer, extra_ds)
        if is_main:
            write_json_atomic(state_file, base)
        metrics.update(base)

    start = time.time()
    train_result = trainer.train(resume_from_checkpoint=resume_from)
    metrics["train_seconds"] = round(time.time() - start, 1)
    metrics["train_loss"] = train_result.training_loss
    metrics["global_step"] = trainer.state.global_step
    metrics["world_size"] = trainer.accelerator.num_processes
    if eval_ds is not None:
        metrics["eval_loss"] = _eval_loss(trainer, eval_ds)
    if extra_ds is not None:
        metrics["extra_eval_loss"] = _eval_loss(trainer, extra_ds)
        metrics["extra_eval_data"] = script_args.extra_eval_data
    metrics["log_history"] = trainer.state.log_history

    if hasattr(trainer.model, "merge_and_unload"):  # LoRA: ship a plain model any stage can load
        trainer.model = trainer.model.merge_and_unload()
    staging = work / "final-model"
    # Every process takes part (ZeRO-3 gathers shards here); only the main one writes.
    trainer.save_model(str(staging))
    if is_main:
        write_json_atomic(staging / "metrics.json", metrics)
        plot_curves(trainer.state.log_history, ["loss", "eval_loss"], staging / "loss.png", title="SFT loss")
        write_model_card(staging, "sft", metrics, (training_args, model_args), {
            "demonstrations": script_args.data, "extra held-out demonstrations": script_args.extra_eval_data}, final)
        publish_folder(staging, final)
        shutil.rmtree(work, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    if not is_main:
        return final

    _print_summary(metrics, final)
    return final


def _print_summary(metrics: dict, final: Path) -> None:
    lines = [f"SFT model written to {final}"]
    if "eval_loss" in metrics:
        lines.append(f"held-out loss: base {metrics['base_eval_loss']:.4f} -> SFT {metrics['eval_loss']:.4f}")
    if "extra_eval_loss" in metrics:
        lines.append(f"{metrics['extra_eval_data']}: base {metrics['base_extra_eval_loss']:.4f} "
                     f"-> SFT {metrics['extra_eval_loss']:.4f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
