"""Label quality control: does reliability weighting or consensus save the reward model from bad reviewers?

    python benchmarks/label_quality.py --generate /tmp/lq/pool.jsonl --max_prompts 200
    python benchmarks/label_quality.py --pool /tmp/lq/pool.jsonl --seeds 0 1 2 --out /tmp/lq/run

`--generate` writes the candidate pool: K answers per prompt sampled from `--policy` (the bundled
smollm2-135m by default) by the labeling app's sampler, through `benchmarks/reward_rankings.py
--generate` (one simulated ranking per item, which this benchmark ignores); each record carries
`gold`, the noise-free `ranktune.gold.gold_score` of every answer.

With `--pool`, per seed: the prompts are split, seeded and prompt-disjoint, into labelled (train)
and held-out (test) items. Each panel of five simulated reviewers labels the train items through
the real path (a fresh SQLite `LabelStore` with overlap 3, `labeling_ui.simulate.simulate_reviews`,
`labeling_ui.export.export`):

    clean  5 good reviewers (`simulated_panel(5, noise 0.3, disagreement 0.5, seed)`)
    bad1   4 good + 1 adversarial (reversed gold)
    bad2   3 good + 1 adversarial + 1 random

and reward models are trained on the export folder by `reward.train.main` (the code path of
`python -m reward`), one child process at a time, the same seed and settings for every condition:
(d) the clean panel, `--label_weighting all`; on each bad panel (a) `all`, (b) `reliability`,
(c) `consensus`. Held-out metric: gold agreement - over every pair of answers of a test item whose
gold scores differ, the share the reward model orders the same way (a tie in score counts half),
s.e. clustered by prompt - and each condition's paired difference from (d) on the same pairs.

The reliability check needs no training: for every bad kind of `ranktune.gold.BAD_KINDS` alone
(4 good + it) and for the pair adversarial + random (3 good + them), does `assess` (as the
export's reviewers.json has it) rank every bad reviewer below every good one?

Beside them: the labels' own gold agreement on the train items (all rankings, reliability-weighted,
consensus) and "the longer answer wins" on the test items. Every condition's result is kept in
--out/seed-N/<condition>.json; a rerun with the same --out and settings reuses it (--fresh: not),
so an interrupted run resumes. `--report --out/results.json` prints the tables again.

Sizing on the 2-core CPU (one training of 192 rankings, LoRA r 16 on the top 8 layers: about
160 s idle): `--max_train_items 64` (192 rankings a condition from 3 reviewers an item), 60
held-out items a seed, ~50 min for 3 seeds when nothing else runs. Under load, `--threads 1`
was far faster than torch's 2 threads fighting another process for the 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import random
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ranktune.stats import mean_se  # noqa: E402,F401 (also lq.mean_se for benchmarks/position_bias.py)

ROOT = Path(__file__).resolve().parent.parent
GOLD_TOL = 1e-6
# panel name -> (good reviewers, bad kinds)
PANELS = {"clean": (5, ()), "bad1": (4, ("adversarial",)), "bad2": (3, ("adversarial", "random"))}
# condition -> (panel, label_weighting)
CONDITIONS = {"d_clean_all": ("clean", "all"),
              "a_bad1_all": ("bad1", "all"), "b_bad1_reliability": ("bad1", "reliability"),
              "c_bad1_consensus": ("bad1", "consensus"),
              "a_bad2_all": ("bad2", "all"), "b_bad2_reliability": ("bad2", "reliability"),
              "c_bad2_consensus": ("bad2", "consensus")}
REFERENCE = "d_clean_all"
LETTER = {"all": "(a) all", "reliability": "(b) reliability", "consensus": "(c) consensus"}


def generate(opts) -> None:
    from benchmarks.reward_rankings import generate as rr_generate

    rr_generate(argparse.Namespace(
        generate=opts.generate, prompts=opts.prompts, max_prompts=opts.max_prompts, policy=opts.policy, k=opts.k,
        max_new_tokens=opts.max_new_tokens, gen_batch_size=opts.gen_batch_size, seed=opts.gen_seed,
        reviewers=1, noise=opts.noise, disagreement=opts.disagreement, reviewers_per_item=1))


# ---------------------------------------------------------------------------------------------
# Data


def read_pool(path: str) -> tuple[list[dict], list]:
    """The pool's raw records and, in the same order, their `reward.records.Ranking`s (what the scorer takes)."""
    from benchmarks.reward_hh import line_number
    from reward.records import read_rankings

    rows = {n: json.loads(line) for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1)
            if line.strip()}
    rankings, _ = read_rankings(path)
    records = [rows[line_number(r)] for r in rankings]
    if any(rec.get("gold") is None for rec in records):
        raise SystemExit(f"{path}: every record needs `gold` (write the pool with --generate)")
    return records, rankings


