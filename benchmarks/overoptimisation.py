"""Over-optimisation and its cure: long PPO runs on a single reward model against an ensemble optimised
conservatively, gold and proxy score against KL (Gao et al. 2022; Coste et al. 2024).

    python -m reward --run oo --data runs/demo/export/rankings.jsonl                    # single
    python -m reward --run oo-ens --data runs/demo/export/rankings.jsonl --ensemble_size 4
    python benchmarks/overoptimisation.py --policy runs/demo/sft --single runs/oo/reward \\
        --ensemble runs/oo-ens/reward --methods single,mean_minus_std@1,min --seeds 3 --updates 60 --run oo

Both reward models are trained on the same rankings (from simulated reviewers, so the gold rule in
ranktune/gold.py is the truth they approximate). Methods:
- `single`: PPO on the single model (what `make rlhf` does);
- `mean`, `min`, `mean_minus_std@λ`: PPO on the ensemble with `--reward_aggregation` (and
  `--uncertainty_coef λ`).
Each (method, seed) runs `python -m rlhf` in its own process from the same SFT policy, prompts and
settings, long enough (and with a KL coefficient small enough) that the policy drifts far from the
start. Every update's rollouts log KL, proxy (the score the run optimises) and gold; the final policy
is also scored on held-out prompts. report/overoptimisation.py bins the updates by KL and says
whether, from the KL where the single model's gold peaks on, the conservative run keeps more gold
by more than a standard error. Extra arguments go to `python -m rlhf` as they are.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.reward_hh import end_children_on_sigterm, run_in_child  # noqa: E402
from ranktune.aggregation import AGGREGATIONS  # noqa: E402
from ranktune.jsonl import write_json_atomic  # noqa: E402
from ranktune.runs import run_dir  # noqa: E402
from report.overoptimisation import FILE, binned, kl_edges, verdict  # noqa: E402


def parse_method(name: str) -> tuple[str, float | None]:
    """`single` | `mean` | `min` | `mean_minus_std@λ` -> (aggregation or 'single', λ)."""
    head, _, coef = name.partition("@")
    if head != "single" and head not in AGGREGATIONS:
        raise ValueError(f"unknown method '{name}': single, or one of {', '.join(AGGREGATIONS)} (mean_minus_std@λ)")
    if coef and head != "mean_minus_std":
        raise ValueError(f"'{name}': only mean_minus_std takes @λ")
    return head, float(coef) if coef else None


def train_one(args: list[str], queue) -> None:
    """In a child process: one PPO run; its per-update log and final held-out evaluation."""
    from rlhf.train import main

    final = main(args)
    metrics = json.loads((final / "metrics.json").read_text())
    updates = [json.loads(line) for line in (final / "metrics.jsonl").read_text().splitlines() if line.strip()]
    queue.put({"updates": [{"update": n + 1, "kl": u["objective/kl"], "proxy": u["objective/scores"],
                            "gold": u["objective/gold"]} for n, u in enumerate(updates)],
               "eval": metrics.get("eval", {}), "train_seconds": metrics.get("train_seconds")})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", default="runs/demo/sft")
    p.add_argument("--single", required=True, help="reward model folder (ensemble_size 1)")
    p.add_argument("--ensemble", required=True, help="reward model folder (ensemble_size N > 1), same labels")
    p.add_argument("--prompts", default="data/prompts.jsonl")
    p.add_argument("--methods", default="single,mean_minus_std@1")
    p.add_argument("--conservative", default=None, help="the method the verdict compares (default: the 2nd)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--updates", type=int, default=60, help="PPO updates of 8 episodes per run")
    p.add_argument("--learning_rate", type=float, default=3e-4)
    p.add_argument("--kl_coef", type=float, default=0.01, help="small: the policy must be free to drift")
    p.add_argument("--out", default=None)
    p.add_argument("--run", default=None, help="also write runs/<run>/overoptimisation.json for its report")
    p.add_argument("--runs_dir", default="runs")
    a, extra = p.parse_known_args()
    methods = [m for m in a.methods.split(",") if m]
    try:
        parsed = {m: parse_method(m) for m in methods}
    except ValueError as err:
        p.error(str(err))
    if "single" not in methods or len(methods) < 2:
        p.error("--methods needs single and at least one ensemble method")
    conservative = a.conservative or next(m for m in methods if m != "single")
    out = Path(a.out or tempfile.mkdtemp(prefix="overopt-"))
    out.mkdir(parents=True, exist_ok=True)

    ctx = multiprocessing.get_context("spawn")
    end_children_on_sigterm()
    runs = []
    for seed in range(a.seeds):
        for m in methods:
            aggregation, coef = parsed[m]
            folder = out / f"{m.replace('@', '-')}-seed{seed}"
            args = ["--config", str(REPO / "configs/rlhf.yaml"), "--run", "oo", "--runs_dir", str(folder),
                    "--model_name_or_path", a.policy, "--prompts", a.prompts, "--seed", str(seed),
                    "--reward_model", a.single if m == "single" else a.ensemble,
                    "--total_episodes", str(8 * a.updates), "--per_device_train_batch_size", "8",
                    "--learning_rate", str(a.learning_rate), "--kl_coef", str(a.kl_coef),
                    "--save_steps", "1000", "--sample_every", "0", "--disable_tqdm", "true"]
            if m != "single":
                args += ["--reward_aggregation", aggregation] + (["--uncertainty_coef", str(coef)] if coef else [])
            result, code = run_in_child(ctx, train_one, (args + extra,))
            if code != 0 or result is None:
                raise SystemExit(f"{m} seed {seed}: PPO failed (exit code {code})")
            runs.append({"method": m, "seed": seed, **result})
            last = result["updates"][-1]
            held_out = [result["eval"].get("sft_gold"), result["eval"].get("ppo_gold")]
            print(json.dumps({"method": m, "seed": seed, "final_kl": last["kl"], "final_gold": last["gold"],
                              "eval_gold": held_out, "seconds": result["train_seconds"]}), flush=True)
    results = {"methods": methods, "reference": "single", "conservative": conservative, "seeds": a.seeds,
               "runs": runs, "settings": {k: v for k, v in vars(a).items()}, "rlhf_args": extra}
    write_json_atomic(out / "results.json", results)
    if a.run:
        write_json_atomic(run_dir(a.run, a.runs_dir) / FILE, results)

    edges = kl_edges(results)
    print(f"\ngold by KL bin, mean (s.e.) over {a.seeds} seeds")
    print(f"{'KL bin':>13} " + " ".join(f"{m:>22}" for m in methods))
    columns = {m: binned(results, m, "gold", edges) for m in methods}
    for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
        cells = [("" if columns[m][i] is None else f"{columns[m][i][1]:+.3f} ({columns[m][i][2]:.3f})")
                 for m in methods]
        print(f"{lo:>6.3g}-{hi:<6.3g} " + " ".join(f"{c:>22}" for c in cells))
    v = verdict(results, edges)
    if v:
        print(f"single's gold peaks at KL {v['peak_kl'][0]:.3g}-{v['peak_kl'][1]:.3g}; {conservative} - single from "
              "there: " + ", ".join(f"{d:+.3f} ({se:.3f})" for _, d, se in v["rows"])
              + f" -> {'higher beyond one s.e. in every bin' if v['higher'] else 'not higher beyond one s.e. everywhere'}")
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
