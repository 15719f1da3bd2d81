"""How many rankings does active selection save? Random against ensemble-uncertainty selection.

    python benchmarks/active_learning.py --policy runs/rt-demo/sft --budgets 40,80,160,320 --seeds 3

1. A pool: every prompt of `--prompts` gets `--answer_sets` independent sets of K answers from the
   policy (one item each), generated once and cached in the output folder.
2. The prompts are split three ways: candidates (what reviewers may be sent), validation items
   (for choosing this benchmark's settings) and test items (reported; nobody tunes on them).
3. Each chosen item gets one ranking from the simulated panel (ranktune/gold.py: the gold rule, a
   personal length taste and noise), the same ranking whichever method chose the item.
4. For each seed and method, at each budget: train an ensemble reward model (`python -m reward
   --ensemble_size M`, in a child process) on the rankings so far and measure its gold agreement on
   held-out items: the share of answer pairs whose gold scores differ by more than `--gold_margin`
   that the model orders the same way.
   - random: the budget's items are the next ones of a seeded permutation of the candidates.
   - uncertainty: the first budget is the same random start; each later step sends the candidates
     the last model's members disagree on most (labeling_ui/selection.py: BALD plus diversity).
5. Labels saved, per seed: 1 - (the budget at which the active curve reaches random's final
   agreement, linear between budgets) / (the budget at which random's own curve first reaches it: its
   final budget when the curve rises; on a flat curve nothing is saved) (report/active_learning.py).

results.json is rewritten after every curve, so a stopped run keeps the curves it finished; each
point's scores are kept beside its rankings (scores.json), so a rerun on the same folder trains only
what it has not. `--first_seed N` runs other seeds, and `--combine a.json,b.json` makes one table of
runs on the same pool (checked by its SHA-256) with the same budgets and reward settings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.reward_hh import end_children_on_sigterm, run_in_child  # noqa: E402
from ranktune.jsonl import write_json_atomic  # noqa: E402
from ranktune.runs import run_dir  # noqa: E402
from report.active_learning import FILE, curves, labels_saved  # noqa: E402

METHODS = ("random", "uncertainty")


# ---- the pool ----------------------------------------------------------------------------------

def build_pool(policy: str, prompts: list, k: int, answer_sets: int, max_new_tokens: int, seed: int,
               batch_size: int = 16, sampling_weights: str = "fp32") -> list[dict]:
    """[{item, prompt, answers, ended}]: `answer_sets` items of K sampled answers per prompt."""
    from tqdm.auto import tqdm

    from labeling_ui.config import GenerateArguments
    from labeling_ui.generate import load_policy, sample_answers

    args = GenerateArguments(policy=policy, k=k, max_new_tokens=max_new_tokens, seed=seed,
                             sampling_weights=sampling_weights)
    model, tokenizer = load_policy(args)
    pool = []
    todo = [(p, s) for s in range(answer_sets) for p in prompts]
    for i in tqdm(range(0, len(todo), batch_size), desc="pool answers"):
        batch = todo[i:i + batch_size]
        answers, ended, _ = sample_answers(model, tokenizer, [p for p, _ in batch], k, args)
        for (p, s), a, e in zip(batch, answers, ended):
            pool.append({"item": len(pool), "prompt": p, "answer_set": s, "answers": a, "ended": e})
    return pool


def split_prompts(pool: list[dict], validation: int, test: int, seed: int) -> tuple[list, list, list]:
    """Candidates, validation and test items; a prompt's items are all on one side."""
    keys = sorted({json.dumps(r["prompt"], sort_keys=True) for r in pool})
    random.Random(seed).shuffle(keys)
    side = {k: "test" for k in keys[:test]} | {k: "validation" for k in keys[test:test + validation]}
    parts = {"candidates": [], "validation": [], "test": []}
    for r in pool:
        parts[side.get(json.dumps(r["prompt"], sort_keys=True), "candidates")].append(r)
    return parts["candidates"], parts["validation"], parts["test"]


def prompt_text(prompt) -> str:
    """A prompt as plain text: itself, or chat messages' contents joined."""
    return prompt if isinstance(prompt, str) else "\n".join(m.get("content", "") for m in prompt)


# ---- labels and gold ---------------------------------------------------------------------------

