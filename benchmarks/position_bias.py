"""Position bias (issue #17): one answer order for every reviewer, or a fresh order for each?

    python benchmarks/label_quality.py --generate /tmp/lq/pool.jsonl --max_prompts 200   # the pool, once
    python benchmarks/position_bias.py --pool /tmp/lq/pool.jsonl --seeds 0 1 2 --out /tmp/pb/run --max_train_items 64
    python benchmarks/position_bias.py --pool /tmp/lq/pool.jsonl --seeds $(seq 0 29) --out /tmp/pb/labels --labels_only

People favour what they are shown first. If every reviewer sees an item's answers in the same
order, that bias points the same way for all of them: it no longer averages out over an item's
reviewers, and the consensus inherits it. The store's `shuffle` draws each (reviewer, item) claim
its own order instead. This benchmark measures what that is worth to the reward model.

Per seed, the train/test split, the items, the overlap (3 reviewers an item), the panel (five
simulated reviewers, `simulated_panel(5, noise 0.3, disagreement 0.5, seed)`) and the reward
model's settings are `benchmarks/label_quality.py`'s, whose functions this reuses (labelling
through the real store, simulator and export; training in a child process; gold agreement on
held-out items, s.e. clustered by prompt; resume). Three conditions, each labelled and trained once
a seed, `--label_weighting all` (label_quality's (d)):

    clean     the panel without position bias, every reviewer sees the generated order (--clean_order)
    fixed     every reviewer with `position_bias` (--position_bias, 0.3), every one sees the generated order
    shuffled  the same biased panel through a store that shuffles the order per claim

The generated order carries no information (the K answers are independent samples), so in
`fixed` the favoured answer is a random one, but the same one for all reviewers of an item.
`position_bias` is in the gold score's units: the first answer shown gets that much extra utility,
the last none, next to reviewer noise of std 0.3.

Reported: each condition's held-out gold agreement per seed and its mean ± s.e. over seeds;
the paired differences shuffled − fixed, fixed − clean and shuffled − clean (per seed on the same
test pairs, clustered s.e.; then mean ± s.e. over seeds); and, needing no training, what the
labels themselves look like on the train items: their gold agreement (every ranking / reliability-
weighted / the export's consensus), the share of first places that go to each true candidate
(candidate 0 is the one shown first in `fixed`), and how often two reviewers of an item order a
pair of answers the same way. Nothing is tuned and nothing is chosen on the test split.
`--labels_only` stops there (seconds a seed, so many seeds are cheap); `--max_train_items 64 --threads 1`
is label_quality's recorded sizing (about 60 min for 3 seeds on the 2-core CPU).
Results: --out/seed-N/<condition>.json (reused by a rerun with the same settings and the same
labels; --fresh: not), --out/seed-N/results.json and --out/results.json; `--report` prints the
tables again.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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

from benchmarks import label_quality as lq  # noqa: E402

# condition -> (biased panel?, shuffled order?); clean's order is --clean_order
CONDITIONS = {"clean": (False, None), "fixed": (True, False), "shuffled": (True, True)}
# paired differences reported: (minuend, subtrahend)
DIFFERENCES = (("shuffled", "fixed"), ("fixed", "clean"), ("shuffled", "clean"))


def condition_setup(cond: str, opts) -> tuple[float, bool]:
    """A condition's (position bias of every reviewer, whether the store shuffles the answers)."""
    biased, shuffle = CONDITIONS[cond]
    return (opts.position_bias if biased else 0.0), (opts.clean_order == "shuffled" if shuffle is None else shuffle)


class _SeededSecrets:
    """`secrets` as the store uses it, but `randbelow` from a seeded generator."""

    def __init__(self, real, key: str):
        self._real, self._rng = real, random.Random(key)

    def randbelow(self, n: int) -> int:
        return self._rng.randrange(n)

    def __getattr__(self, name):
        return getattr(self._real, name)


@contextlib.contextmanager
def seeded_orders(key: str):
    """The store draws each claim's order seed with `secrets.randbelow` (as it should for people); here,
    in this process and while labelling only, from a generator seeded by `key`, so that a rerun (and a
    resumed run) shows every reviewer the same orders. Yields whether it could (False: the store draws
    its orders some other way now, and the shuffled condition is not reproducible)."""
    import labeling_ui.store as store_module

    real = getattr(store_module, "secrets", None)
    if real is None or not hasattr(real, "randbelow"):
        yield False
        return
    store_module.secrets = _SeededSecrets(real, key)
    try:
        yield True
    finally:
        store_module.secrets = real


