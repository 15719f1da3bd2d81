"""Pairwise against listwise (Plackett-Luce) reward learning on the same K-way rankings.

    python benchmarks/reward_rankings.py --generate /tmp/rankings-bench/rankings.jsonl --max_prompts 240
    python benchmarks/reward_rankings.py --data /tmp/rankings-bench/rankings.jsonl --out /tmp/rankings-bench/run

`--generate` writes rankings in the labeling export's format (runs/<run>/export/rankings.jsonl)
with the project's own pipeline: K answers per prompt sampled from `--policy` by the labeling
app's sampler (`labeling_ui.generate.sample_answers`, configs/label.yaml's temperature and top-p),
ranked by the simulated panel of `ranktune.gold` (3 reviewers, noise 0.3, length-taste
disagreement 0.5, as configs/demo.yaml). Each item is ranked by one reviewer, in turn: the CPU
budget goes to distinct prompts (independent test units) rather than to repeat labels of the same
answers, and the panel's disagreement still shows across items (`--reviewers_per_item` for more).
Each record also carries `gold`: the noise-free `gold_score` of every answer.

With `--data`, the rankings are split by prompt inside the benchmark (a prompt is never on both
sides); each setting trains through `reward.train.main` (the code path of `python -m reward`),
in its own process (peak RSS its own), on the same train file with the same seed, learning
rate and LoRA, and differing only in `--loss_type`. The published folder scores the held-out
rankings through `RewardScorer` (what PPO uses). Per setting, on held-out prompts: accuracy on
all non-tied pairs of the reviewers' rankings (s.e. clustered by prompt), by rank distance,
agreement with the gold order, whether the reviewer's best answer scores highest (top-1), the
test losses of both kinds, train time and peak RSS; beside them "the longer answer wins" scored
the same way, and the paired difference listwise - pairwise with its clustered s.e.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SETTINGS = {"pairwise": ["--loss_type", "pairwise"], "listwise": ["--loss_type", "listwise"]}


def generate(opts) -> None:
    """Sample K answers per prompt, have the simulated panel rank them, write the export format."""
    import torch

    from labeling_ui.config import GenerateArguments
    from labeling_ui.generate import sample_answers
    from ranktune.gold import gold_score, simulated_panel
    from ranktune.models import load_causal_lm
    from ranktune.prompting import prompt_text
    from ranktune.records import read_prompts

    seen, prompts = set(), []
    for rec in read_prompts(opts.prompts):
        key = prompt_text(rec["prompt"]).strip()
        if key not in seen:
            seen.add(key)
            prompts.append(rec["prompt"])
    prompts = prompts[:opts.max_prompts]
    gen = GenerateArguments(policy=opts.policy, k=opts.k, max_new_tokens=opts.max_new_tokens,
                            batch_size=opts.gen_batch_size, seed=opts.seed)  # temperature 0.9, top-p 0.95
    panel = simulated_panel(opts.reviewers, opts.noise, opts.disagreement, opts.seed)
    torch.manual_seed(opts.seed)
    model, tokenizer = load_causal_lm(opts.policy)
    model.eval()
    out = Path(opts.generate)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial, start_time, counts = out.with_name(out.name + ".partial"), time.time(), defaultdict(int)
    with partial.open("w", encoding="utf-8") as f:
        for start in range(0, len(prompts), gen.batch_size):
            batch = prompts[start:start + gen.batch_size]
            answers, ended, lengths = sample_answers(model, tokenizer, batch, opts.k, gen)
            for n, (prompt, a, e, tokens) in enumerate(zip(batch, answers, ended, lengths), start):
                counts["tokens"] += sum(tokens)
                if not all(x.strip() or y for x, y in zip(a, e)):  # empty yet cut off: the reader refuses it
                    counts["items_with_an_empty_cut_off_answer_left_out"] += 1
                    continue
                text = prompt_text(prompt)
                gold = [round(gold_score(text, x, y), 4) for x, y in zip(a, e)]
                for j in range(opts.reviewers_per_item):
                    reviewer = panel[(n + j) % len(panel)]
                    row = {"ranking_id": f"bench-{n}-{reviewer.name}", "prompt": prompt, "answers": a, "ended": e,
                           "ranks": reviewer.rank(text, a, e), "reviewer": reviewer.name, "round": 1,
                           "policy": opts.policy, "flagged": False, "gold": gold}
                    f.write(json.dumps(row) + "\n")
                    counts["rankings"] += 1
            f.flush()
            done = min(start + gen.batch_size, len(prompts))
            print(f"{done}/{len(prompts)} prompts, {counts['tokens'] / (time.time() - start_time):.0f} tokens/s",
                  flush=True)
    partial.replace(out)
    print(json.dumps({"out": str(out), "prompts": len(prompts), **counts,
                      "seconds": round(time.time() - start_time, 1)}))


def split(data: str, test_fraction: float, max_train: int | None, seed: int, folder: Path):
    """Train file (the raw records, as `python -m reward` reads them), test rankings, their gold scores."""
    from benchmarks.reward_hh import line_number, write_train_file
    from reward.data import split_by_prompt, subsample
    from reward.records import read_rankings

    rankings, _ = read_rankings(data)
    train, test = split_by_prompt(rankings, test_fraction, seed)
    train = subsample(train, max_train, seed)
    out, rows = write_train_file(data, train, folder)
    gold = [rows[line_number(r)].get("gold") for r in test]
    return out, train, test, gold if all(g is not None for g in gold) else None


def run_setting(name: str, args: list[str], test, threads: int, queue) -> None:
    """In a child process: train, then score the held-out rankings with the published folder."""
    import torch

    from ranktune.scoring import RewardScorer
    from reward.evaluate import score_rankings
    from reward.train import main

    torch.set_num_threads(threads)
    start = time.time()
    final = main(args)
    metrics = json.loads((final / "metrics.json").read_text())
    scores = score_rankings(RewardScorer.load(final), test, batch_size=16, desc="test")
    queue.put({"setting": name, "scores": scores, "train_rankings": metrics["train_rankings"],
               "train_pairs": metrics["train_pairs"], "steps": metrics["global_step"],
               "train_loss": metrics["train_loss"], "train_seconds": metrics["train_seconds"],
               "cut": metrics["train_answers_cut_to_max_length"], "threads": threads,
               "total_seconds": round(time.time() - start, 1),
               "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})


def per_prompt(test, scores, gold) -> dict[str, dict[str, list[float]]]:
    """Per metric, per test prompt: [hits, count] (the unit of the clustered standard errors)."""
    from reward.evaluate import accuracy_cells, pair_win

    out = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    out["accuracy"] = accuracy_cells(test, scores)
    for i, (r, s) in enumerate(zip(test, scores)):
        key = r.prompt_key
        top = max(range(len(s)), key=lambda a: s[a])
        out["top1"][key][0] += r.ranks[top] == 1
        out["top1"][key][1] += 1
        if gold is not None:
            g = gold[i]
            for a in range(len(g)):
                for b in range(a + 1, len(g)):
                    if g[a] != g[b] and r.answers[a].strip() != r.answers[b].strip():
                        out["gold_agreement"][key][0] += pair_win((s[a] - s[b]) * (g[a] - g[b]))
                        out["gold_agreement"][key][1] += 1
            out["gold_top1"][key][0] += g[top] == max(g)
            out["gold_top1"][key][1] += 1
    return out


def evaluate(test, scores, gold) -> dict:
    import torch

    from reward.evaluate import clustered_ratio, pair_metrics
    from reward.losses import plackett_luce_nll

    m = pair_metrics(test, scores)
    cells = per_prompt(test, scores, gold)
    out = {"test_pairs": m["pairs"], "accuracy_by_rank_distance": m["accuracy_by_rank_distance"],
           "pairwise_loss": m["loss"], "ece": m["expected_calibration_error"],
           "listwise_loss": sum(float(plackett_luce_nll(torch.tensor(s), torch.tensor(r.ranks)))
                                for r, s in zip(test, scores)) / len(test)}
    for name in ("accuracy", "top1", "gold_agreement", "gold_top1"):
        if name in cells:
            out[name], out[name + "_se"] = clustered_ratio(cells[name])
    return out, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="rankings JSONL (labeling export format; `gold` per answer optional)")
    parser.add_argument("--generate", metavar="OUT.jsonl", help="write such a file instead (see above)")
    g = parser.add_argument_group("--generate")
    g.add_argument("--policy", default="runs/demo-c/sft")
    g.add_argument("--prompts", default="data/prompts.jsonl")
    g.add_argument("--max_prompts", type=int, default=240)
    g.add_argument("--k", type=int, default=4)
    g.add_argument("--max_new_tokens", type=int, default=48)
    g.add_argument("--gen_batch_size", type=int, default=8, help="prompts per generate() call")
    g.add_argument("--reviewers", type=int, default=3)
    g.add_argument("--noise", type=float, default=0.3)
    g.add_argument("--disagreement", type=float, default=0.5)
    g.add_argument("--reviewers_per_item", type=int, default=1)
    t = parser.add_argument_group("training (anything not listed goes to python -m reward as is)")
    t.add_argument("--model", default="runs/demo-c/sft")
    t.add_argument("--settings", default="pairwise,listwise")
    t.add_argument("--use_peft", default="true")
    t.add_argument("--lora_r", default="16")
    t.add_argument("--lora_alpha", default="32")
    t.add_argument("--lora_target_modules", default="all-linear")
    t.add_argument("--learning_rate", default="2e-4")
    t.add_argument("--max_length", type=int, default=192)
    t.add_argument("--test_fraction", type=float, default=0.18, help="share of prompts held out")
    t.add_argument("--max_train_rankings", type=int, default=None, help="train on a seeded sample")
    t.add_argument("--normalization_samples", type=int, default=64)
    t.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    t.add_argument("--out", default=None, help="keep runs and results.json here (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=42)
    opts, extra = parser.parse_known_args()
    if bool(opts.data) == bool(opts.generate):
        parser.error("give exactly one of --data and --generate")
    if opts.generate:
        return generate(opts)
    names = [s for s in opts.settings.split(",") if s]
    if any(s not in SETTINGS for s in names):
        parser.error(f"unknown setting in {names}; known: {list(SETTINGS)}")

    import torch

    from benchmarks.reward_hh import run_in_child
    from reward.evaluate import clustered_ratio

    root = Path(opts.out) if opts.out else Path(tempfile.mkdtemp(prefix="reward-rankings-"))
    root.mkdir(parents=True, exist_ok=True)
    train_file, train, test, gold = split(opts.data, opts.test_fraction, opts.max_train_rankings, opts.seed, root)
    config = Path(__file__).resolve().parent.parent / "configs" / "reward.yaml"
    common = ["--config", str(config), "--model_name_or_path", opts.model, "--data", str(train_file),
              "--runs_dir", str(root / "runs"), "--eval_fraction", "0", "--max_length", str(opts.max_length),
              "--use_peft", opts.use_peft, "--learning_rate", opts.learning_rate,
              "--normalization_samples", str(opts.normalization_samples), "--seed", str(opts.seed),
              "--disable_tqdm", "true", "--save_strategy", "no", *extra]
    if opts.use_peft.lower() == "true":
        common += ["--lora_r", opts.lora_r, "--lora_alpha", opts.lora_alpha,
                   "--lora_target_modules", opts.lora_target_modules]
    threads = opts.threads or torch.get_num_threads()
    print(f"{len(train)} train rankings, {len(test)} test rankings ({len({r.prompt_key for r in test})} prompts "
          f"never trained on, {sum(len(r.pairs) for r in test)} pairs); gold {'in' if gold else 'not in'} the data; "
          f"settings {names}", flush=True)

    ctx = multiprocessing.get_context("spawn")
    results, cells = [], {}
    for name in names:
        res, exitcode = run_in_child(ctx, run_setting, (name, common + ["--run", name] + SETTINGS[name],
                                                        test, threads))
        if exitcode != 0 or res is None:
            print(f"setting {name}: failed (exit code {exitcode})", flush=True)
            continue
        metrics, cells[name] = evaluate(test, res["scores"], gold)
        res.update(metrics)
        results.append(res)
        print(json.dumps({k: v for k, v in res.items() if k != "scores"}), flush=True)
    longer = [[float(len(a)) for a in r.answers] for r in test]  # "the longer answer wins", in characters
    baseline, cells["longer"] = evaluate(test, longer, gold)
    if gold:
        reviewers = [[-float(x) for x in r.ranks] for r in test]  # the reviewers' own order against gold
        baseline["reviewers_gold_agreement"] = clustered_ratio(per_prompt(test, reviewers, gold)["gold_agreement"])
    paired = {}
    if {"pairwise", "listwise"} <= cells.keys():
        paired = {m: clustered_ratio(cells["listwise"][m], cells["pairwise"][m]) for m in cells["listwise"]}
    (root / "results.json").write_text(json.dumps(
        {"data": opts.data, "model": opts.model, "settings": results, "longer_answer_wins": baseline,
         "listwise_minus_pairwise": paired, "test_rankings": len(test)}, indent=2) + "\n")

    print(f"\n{opts.model}, max_length {opts.max_length}, lr {opts.learning_rate}, LoRA {opts.use_peft}; "
          f"{len(test)} held-out rankings; results in {root / 'results.json'}")
    head = (f"{'setting':<9} {'rankings':>8} {'pairs':>5} {'steps':>5} {'accuracy':>13} {'by dist 1/2/3':>14} "
            f"{'gold agree':>13} {'top-1':>13} {'gold top-1':>10} {'pw loss':>7} {'PL loss':>7} {'train s':>7} "
            f"{'RSS MiB':>7}")
    print(head)
    fmt = lambda r, k: f"{r[k]:.3f} ± {r[k + '_se']:.3f}" if k in r else "-"  # noqa: E731
    for r in results + [{"setting": "longer", **baseline}]:
        dist = "/".join(f"{v['accuracy']:.2f}" for v in r["accuracy_by_rank_distance"].values())
        own = "longer" != r["setting"]
        print(f"{r['setting']:<9} {r.get('train_rankings', '-'):>8} {r.get('train_pairs', '-'):>5} "
              f"{r.get('steps', '-'):>5} {fmt(r, 'accuracy'):>13} {dist:>14} {fmt(r, 'gold_agreement'):>13} "
              f"{fmt(r, 'top1'):>13} {r.get('gold_top1', float('nan')):>10.3f} "
              f"{r['pairwise_loss'] if own else float('nan'):>7.3f} {r['listwise_loss'] if own else float('nan'):>7.3f} "
              f"{r.get('train_seconds', float('nan')):>7.0f} {r.get('peak_rss_mib', '-'):>7}")
    for name, (est, se) in paired.items():
        print(f"listwise - pairwise, {name}: {est:+.3f} ± {se:.3f} (paired, s.e. clustered by prompt)")
    if "reviewers_gold_agreement" in baseline:
        print("reviewers' own rankings agree with gold on {:.3f} ± {:.3f} of gold pairs (noise and length taste)"
              .format(*baseline["reviewers_gold_agreement"]))
    chance = sum(sum(x == 1 for x in r.ranks) / len(r.ranks) for r in test) / len(test)
    print(f"top-1 by chance: {chance:.3f}")


if __name__ == "__main__":
    main()