def simulated_ranking(item: dict, panel_seed: int) -> list[int]:
    """The panel's ranking of one item: reviewer and noise fixed by the item, whoever chose it."""
    from ranktune.gold import simulated_panel

    panel = simulated_panel(3, seed=panel_seed * 100_003 + item["item"])
    return panel[item["item"] % len(panel)].rank(item["prompt"], item["answers"], item["ended"])


def gold_pairs(items: list[dict], margin: float) -> list[tuple[int, int, int, int]]:
    """(item index, better answer, worse answer, prompt cluster) for pairs whose gold scores differ by > margin."""
    from ranktune.gold import gold_score

    pairs = []
    for n, r in enumerate(items):
        g = [gold_score(r["prompt"], a, e) for a, e in zip(r["answers"], r["ended"])]
        for i in range(len(g)):
            for j in range(len(g)):
                if g[i] - g[j] > margin:
                    pairs.append((n, i, j, n))
    return pairs


def agreement(scores: list[list[float]], pairs: list) -> float:
    return sum(scores[n][i] > scores[n][j] for n, i, j, _ in pairs) / max(1, len(pairs))


# ---- one reward model --------------------------------------------------------------------------

def write_rankings(items: list[dict], panel_seed: int, path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in items:
            f.write(json.dumps({"prompt": r["prompt"], "answers": r["answers"], "ended": r["ended"],
                                "ranks": simulated_ranking(r, panel_seed)}) + "\n")


def train_and_score(args: list[str], score_sets: dict, threads: int, queue) -> None:
    """In a child process: train, then every set's member scores [[per answer [per member]]]."""
    import torch

    from ranktune.scoring import RewardScorer
    from reward.train import main

    torch.set_num_threads(threads)
    start = time.time()
    final = main(args)
    scorer = RewardScorer.load(final)
    out = {"train_seconds": round(time.time() - start, 1)}
    for name, items in score_sets.items():
        prompts = [r["prompt"] for r in items for _ in r["answers"]]
        answers = [a for r in items for a in r["answers"]]
        ended = [e for r in items for e in r["ended"]]
        members = scorer.score_members(prompts, answers, ended, batch_size=32).tolist() if items else []
        rows, at = [], 0
        for r in items:
            rows.append(members[at:at + len(r["answers"])])
            at += len(r["answers"])
        out[name] = rows
    queue.put(out)


def mean_scores(member_rows: list) -> list[list[float]]:
    return [[sum(m) / len(m) for m in answers] for answers in member_rows]


# ---- the experiment ----------------------------------------------------------------------------

def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_curve(ctx, method: str, seed: int, candidates: list, held_out: dict, budgets: list[int], opts,
              common: list[str], root: Path, shared: dict) -> list[dict]:
    """One learning curve: [{budget, agreement per held-out set, train_seconds}]. `shared` holds the
    results of models already trained, by (seed, items): both methods start from the same random
    items, so the first point is trained once per seed (scoring the pool too when uncertainty follows)."""
    import torch

    import numpy as np

    from labeling_ui.selection import choose, item_uncertainty

    order = list(range(len(candidates)))
    random.Random(seed).shuffle(order)
    chosen: list[int] = []
    curve, pool_members = [], None
    for step, budget in enumerate(budgets):
        want = budget - len(chosen)
        left = [i for i in order if i not in set(chosen)]
        if method == "random" or pool_members is None:
            chosen += left[:want]
        else:
            uncertainty = item_uncertainty(np.array([pool_members[i] for i in left]))  # (n,) from (n, K, M)
            picked = choose(uncertainty, [prompt_text(candidates[i]["prompt"]) for i in left], want, opts.diversity,
                            chosen_before=[prompt_text(candidates[i]["prompt"]) for i in chosen])
            chosen += [left[j] for j in picked]
        folder = root / f"{method}-seed{seed}-b{budget}"
        folder.mkdir(parents=True, exist_ok=True)
        data = folder / "rankings.jsonl"
        write_rankings([candidates[i] for i in chosen], opts.panel_seed, data)
        score_sets = dict(held_out)
        last = step == len(budgets) - 1
        if "uncertainty" in opts.method_list and not last and (method == "uncertainty" or step == 0):
            score_sets["pool"] = candidates
        key = (seed, tuple(chosen))
        if key in shared:
            result = dict(shared[key])
        else:
            # a rerun (after a crash, or with more seeds) reuses what was trained on the same rankings
            cache, digest = folder / "scores.json", _digest(data)
            cached = json.loads(cache.read_text()) if cache.is_file() else None
            if cached and cached["rankings"] == digest and set(score_sets) <= set(cached["result"]):
                result = cached["result"]
            else:
                args = common + ["--data", str(data), "--runs_dir", str(folder / "runs"), "--run", "rm",
                                 "--seed", str(seed)]
                result, code = run_in_child(ctx, train_and_score,
                                            (args, score_sets, opts.threads or torch.get_num_threads()))
                if code != 0 or result is None:
                    raise SystemExit(f"{method} seed {seed} budget {budget}: reward training failed "
                                     f"(exit code {code})")
                write_json_atomic(cache, {"rankings": digest, "result": result})
            if step == 0:
                shared[key] = dict(result)
        if "pool" in result:
            pool_members = result.pop("pool")
        point = {"method": method, "seed": seed, "budget": budget, "train_seconds": result["train_seconds"]}
        for name in held_out:
            point[name] = agreement(mean_scores(result[name]), opts.pairs[name])
        curve.append(point)
        print(json.dumps(point), flush=True)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="runs/rt-demo/sft", help="answers come from this model")
    parser.add_argument("--reward_base", default=None, help="reward models start from this (default: --policy)")
    parser.add_argument("--prompts", default="data/prompts.jsonl")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--answer_sets", type=int, default=2, help="items per prompt in the pool")
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--sampling_weights", default="fp32", choices=("fp32", "int8"),
                        help="int8: the pool's answers from an int8 copy of the policy (faster on a CPU)")
    parser.add_argument("--validation_prompts", type=int, default=40)
    parser.add_argument("--test_prompts", type=int, default=60)
    parser.add_argument("--budgets", default="40,80,160,320")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first_seed", type=int, default=0, help="seeds first_seed .. first_seed + seeds - 1")
    parser.add_argument("--combine", default=None,
                        help="comma-separated results.json files of runs on the same pool and settings (other "
                             "seeds): print and write their table together, training nothing")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--ensemble_size", type=int, default=4)
    parser.add_argument("--diversity", type=float, default=0.5)
    parser.add_argument("--gold_margin", type=float, default=0.25)
    parser.add_argument("--panel_seed", type=int, default=0)
    parser.add_argument("--report_split", default="test", choices=("validation", "test"))
    parser.add_argument("--held_out", default="validation,test",
                        help="the held-out sets each model is scored on (scoring costs ~1 s per 10 answers here)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="pool cache and results (default: a temp folder)")
    parser.add_argument("--run", default=None, help="also write runs/<run>/active_learning.json for its report")
    parser.add_argument("--runs_dir", default="runs")
    opts, extra = parser.parse_known_args()  # anything else goes to python -m reward as is
    budgets = [int(b) for b in opts.budgets.split(",")]
    methods = [m for m in opts.methods.split(",") if m]
    if any(m not in METHODS for m in methods):
        parser.error(f"methods are {', '.join(METHODS)}")

    from ranktune.records import read_prompts

    root = Path(opts.out) if opts.out else Path(tempfile.mkdtemp(prefix="active-"))
    root.mkdir(parents=True, exist_ok=True)
    if opts.combine:
        print_table(combine(opts.combine.split(","), root, opts), root / "results.json")
        return
    pool_file = root / "pool.json"
    if pool_file.is_file():
        pool = json.loads(pool_file.read_text())
    else:
        prompts = [r["prompt"] for r in read_prompts(opts.prompts)]
        start = time.time()
        pool = build_pool(opts.policy, prompts, opts.k, opts.answer_sets, opts.max_new_tokens, opts.panel_seed,
                          sampling_weights=opts.sampling_weights)
        tmp = pool_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(pool))
        tmp.rename(pool_file)
        print(f"pool: {len(pool)} items in {time.time() - start:.0f} s", flush=True)
    candidates, validation, test = split_prompts(pool, opts.validation_prompts, opts.test_prompts, 12345)
    if budgets[-1] > len(candidates):
        parser.error(f"the largest budget ({budgets[-1]}) exceeds the {len(candidates)} candidate items")
    splits = [h for h in opts.held_out.split(",") if h]
    if opts.report_split not in splits or not set(splits) <= {"validation", "test"}:
        parser.error("--held_out is validation and/or test, and includes --report_split")
    held_out = {name: items for name, items in (("validation", validation), ("test", test)) if name in splits}
    opts.method_list = methods
    opts.pairs = {name: gold_pairs(items, opts.gold_margin) for name, items in held_out.items()}
    print(f"{len(candidates)} candidate items; held out: " + ", ".join(
          f"{len(items)} {name} items ({len(opts.pairs[name])} gold pairs)" for name, items in held_out.items())
          + f"; budgets {budgets}; {opts.seeds} seeds; methods {methods}", flush=True)

    config = Path(__file__).resolve().parent.parent / "configs" / "reward.yaml"
    common = ["--config", str(config), "--model_name_or_path", opts.reward_base or opts.policy,
              "--eval_fraction", "0", "--ensemble_size", str(opts.ensemble_size), "--normalization_samples", "128",
              "--disable_tqdm", "true", "--save_strategy", "no", *extra]
    ctx = multiprocessing.get_context("spawn")
    end_children_on_sigterm()
    shared: dict = {}
    results = {"budgets": budgets, "methods": methods, "seeds": 0, "report_split": opts.report_split,
               "points": [], "reward_args": extra, "pool_sha256": _digest(pool_file),
               "settings": {k: v for k, v in vars(opts).items() if k != "pairs"},
               "items": {"candidates": len(candidates), "validation": len(validation), "test": len(test)},
               "gold_pairs": {name: len(pairs) for name, pairs in opts.pairs.items()}, "complete": False}
    for seed in range(opts.first_seed, opts.first_seed + opts.seeds):
        for m in methods:
            results["points"] += run_curve(ctx, m, seed, candidates, held_out, budgets, opts, common, root, shared)
            publish(results, root, opts)  # after every curve: a stopped run keeps what it finished
    results["complete"] = True
    publish(results, root, opts)
    print_table(results, root / "results.json")