def split_items(n: int, test_fraction: float, seed: int, max_train: int | None, max_test: int | None):
    """Seeded, prompt-disjoint (every pool record is a distinct prompt): train indices, test indices."""
    order = list(range(n))
    random.Random(f"label-quality:{seed}").shuffle(order)
    n_test = max(1, round(test_fraction * n))
    test, train = sorted(order[:n_test]), order[n_test:]
    train = sorted(train[:max_train] if max_train else train)
    return train, test[:max_test] if max_test else test


def make_panel(name: str, seed: int, opts) -> tuple[list, set[str]]:
    """The reviewers of a panel (good ones from `simulated_panel`, bad ones from `bad_panel`), and the bad names."""
    from labeling_ui.simulate import bad_panel
    from ranktune.gold import simulated_panel

    n_good, kinds = name if isinstance(name, tuple) else PANELS[name]
    good = simulated_panel(n_good, noise=opts.noise, disagreement=opts.disagreement, seed=seed)
    bad = bad_panel(",".join(kinds), seed=seed, noise=opts.noise) if kinds else []
    return good + bad, {r.name for r in bad}


def label(records: list[dict], panel: list, folder: Path, overlap: int, policy: str, shuffle: bool = False) -> dict:
    """Fresh SQLite store, the train items, the panel's simulated reviews, the export: (summary, seconds).
    `shuffle`: the store's per-claim answer order (LabelStore's `shuffle`); off by default, so every
    reviewer sees the generated order, as when this benchmark's figures in RESULTS.md were measured."""
    from labeling_ui.db import sqlite_url
    from labeling_ui.export import export
    from labeling_ui.simulate import simulate_reviews
    from labeling_ui.store import LabelStore

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    start = time.time()
    store = LabelStore(sqlite_url(folder / "labels.db"), overlap=overlap, shuffle=shuffle)
    try:
        for rec in records:
            store.add_item(rec["prompt"], rec["answers"], rec["ended"], policy, round=1)
        done = simulate_reviews(store, panel)
        summary = export(store, folder / "export")
    finally:
        store.close()
    return {"per_reviewer": done["per_reviewer"], "rankings": summary["rankings"], "pairs": summary["pairs"],
            "consensus_rankings": summary["consensus_rankings"], "tied_pairs": summary["tied_pairs"],
            "identical_answer_pairs_left_out": summary["identical_answer_pairs_left_out"],
            "seconds": round(time.time() - start, 1)}


def reliability_check(export_dir: Path, bad: set[str]) -> dict:
    """From reviewers.json (assess' order, most reliable first): is every bad reviewer below every good one?"""
    reviewers = json.loads((export_dir / "reviewers.json").read_text())
    rel = {r["reviewer"]: r["reliability"] for r in reviewers}
    good_vals = [v for k, v in rel.items() if k not in bad]
    bad_vals = [rel.get(k) for k in sorted(bad)]
    order = [r["reviewer"] for r in reviewers]
    # by value, and by position in the list (an unknown reliability is listed last: not "ranked")
    by_value = all(b is not None for b in bad_vals) and all(g is not None for g in good_vals) and \
        max(bad_vals) < min(good_vals)
    by_order = set(order[-len(bad):]) == bad if bad else True
    return {"ok": bool(by_value and by_order), "order": order, "reliability": rel,
            "bad": {k: {"reliability": rel.get(k), "weight": next(r["weight"] for r in reviewers if r["reviewer"] == k),
                        "warnings": next(r["warnings"] for r in reviewers if r["reviewer"] == k)} for k in sorted(bad)},
            "min_good_reliability": min((g for g in good_vals if g is not None), default=None)}