# ---------------------------------------------------------------------------------------------
# What the labels look like (no training)


def _rankings(export_dir: Path) -> list[dict]:
    lines = (export_dir / "rankings.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def first_place_shares(rankings: list[dict]) -> list[float]:
    """Share of the rankings' first places that each true candidate (the generated order) takes; answers
    tied first share it."""
    k = max(len(r["ranks"]) for r in rankings)
    shares = [0.0] * k
    for r in rankings:
        top = [i for i, v in enumerate(r["ranks"]) if v == 1]
        for i in top:
            shares[i] += 1.0 / len(top)
    return [s / len(rankings) for s in shares]


def gold_first_shares(records: list[dict]) -> list[float]:
    """The same for the noise-free gold order: how the best answer is spread over the candidates."""
    k = max(len(rec["gold"]) for rec in records)
    shares = [0.0] * k
    for rec in records:
        best = max(rec["gold"])
        top = [i for i, g in enumerate(rec["gold"]) if abs(g - best) <= lq.GOLD_TOL]
        for i in top:
            shares[i] += 1.0 / len(top)
    return [s / len(records) for s in shares]


def reviewer_agreement(rankings: list[dict]) -> float | None:
    """Over every two rankings of one item and every pair of answers neither of them ties: the share
    ordered the same way. Position bias that is the same for everyone raises it (without being right)."""
    by_item = defaultdict(list)
    for r in rankings:
        by_item[r["item_id"]].append(r["ranks"])
    same = total = 0
    for ranks in by_item.values():
        for x in range(len(ranks)):
            for y in range(x + 1, len(ranks)):
                a, b = ranks[x], ranks[y]
                for i in range(len(a)):
                    for j in range(i + 1, len(a)):
                        if a[i] != a[j] and b[i] != b[j]:
                            same += (a[i] < a[j]) == (b[i] < b[j])
                            total += 1
    return same / total if total else None


def labels_digest(rankings: list[dict]) -> str:
    """What the reward model learns from, independent of the random ranking ids: item, reviewer, ranks."""
    rows = sorted((r["item_id"], r["reviewer"], tuple(r["ranks"])) for r in rankings)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def forget_if_relabelled(folder: Path, cond: str, digest: str) -> None:
    """A cached result (and any published model) of `cond` trained on other labels is dropped before
    label_quality's resume logic, which checks only the training arguments, could reuse it."""
    stamp = folder / f"{cond}.labels"
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return
    (folder / f"{cond}.json").unlink(missing_ok=True)
    shutil.rmtree(folder / "runs" / cond, ignore_errors=True)
    stamp.write_text(digest + "\n")


# ---------------------------------------------------------------------------------------------
# The run


def run_seed(seed: int, records: list[dict], rankings: list, opts, ctx, log) -> dict:
    from ranktune.gold import simulated_panel
    from reward.evaluate import clustered_ratio

    folder = Path(opts.out) / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    train_idx, test_idx = lq.split_items(len(records), opts.test_fraction, seed, opts.max_train_items,
                                         opts.max_test_items)
    train_recs = [records[i] for i in train_idx]
    test, gold = [rankings[i] for i in test_idx], [records[i]["gold"] for i in test_idx]
    gold_by_prompt = {rankings[i].prompt_key: records[i]["gold"] for i in train_idx}
    test_pairs = sum(c[1] for c in lq.gold_cells(test, [[0.0] * len(g) for g in gold], gold).values())
    log(f"seed {seed}: {len(train_recs)} train items, {len(test)} test items ({test_pairs} gold pairs)")
    out = {"seed": seed, "train_items": len(train_recs), "test_items": len(test), "test_gold_pairs": test_pairs,
           "gold_first_place": gold_first_shares(train_recs), "labels": {}, "conditions": {}, "differences": {}}

    exports = {}
    for cond in opts.conditions:
        bias, shuffle = condition_setup(cond, opts)
        panel = simulated_panel(opts.reviewers, noise=opts.noise, disagreement=opts.disagreement, seed=seed,
                                position_bias=bias)
        with seeded_orders(f"position-bias:{seed}:{cond}") as seeded:
            info = lq.label(train_recs, panel, folder / cond, opts.overlap, opts.policy, shuffle=shuffle)
        info["orders_seeded"] = seeded
        export_dir = exports[cond] = folder / cond / "export"
        ranked = _rankings(export_dir)
        info.update(position_bias=bias, shuffle=shuffle,
                    label_gold_agreement=lq.label_gold_agreement(export_dir, gold_by_prompt),
                    first_place=first_place_shares(ranked), reviewer_agreement=reviewer_agreement(ranked),
                    labels_digest=labels_digest(ranked))
        out["labels"][cond] = info
        log(f"seed {seed} {cond} (bias {bias}, {'shuffled' if shuffle else 'fixed'} order): {info['rankings']} "
            f"rankings, {info['pairs']} pairs; labels' gold agreement all/weighted/consensus "
            + "/".join(lq.fmt(v) for v in info["label_gold_agreement"].values())
            + "; first places by candidate " + " ".join(f"{v:.2f}" for v in info["first_place"])
            + f"; reviewers agree {lq.fmt(info['reviewer_agreement'])}")

    cells = {}
    for cond in [] if opts.labels_only else opts.conditions:
        forget_if_relabelled(folder, cond, out["labels"][cond]["labels_digest"])
        res = lq.trained(cond, exports[cond], opts.label_weighting, seed, folder, test, opts, ctx, log)
        if res is None:
            continue
        cells[cond] = lq.gold_cells(test, res["scores"], gold)
        est, se = clustered_ratio(cells[cond])
        row = {"gold_agreement": est, "gold_agreement_se": se,
               **{k: res.get(k) for k in ("train_rankings", "train_pairs", "steps", "train_loss", "train_seconds",
                                          "total_seconds", "peak_rss_mib")}}
        out["conditions"][cond] = row
        log(f"seed {seed} {cond}: gold agreement {est:.3f} ± {se:.3f}; {row['train_rankings']} rankings, "
            f"{row['train_pairs']} pairs, {row['train_seconds']:.0f} s train, {row['total_seconds']:.0f} s in all")
    for a, b in DIFFERENCES:
        if a in cells and b in cells:
            d, se = clustered_ratio(cells[a], cells[b])
            out["differences"][f"{a}-{b}"] = {"difference": d, "se": se}
            log(f"seed {seed} {a} − {b}: {d:+.3f} ± {se:.3f}")
    longer = [[float(len(x)) for x in r.answers] for r in test]  # a baseline: the longer answer wins
    out["longer_answer_wins"] = clustered_ratio(lq.gold_cells(test, longer, gold))
    (folder / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def summarize(per_seed: list[dict], conditions: list[str]) -> dict:
    summary = {"conditions": {}, "differences": {}, "labels": {}}
    for cond in conditions:
        rows = [s["conditions"][cond] for s in per_seed if cond in s["conditions"]]
        if rows:
            m, se = lq.mean_se([r["gold_agreement"] for r in rows])
            summary["conditions"][cond] = {"gold_agreement": m, "gold_agreement_se_over_seeds": se,
                                           "seeds": len(rows)}
        labs = [s["labels"][cond] for s in per_seed if cond in s["labels"]]
        if labs:
            summary["labels"][cond] = {
                **{f"gold_agreement_{k}": lq.mean_se([lab["label_gold_agreement"][k] for lab in labs])
                   for k in ("all", "reliability", "consensus")},
                "first_place": [lq.mean_se([lab["first_place"][i] for lab in labs])[0]
                                for i in range(len(labs[0]["first_place"]))],
                "reviewer_agreement": lq.mean_se([lab["reviewer_agreement"] for lab in labs])}
    summary["label_differences"] = {}
    for a, b in DIFFERENCES:  # the labels' gold agreement, paired by seed (the same train items)
        both = [s["labels"] for s in per_seed if a in s["labels"] and b in s["labels"]]
        diffs = {w: [lab[a]["label_gold_agreement"][w] - lab[b]["label_gold_agreement"][w] for lab in both
                     if None not in (lab[a]["label_gold_agreement"][w], lab[b]["label_gold_agreement"][w])]
                 for w in ("all", "consensus")}
        if all(diffs.values()):
            summary["label_differences"][f"{a}-{b}"] = {w: lq.mean_se(d) for w, d in diffs.items()}
    for a, b in DIFFERENCES:
        key = f"{a}-{b}"
        diffs = [s["differences"][key]["difference"] for s in per_seed if key in s["differences"]]
        if diffs:
            m, se = lq.mean_se(diffs)
            summary["differences"][key] = {"difference": m, "se_over_seeds": se, "seeds": len(diffs)}
    return summary


NAMES = {"clean": "clean (no position bias)", "fixed": "biased, one order for all",
         "shuffled": "biased, an order per reviewer"}


def print_tables(per_seed: list[dict], summary: dict, settings: dict) -> None:
    conds = [c for c in settings["conditions"] if c in summary["conditions"] or c in summary["labels"]]
    if summary["conditions"]:
        print_reward_tables(per_seed, summary, settings, conds)
    print_label_table(per_seed, summary, conds)


def print_reward_tables(per_seed: list[dict], summary: dict, settings: dict, conds: list[str]) -> None:
    seeds = [s["seed"] for s in per_seed]
    bias = settings["position_bias"]
    print(f"\n### Reward model: gold agreement on held-out items (position bias {bias}; s.e. clustered by prompt)\n")
    print("| condition | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± s.e. over seeds |")
    print("|---" * (2 + len(seeds)) + "|")
    for cond in conds:
        e = summary["conditions"].get(cond)
        per = " | ".join(lq.fmt(r["gold_agreement"], r["gold_agreement_se"]) if (r := s["conditions"].get(cond))
                         else "-" for s in per_seed)
        print(f"| {cond}: {NAMES[cond]} | {per} | "
              f"{lq.fmt(e['gold_agreement'], e['gold_agreement_se_over_seeds']) if e else '-'} |")
    longer = [s["longer_answer_wins"] for s in per_seed]
    print("| the longer answer wins | " + " | ".join(lq.fmt(*x) for x in longer)
          + f" | {lq.fmt(*lq.mean_se([x[0] for x in longer]))} |")

    print("\n### Paired differences (same test pairs; per seed clustered s.e., then mean ± s.e. over seeds)\n")
    print("| difference | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± s.e. over seeds |")
    print("|---" * (2 + len(seeds)) + "|")
    for key, e in summary["differences"].items():
        per = " | ".join(lq.fmt(d["difference"], d["se"], True) if (d := s["differences"].get(key)) else "-"
                         for s in per_seed)
        print(f"| {key.replace('-', ' − ')} | {per} | {lq.fmt(e['difference'], e['se_over_seeds'], True)} |")



def print_label_table(per_seed: list[dict], summary: dict, conds: list[str]) -> None:
    print(f"\n### The labels on the train items (mean ± s.e. over {len(per_seed)} seeds; no training)\n")
    k = len(per_seed[0]["gold_first_place"])
    print("| condition | gold agreement: all / weighted / consensus | first places, candidates "
          + " ".join(str(i) for i in range(k)) + " | two reviewers order a pair alike |")
    print("|---|---|---|---|")
    for cond in conds:
        e = summary["labels"].get(cond)
        if not e:
            continue
        agree = " / ".join(lq.fmt(*e[f"gold_agreement_{w}"]) for w in ("all", "reliability", "consensus"))
        print(f"| {cond} | {agree} | " + " ".join(f"{v:.2f}" for v in e["first_place"])
              + f" | {lq.fmt(*e['reviewer_agreement'])} |")
    gold_first = [lq.mean_se([s["gold_first_place"][i] for s in per_seed])[0] for i in range(k)]
    print("| gold (noise-free) | 1 / 1 / 1 | " + " ".join(f"{v:.2f}" for v in gold_first) + " | 1 |")
    if summary.get("label_differences"):
        print("\nThe labels' gold agreement, paired by seed (every ranking; consensus):")
    for key, e in summary.get("label_differences", {}).items():
        print(f"- {key.replace('-', ' − ')}: {lq.fmt(*e['all'], sign=True)}; {lq.fmt(*e['consensus'], sign=True)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", help="the candidate pool that `label_quality.py --generate` wrote")
    parser.add_argument("--report", metavar="RESULTS.json", help="print the tables of an earlier run's results.json")
    parser.add_argument("--position_bias", type=float, default=0.3,
                        help="extra utility of the first answer shown (the last: none), for every biased reviewer")
    parser.add_argument("--clean_order", choices=("fixed", "shuffled"), default="fixed",
                        help="the order the unbiased reference panel sees")
    parser.add_argument("--reviewers", type=int, default=5, help="simulated reviewers in the panel")
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--disagreement", type=float, default=0.5)
    parser.add_argument("--policy", default="smollm2-135m", help="the items' policy name in the store")
    t = parser.add_argument_group("--pool (anything not listed goes to python -m reward as is)")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    t.add_argument("--out", default="/tmp/position-bias", help="stores, exports, per-seed and overall results.json")
    t.add_argument("--test_fraction", type=float, default=0.3, help="share of prompts held out, per seed")
    t.add_argument("--max_train_items", type=int, default=None, help="label at most this many train items per seed")
    t.add_argument("--max_test_items", type=int, default=None)
    t.add_argument("--overlap", type=int, default=3, help="reviewers per item (LabelStore overlap)")
    t.add_argument("--conditions", default=",".join(CONDITIONS), help=f"of {', '.join(CONDITIONS)}")
    t.add_argument("--label_weighting", default="all", help="what the reward models learn from (python -m reward)")
    t.add_argument("--model", default="smollm2-135m", help="the reward model's starting point")
    t.add_argument("--use_peft", default="true")
    t.add_argument("--lora_top_layers", type=int, default=8)
    t.add_argument("--learning_rate", default="5e-4", help="RESULTS.md's rate for LoRA r 16 on the top 8 layers")
    t.add_argument("--max_length", type=int, default=512)
    t.add_argument("--normalization_samples", type=int, default=16,
                   help="answers the normalisation is fitted on: gold agreement reads raw scores, so few do")
    t.add_argument("--threads", type=int, default=None, help="torch threads in the training child")
    t.add_argument("--labels_only", action="store_true",
                   help="label and measure the labels only (seconds a seed): no reward models")
    t.add_argument("--fresh", action="store_true", help="retrain conditions whose results are cached in --out")
    t.add_argument("--keep_models", action="store_true", help="keep the trained reward models")
    opts, extra = parser.parse_known_args()
    opts.extra = extra
    if opts.report:
        res = json.loads(Path(opts.report).read_text())
        return print_tables(res["per_seed"], summarize(res["per_seed"], res["settings"]["conditions"]), res["settings"])
    if not opts.pool:
        parser.error("give --pool or --report")
    opts.conditions = [c for c in opts.conditions.split(",") if c]
    if any(c not in CONDITIONS for c in opts.conditions):
        parser.error(f"unknown condition in {opts.conditions}; known: {list(CONDITIONS)}")
    if not opts.position_bias > 0 or math.isinf(opts.position_bias):
        parser.error("--position_bias must be a positive number")

    import os

    os.environ.setdefault("TQDM_DISABLE", "1")  # simulate_reviews' and datasets' bars: the log keeps its own lines
    import torch

    opts.threads = opts.threads or torch.get_num_threads()
    root = Path(opts.out)
    root.mkdir(parents=True, exist_ok=True)
    start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - start:6.0f} s] {msg}", flush=True)

    records, rankings = lq.read_pool(opts.pool)
    log(f"{opts.pool}: {len(records)} items; seeds {opts.seeds}; conditions {opts.conditions}; position bias "
        f"{opts.position_bias}; reward model {opts.model}, LoRA {opts.use_peft} (top {opts.lora_top_layers}), "
        f"lr {opts.learning_rate}, {opts.threads} threads")
    ctx = multiprocessing.get_context("spawn")
    per_seed = [run_seed(seed, records, rankings, opts, ctx, log) for seed in opts.seeds]
    summary = summarize(per_seed, opts.conditions)
    settings = dict(vars(opts))
    (root / "results.json").write_text(json.dumps(
        {"settings": settings, "summary": summary, "per_seed": per_seed,
         "seconds": round(time.time() - start, 1)}, indent=2) + "\n")
    print_tables(per_seed, summary, settings)
    print(f"\n{time.time() - start:.0f} s in all; results in {root / 'results.json'}")


if __name__ == "__main__":
    main()
