"""Reward-model accuracy on real human preferences: Anthropic HH-RLHF (harmless-base).

    python benchmarks/reward_hh.py --data ../shared/data/hh-rlhf/harmless-train.jsonl

The benchmark splits the pairs by prompt into train and test itself (a prompt is never on both
sides), then trains each setting through `reward.train.main` — the code path of `python -m
reward` — on the train part, and scores the same test pairs with the published folder through
`RewardScorer` (what PPO will use). Each setting runs in its own process, so peak memory is its
own. Printed: held-out accuracy beside the "longer answer wins" baseline, train time, peak RSS.

Anchors on HH (harmless): longer answer ~0.55 (on this file it is below 0.5: here the shorter
answer is more often the harmless one), gpt2-large ~0.73.
On HH every ranking is a single pair, where the listwise (Plackett-Luce) loss *is* the pairwise
loss; the settings compared here are therefore full fine-tuning against LoRA.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.variants import cli_args, parse_variant  # noqa: E402
from ranktune.errors import InputError, exit_on_input_error  # noqa: E402

SETTINGS = {
    # name: command-line overrides on top of configs/reward.yaml
    "full": ["--learning_rate", "2e-5"],
    "lora": ["--use_peft", "true", "--lora_r", "16", "--lora_alpha", "32", "--lora_target_modules", "all-linear",
             "--learning_rate", "2e-4"],
}


def setting_args(name: str) -> list[str]:
    """`lora+lora_top_layers=8+max_length=256@5e-4`: a base setting, any `python -m reward` overrides, and
    a learning rate."""
    base, overrides, learning_rate = parse_variant(name)
    return SETTINGS[base] + cli_args(overrides, learning_rate)


def split(data: str, test_pairs: int, validation_pairs: int, report: str, max_train: int | None, seed: int,
          folder: Path) -> tuple[Path, list]:
    """Train file (plain JSONL, as `python -m reward` reads it) and the held-out rankings `report` names.

    Three prompt-disjoint parts: test (the same pairs for a given seed and --test_pairs as before the
    validation part existed), validation (carved from the rest) and train. Settings are chosen on
    validation, trained on train; the chosen one is then scored once on test (`--split test`), trained on
    train + validation, the usual refit before a final test."""
    from reward.data import split_by_prompt, subsample
    from reward.records import read_rankings

    rankings, _ = read_rankings(data)
    train, test = split_by_prompt(rankings, test_pairs / len(rankings), seed)
    train, validation = split_by_prompt(train, validation_pairs / len(train), seed + 1)
    if report == "test":
        train, held_out = train + validation, test
    else:
        held_out = validation
    train = subsample(train, max_train, seed)
    out, _ = write_train_file(data, train, folder)
    return out, held_out


def line_number(ranking) -> int:
    return int(ranking.where.rsplit(":", 1)[1])


def write_train_file(data: str, train: list, folder: Path) -> tuple[Path, dict[int, dict]]:
    """folder/train.jsonl with the raw records of `train` (found by line number, so `python -m reward`
    reads them as it would the original file), and every raw record of `data` by its line number."""
    lines = Path(data).read_text(encoding="utf-8").splitlines()
    rows = {i: json.loads(line) for i, line in enumerate(lines, 1) if line.strip()}
    keep = {line_number(r) for r in train}
    out = folder / "train.jsonl"
    out.write_text("".join(json.dumps(row) + "\n" for i, row in rows.items() if i in keep))
    return out, rows


def end_children_on_sigterm() -> None:
    """A kill of the benchmark (SIGTERM) exits through Python, whose exit ends daemonic children: an
    orphaned child would go on training and writing into the folders a rerun uses."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def run_in_child(ctx, target, args: tuple) -> tuple[dict | None, int]:
    """Run target(*args, queue) in a fresh process (so its peak memory is its own): (what it put, exit code).
    The queue is read before join: a child blocks on exit until its queue is drained, so a result larger
    than a pipe's buffer would otherwise hang both."""
    queue = ctx.Queue()
    # daemon: ended with this process (see `end_children_on_sigterm`), never left training on its own
    proc = ctx.Process(target=target, args=(*args, queue), daemon=True)
    proc.start()
    result = None
    while result is None and (proc.is_alive() or not queue.empty()):
        try:
            result = queue.get(timeout=5)
        except Empty:
            pass
    proc.join()
    return result, proc.exitcode