def label_gold_agreement(export_dir: Path, gold_by_prompt: dict[str, list[float]]) -> dict:
    """How well the training labels themselves agree with gold, on the train items' gold pairs
    (a tie in a ranking = half): every ranking counted once, weighted by its reviewer weight, the consensus."""
    from ranktune.prompting import prompt_text

    def agreement(path: Path, weighted: bool) -> float | None:
        hits = total = 0.0
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            g, ranks = gold_by_prompt[prompt_text(r["prompt"]).strip()], r["ranks"]
            w = r.get("weight", 1.0) if weighted else 1.0
            for i in range(len(g)):
                for j in range(i + 1, len(g)):
                    if abs(g[i] - g[j]) > GOLD_TOL:
                        d = (ranks[j] - ranks[i]) * (g[i] - g[j])  # rank 1 = best
                        hits += w * (1.0 if d > 0 else 0.5 if d == 0 else 0.0)
                        total += w
        return hits / total if total else None

    return {"all": agreement(export_dir / "rankings.jsonl", False),
            "reliability": agreement(export_dir / "rankings.jsonl", True),
            "consensus": agreement(export_dir / "consensus.jsonl", False)}


# ---------------------------------------------------------------------------------------------
# Metric


def gold_cells(test, scores, gold) -> dict[str, list[float]]:
    """Per test prompt: [pairs the scores order as gold does (a tie = half), gold pairs]."""
    from reward.evaluate import pair_win

    cells = defaultdict(lambda: [0.0, 0])
    for r, s, g in zip(test, scores, gold):
        for a in range(len(g)):
            for b in range(a + 1, len(g)):
                if abs(g[a] - g[b]) > GOLD_TOL:
                    cells[r.prompt_key][0] += pair_win((s[a] - s[b]) * (g[a] - g[b]))
                    cells[r.prompt_key][1] += 1
    return dict(cells)


# ---------------------------------------------------------------------------------------------
# The run


def train_args(opts, export_dir: Path, runs_dir: Path, run: str, weighting: str, seed: int) -> list[str]:
    args = ["--config", str(ROOT / "configs" / "reward.yaml"), "--model_name_or_path", opts.model,
            "--data", str(export_dir), "--runs_dir", str(runs_dir), "--run", run,
            "--label_weighting", weighting, "--eval_fraction", "0", "--seed", str(seed),
            "--normalization_samples", str(opts.normalization_samples), "--disable_tqdm", "true",
            "--save_strategy", "no", "--max_length", str(opts.max_length), "--learning_rate", opts.learning_rate,
            "--use_peft", opts.use_peft, *opts.extra]
    if opts.use_peft.lower() == "true":
        args += ["--lora_r", "16", "--lora_alpha", "32", "--lora_target_modules", "all-linear",
                 "--lora_top_layers", str(opts.lora_top_layers)]
    return args


def score_published(name: str, final: str, test, threads: int, queue) -> None:
    """In a child process: score the held-out items with a model an interrupted run of the same condition
    trained and published (what `reward_rankings.run_setting` does after training), and report as it does."""
    import torch

    from ranktune.scoring import RewardScorer
    from reward.evaluate import score_rankings

    torch.set_num_threads(threads)
    start = time.time()
    metrics = json.loads((Path(final) / "metrics.json").read_text())
    scores = score_rankings(RewardScorer.load(final), test, batch_size=16, desc="test")
    queue.put({"setting": name, "scores": scores, "train_rankings": metrics["train_rankings"],
               "train_pairs": metrics["train_pairs"], "steps": metrics["global_step"],
               "train_loss": metrics["train_loss"], "train_seconds": metrics["train_seconds"],
               "cut": metrics["train_answers_cut_to_max_length"], "threads": threads,
               "total_seconds": round(time.time() - start, 1), "peak_rss_mib": metrics.get("peak_rss_mib"),
               "reused_model": True})


def trained(cond: str, export_dir: Path, weighting: str, seed: int, folder: Path, test, opts, ctx, log) -> dict | None:
    """Condition `cond`'s reward model, trained on `export_dir` in a child process, and its scores of `test`
    (run_setting's result, plus the training `args`); None if the child failed. A finished condition of an
    interrupted run (folder/<cond>.json, trained with the same arguments) is read back instead (--fresh: not)."""
    from benchmarks.reward_hh import run_in_child
    from benchmarks.reward_rankings import run_setting

    cache = folder / f"{cond}.json"
    args = train_args(opts, export_dir, folder / "runs", cond, weighting, seed)
    res = json.loads(cache.read_text()) if cache.is_file() and not opts.fresh else None
    if res is not None and res.get("args", args) != args:
        res = None
    if res is None:
        # A model published by an interrupted run from the same arguments is scored, not trained again:
        # the arguments are written before training, into a folder emptied first, and the stage
        # publishes its model in one rename at the end.
        run_folder, sidecar = folder / "runs" / cond, folder / "runs" / cond / "benchmark_args.json"
        final = run_folder / "reward"
        if (final / "metrics.json").is_file() and sidecar.is_file() and json.loads(sidecar.read_text()) == args:
            log(f"seed {seed} {cond}: scoring the model an interrupted run trained")
            job = (score_published, (cond, str(final), test, opts.threads))
        else:
            shutil.rmtree(run_folder, ignore_errors=True)
            run_folder.mkdir(parents=True)
            sidecar.write_text(json.dumps(args) + "\n")
            job = (run_setting, (cond, args, test, opts.threads))
        res, exitcode = run_in_child(ctx, *job)
        if exitcode != 0 or res is None:
            log(f"seed {seed} {cond}: failed (exit code {exitcode})")
            return None
        res["args"] = args
        cache.write_text(json.dumps(res) + "\n")
        if not opts.keep_models:
            shutil.rmtree(folder / "runs" / cond, ignore_errors=True)
    return res