def publish(results: dict, root: Path, opts) -> None:
    """results.json (and the run's copy, which its report shows), with the seeds and labels saved so far."""
    results["seeds"] = len({p["seed"] for p in results["points"]})
    results["labels_saved"] = labels_saved(results, results["report_split"])
    write_json_atomic(root / "results.json", results)
    if opts.run:  # report/active_learning.py
        write_json_atomic(run_dir(opts.run, opts.runs_dir) / FILE, results)


def combine(files: list[str], root: Path, opts) -> dict:
    """One table from runs of other seeds on the same pool, budgets and reward settings."""
    runs = [json.loads(Path(f).read_text()) for f in files]
    same = ("budgets", "methods", "report_split", "reward_args", "pool_sha256", "gold_pairs")
    for f, r in zip(files[1:], runs[1:]):
        differ = [k for k in same if r.get(k) != runs[0].get(k)]
        if differ:
            raise SystemExit(f"{f}: not the same experiment as {files[0]} ({', '.join(differ)} differ)")
    points = {(p["method"], p["seed"], p["budget"]): p for r in runs for p in r["points"]}
    results = {**runs[0], "points": list(points.values()), "combined_from": files,
               "complete": all(r.get("complete", True) for r in runs)}
    publish(results, root, opts)
    return results


def print_table(results: dict, path: Path) -> None:
    split, methods, budgets = results["report_split"], results["methods"], results["budgets"]
    print(f"\ngold agreement on {split} items ({results['gold_pairs'][split]} pairs), mean (s.e.) over "
          f"{results['seeds']} seeds")
    print(f"{'budget':>7} " + " ".join(f"{m:>20}" for m in methods))
    table = {m: {b: (v, se) for b, v, se in rows} for m, rows in curves(results, split).items()}
    for b in budgets:
        cells = [table[m].get(b) for m in methods]
        print(f"{b:>7} " + " ".join(f"{c[0]:>12.3f} ({c[1]:.3f})" if c else f"{'-':>20}" for c in cells))
    saved = results["labels_saved"]
    if saved:
        print(f"labels saved reaching random's final agreement: {100 * saved['mean']:.0f}% (s.e. "
              f"{100 * saved['se']:.0f}%; per seed " + ", ".join(f"{100 * x:.0f}%" for x in saved["per_seed"])
              + "; 0% where active never reached it)")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