def run_setting(name: str, args: list[str], test, threads: int, queue) -> None:
    """In a child process: train, then score the held-out pairs with the published folder."""
    import torch

    from ranktune.scoring import RewardScorer
    from reward.evaluate import accuracy_cells, pair_metrics, score_rankings
    from reward.train import main

    torch.set_num_threads(threads)
    start = time.time()
    final = main(args)
    metrics = json.loads((final / "metrics.json").read_text())
    scorer = RewardScorer.load(final)
    scores = score_rankings(scorer, test, batch_size=16, desc="test")
    test_metrics = pair_metrics(test, scores)
    queue.put({"setting": name, "accuracy": test_metrics["accuracy"], "test_pairs": test_metrics["pairs"],
               "length_baseline": test_metrics["length_baseline_accuracy"], "loss": test_metrics["loss"],
               "ece": test_metrics["expected_calibration_error"],
               "train_pairs": metrics["train_pairs"], "train_seconds": metrics["train_seconds"],
               "steps": metrics["global_step"], "train_loss": metrics["train_loss"],
               "cut": metrics["train_answers_cut_to_max_length"], "threads": threads,
               "total_seconds": round(time.time() - start, 1),
               "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "cells": accuracy_cells(test, scores)})


def baseline_cells(path: str, split_name: str, held_out_prompts: set[str]) -> tuple[str, dict]:
    """(name, cells) of the first setting in an earlier results.json, if it scored the same held-out pairs."""
    try:
        earlier = json.loads(Path(path).read_text())
        first = earlier["settings"][0]
        name, cells = first["setting"], first["cells"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise InputError(f"not a reward_hh.py results.json with a setting ({err})", path) from None
    if earlier.get("split") != split_name or set(cells) != held_out_prompts:
        raise InputError(f"setting '{name}' was scored on other held-out pairs (split {earlier.get('split')!r}, "
                         f"{len(cells)} prompts) than this run's {split_name} pairs", path, field="settings")
    return name, cells


@exit_on_input_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="HH-RLHF JSONL (prompt, chosen, rejected)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--settings", default="full,lora",
                        help=f"comma-separated, from {', '.join(SETTINGS)}; each may add +SETTING=VALUE overrides "
                             "of python -m reward and end in @LEARNING_RATE (lora+lora_top_layers=8@5e-4)")
    parser.add_argument("--max_train_rankings", type=int, default=None, help="train on a seeded sample")
    parser.add_argument("--test_pairs", type=int, default=150, help="about this many pairs held out, by prompt")
    parser.add_argument("--validation_pairs", type=int, default=200,
                        help="about this many more, by prompt, for choosing settings")
    parser.add_argument("--split", default="validation", choices=("validation", "test"),
                        help="score on validation pairs (choosing settings; train on the rest) or on test pairs "
                             "(once, for the chosen setting; train on train + validation)")
    parser.add_argument("--max_length", type=int, default=320)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch_size", type=int, default=4, help="pairs per forward pass")
    parser.add_argument("--grad_accum", type=int, default=1, help="forward passes per optimizer step")
    parser.add_argument("--normalization_samples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--baseline", default=None,
                        help="an earlier results.json on the same split: every setting is also paired with its "
                             "first setting (a baseline measured once need not be retrained)")
    parser.add_argument("--out", default=None, help="keep runs and results.json here (default: a temp folder)")
    opts, extra = parser.parse_known_args()  # anything else goes to python -m reward as is
    names = [s for s in opts.settings.split(",") if s]
    unknown = [s for s in names if parse_variant(s)[0] not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; known: {list(SETTINGS)}")

    import torch

    from reward.evaluate import clustered_ratio

    root = Path(opts.out) if opts.out else Path(tempfile.mkdtemp(prefix="reward-hh-"))
    root.mkdir(parents=True, exist_ok=True)
    train_file, test = split(opts.data, opts.test_pairs, opts.validation_pairs, opts.split, opts.max_train_rankings,
                             opts.seed, root)
    config = Path(__file__).resolve().parent.parent / "configs" / "reward.yaml"
    common = ["--config", str(config), "--model_name_or_path", opts.model, "--data", str(train_file),
              "--runs_dir", str(root / "runs"), "--eval_fraction", "0", "--max_length", str(opts.max_length),
              "--num_train_epochs", str(opts.epochs), "--per_device_train_batch_size", str(opts.batch_size),
              "--gradient_accumulation_steps", str(opts.grad_accum),
              "--normalization_samples", str(opts.normalization_samples), "--seed", str(opts.seed),
              "--disable_tqdm", "true", "--save_strategy", "no", *extra]
    threads = opts.threads or torch.get_num_threads()
    held_out_prompts = {r.prompt_key for r in test}
    baseline = baseline_cells(opts.baseline, opts.split, held_out_prompts) if opts.baseline else None
    print(f"HH-RLHF: {len(test)} {opts.split} pairs ({len(held_out_prompts)} prompts never trained on), "
          f"training file {train_file}; settings {names}", flush=True)

    ctx = multiprocessing.get_context("spawn")
    end_children_on_sigterm()
    results = []
    for i, name in enumerate(names):
        args = common + ["--run", f"setting-{i}"] + setting_args(name)
        result, exitcode = run_in_child(ctx, run_setting, (name, args, test, threads))
        if exitcode != 0 or result is None:
            print(f"setting {name}: failed (exit code {exitcode})", flush=True)
            continue
        results.append(result)
        print(json.dumps({k: v for k, v in results[-1].items() if k != "cells"}), flush=True)

    for r in results:
        r["accuracy_se"] = clustered_ratio(r["cells"])[1]
        if r is not results[0]:  # paired with the first setting on the same test pairs
            r["minus_first"] = clustered_ratio(r["cells"], results[0]["cells"])
        if baseline:
            r["minus_baseline"] = [baseline[0], *clustered_ratio(r["cells"], baseline[1])]
    (root / "results.json").write_text(json.dumps({"split": opts.split, "settings": results}, indent=2) + "\n")
    print(f"\nHH-RLHF harmless, {opts.split} pairs, {opts.model}, max_length {opts.max_length}, {opts.epochs:g} epoch(s), "
          f"batch {opts.batch_size} x {opts.grad_accum} pairs; results in {root / 'results.json'}")
    w = max(9, *(len(r["setting"]) + 1 for r in results)) if results else 9
    print(f"{'setting':<{w}} {'train pairs':>11} {'steps':>5} {'test acc':>8} {'(s.e.)':>6} {'- first':>7} "
          f"{'(s.e.)':>6} {'longer wins':>11} {'test loss':>9} {'train s':>8} {'peak RSS MiB':>12}")
    for r in results:
        diff, diff_se = r.get("minus_first", (None, None))
        paired = f"{diff:>+7.3f} {diff_se:>6.3f}" if diff is not None else " " * 14
        print(f"{r['setting']:<{w}} {r['train_pairs']:>11} {r['steps']:>5} {r['accuracy']:>8.3f} "
              f"{r['accuracy_se']:>6.3f} {paired} {r['length_baseline']:>11.3f} {r['loss']:>9.3f} "
              f"{r['train_seconds']:>8.0f} {r['peak_rss_mib']:>12}")
    print("s.e.: clustered by test prompt; '- first': paired difference from the first setting on the same pairs")
    if baseline:
        for r in results:
            name, diff, diff_se = r["minus_baseline"]
            print(f"{r['setting']} - {name} (from {opts.baseline}): {diff:+.3f} (s.e. {diff_se:.3f}), paired")


if __name__ == "__main__":
    main()