def run_seed(seed: int, records: list[dict], rankings: list, opts, ctx, log) -> dict:
    from ranktune.gold import BAD_KINDS
    from reward.evaluate import clustered_ratio

    folder = Path(opts.out) / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    train_idx, test_idx = split_items(len(records), opts.test_fraction, seed, opts.max_train_items,
                                      opts.max_test_items)
    train_recs = [records[i] for i in train_idx]
    test, gold = [rankings[i] for i in test_idx], [records[i]["gold"] for i in test_idx]
    gold_by_prompt = {rankings[i].prompt_key: records[i]["gold"] for i in train_idx}
    test_pairs = sum(c[1] for c in gold_cells(test, [[0.0] * len(g) for g in gold], gold).values())
    log(f"seed {seed}: {len(train_recs)} train items, {len(test)} test items ({test_pairs} gold pairs)")
    out = {"seed": seed, "train_items": len(train_recs), "test_items": len(test), "test_gold_pairs": test_pairs,
           "labels": {}, "reliability": {}, "conditions": {}}

    # Labelling: the three training panels, then the other bad kinds (reliability check only).
    labelled = {}
    jobs = [(p, PANELS[p]) for p in PANELS] + \
        [(f"only-{k}", (4, (k,))) for k in BAD_KINDS if k != "adversarial"]
    for name, spec in jobs:
        panel, bad = make_panel(spec, seed, opts)
        info = label(train_recs, panel, folder / name, opts.overlap, opts.policy)
        info["label_gold_agreement"] = label_gold_agreement(folder / name / "export", gold_by_prompt)
        out["labels"][name] = info
        labelled[name] = folder / name / "export"
        if bad:
            kinds = ",".join(spec[1])
            out["reliability"][kinds] = reliability_check(labelled[name], bad)
        log(f"seed {seed} {name}: {info['rankings']} rankings, {info['pairs']} pairs, {info['consensus_rankings']} "
            f"consensus, labels' gold agreement all/weighted/consensus "
            + "/".join(f"{v:.3f}" if v is not None else "-" for v in info["label_gold_agreement"].values())
            + f", {info['seconds']} s" + (f"; reliability ok: {out['reliability'][kinds]['ok']} "
                                            f"{out['reliability'][kinds]['order']}" if bad else ""))

    cells = {}
    for cond in opts.conditions:
        panel, weighting = CONDITIONS[cond]
        res = trained(cond, labelled[panel], weighting, seed, folder, test, opts, ctx, log)
        if res is None:
            continue
        cells[cond] = gold_cells(test, res["scores"], gold)
        est, se = clustered_ratio(cells[cond])
        row = {"panel": panel, "label_weighting": weighting, "gold_agreement": est, "gold_agreement_se": se,
               **{k: res[k] for k in ("train_rankings", "train_pairs", "steps", "train_loss", "train_seconds",
                                      "total_seconds", "peak_rss_mib")}}
        out["conditions"][cond] = row
        log(f"seed {seed} {cond}: gold agreement {est:.3f} ± {se:.3f}; {row['train_rankings']} rankings, "
            f"{row['train_pairs']} pairs, {row['steps']} steps, {row['train_seconds']:.0f} s train, "
            f"{row['total_seconds']:.0f} s in all")
    if REFERENCE in cells:
        for cond, row in out["conditions"].items():
            if cond != REFERENCE:
                row["minus_d"], row["minus_d_se"] = clustered_ratio(cells[cond], cells[REFERENCE])
    longer = [[float(len(a)) for a in r.answers] for r in test]  # a baseline: the longer answer wins
    out["longer_answer_wins"] = clustered_ratio(gold_cells(test, longer, gold))
    (folder / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def summarize(per_seed: list[dict], opts) -> dict:
    from ranktune.gold import BAD_KINDS

    summary = {"conditions": {}, "reliability": {}}
    for cond in opts.conditions:
        rows = [s["conditions"][cond] for s in per_seed if cond in s["conditions"]]
        if not rows:
            continue
        m, se = mean_se([r["gold_agreement"] for r in rows])
        entry = {"gold_agreement": m, "gold_agreement_se_over_seeds": se, "seeds": len(rows),
                 "train_rankings": mean_se([r["train_rankings"] for r in rows])[0],
                 "train_pairs": mean_se([r["train_pairs"] for r in rows])[0],
                 "train_seconds": mean_se([r["train_seconds"] for r in rows])[0]}
        if cond != REFERENCE and all("minus_d" in r for r in rows):
            entry["minus_d"], entry["minus_d_se_over_seeds"] = mean_se([r["minus_d"] for r in rows])
        summary["conditions"][cond] = entry
    for kinds in [*BAD_KINDS, "adversarial,random"]:
        summary["reliability"][kinds] = [s["reliability"][kinds]["ok"] for s in per_seed if kinds in s["reliability"]]
    return summary


def fmt(x, se=None, sign=False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    s = f"{x:+.3f}" if sign else f"{x:.3f}"
    return s if se is None or math.isnan(se) else f"{s} ± {se:.3f}"


def print_tables(per_seed: list[dict], summary: dict, opts) -> None:
    from ranktune.gold import BAD_KINDS

    seeds = [s["seed"] for s in per_seed]
    print("\n### Gold agreement on held-out items (s.e. clustered by prompt; paired difference from (d))\n")
    print("| panel | training labels | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± s.e. over seeds | "
          "− (d), per seed | − (d), mean ± s.e. | train rankings / pairs | train s |")
    print("|---" * (7 + len(seeds)) + "|")
    names = {"clean": "clean (5 good)", "bad1": "1 bad (adversarial)", "bad2": "2 bad (adversarial, random)"}
    for cond in opts.conditions:
        if cond not in summary["conditions"]:
            continue
        panel, weighting = CONDITIONS[cond]
        rows = [s["conditions"].get(cond) for s in per_seed]
        e = summary["conditions"][cond]
        label = "(d) all" if cond == REFERENCE else LETTER[weighting]
        per = " | ".join(fmt(r["gold_agreement"], r["gold_agreement_se"]) if r else "-" for r in rows)
        diffs = "; ".join(fmt(r.get("minus_d"), r.get("minus_d_se"), True) if r else "-" for r in rows)
        print(f"| {names[panel]} | {label} | {per} | {fmt(e['gold_agreement'], e['gold_agreement_se_over_seeds'])} | "
              f"{diffs if cond != REFERENCE else '-'} | "
              f"{fmt(e.get('minus_d'), e.get('minus_d_se_over_seeds'), True) if cond != REFERENCE else '-'} | "
              f"{e['train_rankings']:.0f} / {e['train_pairs']:.0f} | {e['train_seconds']:.0f} |")
    longer = [s["longer_answer_wins"] for s in per_seed]
    print("| - | the longer answer wins | " + " | ".join(fmt(*x) for x in longer)
          + f" | {fmt(*mean_se([x[0] for x in longer]))} | | | | |")

    print("\n### Labels' own gold agreement on the train items (all rankings / reliability-weighted / consensus)\n")
    print("| panel | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("|---" * (1 + len(seeds)) + "|")
    for name in per_seed[0]["labels"]:
        print(f"| {name} | " + " | ".join("/".join(fmt(v) for v in s["labels"][name]["label_gold_agreement"].values())
                                          for s in per_seed) + " |")

    print("\n### Does `assess` rank every bad reviewer below every good one? "
          "(bad reviewers' reliability; lowest good)\n")
    print("| bad reviewers | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("|---" * (1 + len(seeds)) + "|")
    for kinds in [*BAD_KINDS, "adversarial,random"]:
        cells = []
        for s in per_seed:
            c = s["reliability"].get(kinds)
            if c is None:
                cells.append("-")
                continue
            vals = ", ".join(fmt(v["reliability"]) for v in c["bad"].values())
            cells.append(f"{'yes' if c['ok'] else '**no**'} ({vals}; good ≥ {fmt(c['min_good_reliability'])})")
        print(f"| {kinds.replace(',', ' + ')} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generate", metavar="OUT.jsonl", help="write the candidate pool (see above)")
    parser.add_argument("--pool", help="the candidate pool that --generate wrote")
    parser.add_argument("--report", metavar="RESULTS.json", help="print the tables of an earlier run's results.json")
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--disagreement", type=float, default=0.5)
    parser.add_argument("--policy", default="smollm2-135m", help="--generate: the sampling model")
    g = parser.add_argument_group("--generate")
    g.add_argument("--prompts", default="data/prompts.jsonl")
    g.add_argument("--max_prompts", type=int, default=200)
    g.add_argument("--k", type=int, default=4)
    g.add_argument("--max_new_tokens", type=int, default=48)
    g.add_argument("--gen_batch_size", type=int, default=8, help="prompts per generate() call")
    g.add_argument("--gen_seed", type=int, default=42)
    t = parser.add_argument_group("--pool (anything not listed goes to python -m reward as is)")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    t.add_argument("--out", default="/tmp/label-quality", help="stores, exports, per-seed and overall results.json")
    t.add_argument("--test_fraction", type=float, default=0.3, help="share of prompts held out, per seed")
    t.add_argument("--max_train_items", type=int, default=None, help="label at most this many train items per seed")
    t.add_argument("--max_test_items", type=int, default=None)
    t.add_argument("--overlap", type=int, default=3, help="reviewers per item (LabelStore overlap)")
    t.add_argument("--conditions", default=",".join(CONDITIONS), help=f"of {', '.join(CONDITIONS)}")
    t.add_argument("--model", default="smollm2-135m", help="the reward model's starting point")
    t.add_argument("--use_peft", default="true")
    t.add_argument("--lora_top_layers", type=int, default=8)
    t.add_argument("--learning_rate", default="5e-4", help="RESULTS.md's rate for LoRA r 16 on the top 8 layers")
    t.add_argument("--max_length", type=int, default=512)
    t.add_argument("--normalization_samples", type=int, default=16,
                   help="answers the normalisation is fitted on: gold agreement reads raw scores, so few do")
    t.add_argument("--threads", type=int, default=None, help="torch threads in the training child")
    t.add_argument("--fresh", action="store_true", help="retrain conditions whose results are cached in --out")
    t.add_argument("--keep_models", action="store_true", help="keep the trained reward models")
    opts, extra = parser.parse_known_args()
    opts.extra = extra
    if opts.report:
        res = json.loads(Path(opts.report).read_text())
        opts.conditions = res["settings"]["conditions"]
        return print_tables(res["per_seed"], res["summary"], opts)
    if bool(opts.pool) == bool(opts.generate):
        parser.error("give exactly one of --pool, --generate and --report")
    if extra and opts.generate:
        parser.error(f"unknown arguments {extra}")
    if opts.generate:
        return generate(opts)
    opts.conditions = [c for c in opts.conditions.split(",") if c]
    if any(c not in CONDITIONS for c in opts.conditions):
        parser.error(f"unknown condition in {opts.conditions}; known: {list(CONDITIONS)}")

    import os

    os.environ.setdefault("TQDM_DISABLE", "1")  # simulate_reviews' and datasets' bars: the log keeps its own lines
    import torch

    opts.threads = opts.threads or torch.get_num_threads()
    root = Path(opts.out)
    root.mkdir(parents=True, exist_ok=True)
    start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - start:6.0f} s] {msg}", flush=True)

    records, rankings = read_pool(opts.pool)
    log(f"{opts.pool}: {len(records)} items; seeds {opts.seeds}; conditions {opts.conditions}; "
        f"reward model {opts.model}, LoRA {opts.use_peft} (top {opts.lora_top_layers}), lr {opts.learning_rate}, "
        f"{opts.threads} threads")
    ctx = multiprocessing.get_context("spawn")
    per_seed = [run_seed(seed, records, rankings, opts, ctx, log) for seed in opts.seeds]
    summary = summarize(per_seed, opts)
    settings = {k: v for k, v in vars(opts).items() if k not in ("generate",)}
    (root / "results.json").write_text(json.dumps(
        {"settings": settings, "summary": summary, "per_seed": per_seed,
         "seconds": round(time.time() - start, 1)}, indent=2) + "\n")
    print_tables(per_seed, summary, opts)
    print(f"\n{time.time() - start:.0f} s in all; results in {root / 'results.json'}")


if __name__ == "__main__":
    main()
