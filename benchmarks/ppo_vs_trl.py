"""PPO speed, memory and reward gain: ranktune's PPO against TRL 1.12's PPOTrainer and TRL's RLOO.

    python benchmarks/ppo_vs_trl.py --policy runs/default/sft --reward_model runs/default/reward

Methods: `ours` (`configs/rlhf.yaml` with a LoRA value model over the reward model, the default until
2026-12-04), `ours-shared` (the default since: a value head on the policy), `ours-every-layer` (`ours`
with adapters on every layer, not only the top `lora_top_layers`), `ours-full` (full fine-tuning, as TRL's PPO does),
`trl112-ppo`, `trl116-rloo`; `ours@3e-4` (any `ours` variant) overrides its learning rate, to compare
methods at a similar KL, and `ours+lora_top_layers=16+lora_r=32@2e-4` any of `python -m rlhf`'s
settings (`trl112-ppo+seed=1` any of TRL 1.12's PPOConfig's: training seeds show run-to-run spread). Every method starts from the same policy, trains against the same reward model on the same
prompts with the same settings (8 episodes an update, 32 new tokens, temperature 0.7, 4 PPO
epochs / RLOO iterations, kl_coef 0.05), each in its own process (so peak RSS is its own). Then
one evaluator samples every final policy and the starting policy on the same held-out prompts
and reports the reward model's (normalised) score and KL to the start, by the same code.

TRL 1.12 is installed with --no-deps into a folder of its own (`--trl112`), never into the venv.
RLOO is TRL 1.16's RLOOTrainer with 2 samples per prompt (4 prompts x 2 = 8 episodes an update).
TRL's PPO reads raw reward-model scores; it gets a copy of the reward model whose score head is
multiplied by our normalisation gain, so both see rewards on the same scale.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.seed_groups import by_setting, versus  # noqa: E402
from benchmarks.variants import cli_args, parse_variant  # noqa: E402

SETTINGS = {"per_update": 8, "response_length": 32, "epochs": 4, "temperature": 0.7, "kl_coef": 0.05}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def split_prompts(path: str, n_eval: int, seed: int = 0):
    from ranktune.records import read_prompts
    from ranktune.records import split_prompts as split

    return split([r["prompt"] for r in read_prompts(path)], 0.5, n_eval, seed)


# ---------------------------------------------------------------- workers (one process each)

def run_ours(a, out: Path, variant: str) -> dict:
    from rlhf.train import main

    extra = {"lora": ["--value_model", "reward"], "lora-shared": ["--value_model", "shared"],
             "lora-every-layer": ["--value_model", "reward", "--lora_top_layers", "0"],
             "full": ["--use_peft", "false", "--value_model", "reward", "--learning_rate", "3e-6"]}[variant]
    # a method named ours...+KEY=VALUE@LR: any rlhf setting, then the learning rate
    extra = [*extra, *cli_args(a.overrides, a.learning_rate)]
    runs = out / "runs"
    start = time.perf_counter()
    final = main(["--config", str(REPO / "configs/rlhf.yaml"), "--run", "bench", "--runs_dir", str(runs),
                  "--model_name_or_path", a.policy, "--reward_model", a.reward_model, "--prompts", a.train_prompts,
                  "--eval_fraction", "0", "--total_episodes", str(SETTINGS["per_update"] * a.updates),
                  "--per_device_train_batch_size", str(SETTINGS["per_update"]),
                  "--response_length", str(SETTINGS["response_length"]), "--num_ppo_epochs", str(SETTINGS["epochs"]),
                  "--temperature", str(SETTINGS["temperature"]), "--kl_coef", str(SETTINGS["kl_coef"]),
                  "--save_steps", "1000", "--disable_tqdm", "true", *extra])
    wall = time.perf_counter() - start
    metrics = json.loads((final / "metrics.json").read_text())
    return {"train_seconds": metrics["train_seconds"], "wall_seconds": wall, "policy": str(final)}


def run_trl112(a, out: Path) -> dict:
    sys.path.insert(0, a.trl112)  # this process's `trl` is 1.12
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from ranktune.models import load_tokenizer
    from ranktune.prompting import render_prompt
    from ranktune.scoring import read_normalization

    assert trl.__version__.startswith("1.12"), trl.__version__
    tokenizer = load_tokenizer(a.policy, padding_side="left")
    prompts = [json.loads(x)["prompt"] for x in Path(a.train_prompts).read_text().splitlines()]
    ids = [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    dataset = Dataset.from_dict({"input_ids": ids})
    gain, _ = read_normalization(a.reward_model)

    def reward_copy():
        model = AutoModelForSequenceClassification.from_pretrained(a.reward_model, num_labels=1)
        with torch.no_grad():
            model.score.weight.mul_(gain)
        return model

    policy = AutoModelForCausalLM.from_pretrained(a.policy)
    ref = AutoModelForCausalLM.from_pretrained(a.policy)
    config = PPOConfig(output_dir=str(out / "trl"), per_device_train_batch_size=SETTINGS["per_update"],
                       gradient_accumulation_steps=1, num_mini_batches=1, num_ppo_epochs=SETTINGS["epochs"],
                       response_length=SETTINGS["response_length"], temperature=SETTINGS["temperature"],
                       kl_coef=SETTINGS["kl_coef"], total_episodes=SETTINGS["per_update"] * a.updates,
                       learning_rate=3e-6, missing_eos_penalty=1.0, stop_token="eos", num_sample_generations=0,
                       local_rollout_forward_batch_size=SETTINGS["per_update"], report_to=[], save_strategy="no",
                       use_cpu=True, bf16=False, seed=42, disable_tqdm=True)
    for key, value in a.overrides:  # trl112-ppo+seed=1: any of TRL 1.12's PPOConfig settings
        setattr(config, key, type(getattr(config, key))(value))
    trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy, ref_model=ref,
                         reward_model=reward_copy(), value_model=reward_copy(), train_dataset=dataset)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    folder = out / "trl-policy"
    policy.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"train_seconds": seconds, "policy": str(folder)}


def run_rloo(a, out: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import RLOOConfig, RLOOTrainer

    from ranktune.models import load_tokenizer
    from ranktune.scoring import RewardScorer

    tokenizer = load_tokenizer(a.policy, padding_side="left")
    prompts = [json.loads(x)["prompt"] for x in Path(a.train_prompts).read_text().splitlines()]
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in prompts]})
    scorer = RewardScorer.load(a.reward_model)

    def reward(prompts, completions, completion_ids=None, **kwargs):
        # the same normalised score() our PPO optimises; EOS ended answers get their EOS back
        eos = tokenizer.eos_token_id
        ended = [bool(ids) and ids[-1] == eos for ids in completion_ids]
        return scorer.score(prompts, [c[0]["content"] for c in completions], ended)

    policy = AutoModelForCausalLM.from_pretrained(a.policy)
    config = RLOOConfig(output_dir=str(out / "rloo"), per_device_train_batch_size=SETTINGS["per_update"],
                        num_generations=2, max_completion_length=SETTINGS["response_length"],
                        temperature=SETTINGS["temperature"], beta=SETTINGS["kl_coef"],
                        num_iterations=SETTINGS["epochs"], max_steps=a.updates * SETTINGS["epochs"],
                        learning_rate=3e-6, report_to=[], save_strategy="no", use_cpu=True, bf16=False, seed=42,
                        logging_steps=1, disable_tqdm=True)
    trainer = RLOOTrainer(model=policy, reward_funcs=reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    folder = out / "rloo-policy"
    trainer.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"train_seconds": seconds, "policy": str(folder)}


def run_eval(a, out: Path) -> dict:
    """Score every final policy and the start on the same held-out prompts, by the same code.

    Each prompt gets `--eval_samples` answers from every policy; the gain's standard error is
    taken over prompts, of (policy's mean score - start's mean score) on that prompt."""
    import torch

    from ranktune.models import load_causal_lm
    from ranktune.scoring import RewardScorer
    from ranktune.sampling import response_logprobs, sample, sampling_config

    prompts = [json.loads(x)["prompt"] for x in Path(a.eval_prompts).read_text().splitlines()]
    n = a.eval_samples
    start_model, tokenizer = load_causal_lm(a.policy)
    scorer = RewardScorer.load(a.reward_model)
    config = sampling_config(tokenizer, SETTINGS["response_length"], SETTINGS["temperature"])
    per_prompt, results = {}, {}
    for name, folder in [("start", a.policy), *json.loads(a.policies).items()]:
        model, _ = load_causal_lm(folder) if folder != a.policy else (start_model, tokenizer)
        scores, kls = [], []
        with torch.no_grad():
            repeated = [p for p in prompts for _ in range(n)]  # each prompt n times, side by side
            for i in range(0, len(repeated), 16):
                batch = repeated[i:i + 16]
                torch.manual_seed(i)  # common random numbers per batch, as ranktune/policy_eval.py does
                s = sample(model, tokenizer, batch, config)
                kl = (response_logprobs(model, s, config.temperature)
                      - response_logprobs(start_model, s, config.temperature)) * s.mask
                kls.extend(kl.sum(1).tolist())
                scores.extend(scorer.score(batch, s.answers(tokenizer), s.ended.tolist()))
        by_prompt = torch.tensor(scores).view(len(prompts), n).mean(1)  # (P,)
        per_prompt[name] = by_prompt
        kl_t = torch.tensor(kls)
        results[name] = {"score": float(by_prompt.mean()), "kl": float(kl_t.mean()),
                         "kl_se": float(kl_t.std() / len(kls) ** 0.5), "answers": len(scores)}
        if name != "start":
            diff = by_prompt - per_prompt["start"]  # (P,) paired by prompt
            results[name]["gain"] = float(diff.mean())
            results[name]["gain_se"] = float(diff.std() / len(prompts) ** 0.5)
    return results


WORKERS = {"ours": lambda a, o: run_ours(a, o, "lora"), "ours-shared": lambda a, o: run_ours(a, o, "lora-shared"),
           "ours-full": lambda a, o: run_ours(a, o, "full"),
           "ours-every-layer": lambda a, o: run_ours(a, o, "lora-every-layer"),
           "trl112-ppo": run_trl112, "trl116-rloo": run_rloo, "eval": run_eval}


def worker_main(a) -> None:
    out = Path(a.out)
    name, a.overrides, a.learning_rate = parse_variant(a.worker)
    result = WORKERS[name](a, out)
    result["peak_rss_mib"] = peak_rss_mib()
    print("RESULT " + json.dumps(result), flush=True)


def ensure_trl112(folder: Path) -> None:
    if (folder / "trl" / "experimental" / "ppo").is_dir():
        return
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(folder),
                    "trl==1.12.0"], check=True)


def spawn(a, worker: str, out: Path, **extra) -> dict:
    cmd = [sys.executable, __file__, "--worker", worker, "--out", str(out), "--policy", a.policy,
           "--reward_model", a.reward_model, "--train_prompts", a.train_prompts, "--eval_prompts", a.eval_prompts,
           "--updates", str(a.updates), "--trl112", a.trl112, "--eval_samples", str(a.eval_samples),
           *[x for k, v in extra.items() for x in (f"--{k}", v)]]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    print(f"[{worker}] running ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        print(f"[{worker}] failed (exit {proc.returncode}):\n{tail}", flush=True)
        return {"error": f"exit {proc.returncode}"}
    return json.loads(line[len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", default="runs/default/sft", help="starting policy (SFT model folder)")
    p.add_argument("--reward_model", default="runs/default/reward")
    p.add_argument("--prompts", default="data/prompts.jsonl")
    p.add_argument("--updates", type=int, default=8, help="PPO updates (8 episodes each) per method")
    p.add_argument("--eval_prompts_count", type=int, default=48)
    p.add_argument("--eval_samples", type=int, default=1, help="answers per held-out prompt from each policy")
    p.add_argument("--methods", default="ours,ours-shared,ours-full,trl112-ppo,trl116-rloo")
    p.add_argument("--trl112", default=str(REPO / ".bench" / "trl-1.12"), help="folder for TRL 1.12 (--no-deps)")
    p.add_argument("--evaluate_also", default="",
                   help="NAME=FOLDER,... policies trained by an earlier invocation with the same --policy, --prompts "
                        "and --eval_prompts_count (so the same held-out prompts): evaluated beside this run's")
    p.add_argument("--out", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--train_prompts", default=None, help=argparse.SUPPRESS)
    p.add_argument("--eval_prompts", default=None, help=argparse.SUPPRESS)
    p.add_argument("--policies", default=None, help=argparse.SUPPRESS)
    p.add_argument("--summarize", default=None, metavar="RESULTS_JSON",
                   help="print the over-seeds summary of an earlier invocation's results.json, and exit")
    a = p.parse_args()
    if a.worker:
        return worker_main(a)
    if a.summarize:
        return print_seed_groups(json.loads(Path(a.summarize).read_text())["results"])

    out = Path(a.out or tempfile.mkdtemp(prefix="ppo-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    train, held_out = split_prompts(a.prompts, a.eval_prompts_count)
    a.train_prompts, a.eval_prompts = str(out / "train.jsonl"), str(out / "eval.jsonl")
    Path(a.train_prompts).write_text("".join(json.dumps({"prompt": x}) + "\n" for x in train))
    Path(a.eval_prompts).write_text("".join(json.dumps({"prompt": x}) + "\n" for x in held_out))
    methods = a.methods.split(",")
    unknown = [m for m in methods if parse_variant(m)[0] not in WORKERS or ("@" in m and not m.startswith("ours"))
               or ("+" in m and not m.startswith(("ours", "trl112-ppo")))]
    if unknown:
        p.error(f"unknown method(s) {unknown}: choose from {[w for w in WORKERS if w != 'eval']}, "
                "ours variants take +SETTING=VALUE overrides and may end in @LEARNING_RATE")
    if "trl112-ppo" in methods:
        ensure_trl112(Path(a.trl112))
    results = {m: spawn(a, m, out / m) for m in methods}
    policies = {m: r["policy"] for m, r in results.items() if "policy" in r}
    earlier = dict(x.split("=", 1) for x in a.evaluate_also.split(",") if x)
    policies.update(earlier)
    evaluation = spawn(a, "eval", out / "eval", policies=json.dumps(policies))
    episodes = SETTINGS["per_update"] * a.updates

    print(f"\n{episodes} episodes each ({a.updates} updates x {SETTINGS['per_update']}), "
          f"{SETTINGS['response_length']} new tokens, {SETTINGS['epochs']} PPO epochs; "
          f"{len(held_out)} held-out prompts x {a.eval_samples} answers; start score {evaluation.get('start', {}).get('score', float('nan')):+.3f}")
    w = max(17, *(len(m) + 1 for m in [*results, *earlier]))
    print(f"{'method':<{w}} {'episodes/s':>10} {'s/episode':>9} {'peak RSS MiB':>12} {'score gain':>10} {'(s.e.)':>7} "
          f"{'KL':>7} {'(s.e.)':>7}")
    base = results.get("trl112-ppo", {})
    for m, r in results.items():
        if "error" in r:
            print(f"{m:<{w}} failed: {r['error']}")
            continue
        eps = episodes / r["train_seconds"]
        ev = evaluation.get(m, {})
        gain, nan = ev.get("gain", float("nan")), float("nan")
        print(f"{m:<{w}} {eps:>10.3f} {1 / eps:>9.2f} {r['peak_rss_mib']:>12.0f} {gain:>+10.3f} "
              f"{ev.get('gain_se', nan):>7.3f} {ev.get('kl', nan):>7.3f} {ev.get('kl_se', nan):>7.3f}")
        r.update(episodes_per_second=eps, score_gain=gain, kl=ev.get("kl"))
    for m in earlier:
        ev = evaluation.get(m, {})
        print(f"{m:<{w}} {'(earlier)':>10} {'':>9} {'':>12} {ev.get('gain', float('nan')):>+10.3f} "
              f"{ev.get('gain_se', float('nan')):>7.3f} {ev.get('kl', float('nan')):>7.3f} {ev.get('kl_se', float('nan')):>7.3f}")
    if "error" not in base and base:
        for m, r in results.items():
            if m != "trl112-ppo" and "error" not in r:
                print(f"{m} vs TRL 1.12 PPO: {r['episodes_per_second'] / base['episodes_per_second']:.2f}x episodes/s, "
                      f"{r['peak_rss_mib'] / base['peak_rss_mib']:.2f}x peak RSS")
    print_seed_groups(results)
    (out / "results.json").write_text(json.dumps({"settings": SETTINGS, "updates": a.updates, "results": results,
                                                  "evaluation": evaluation}, indent=2))
    print(f"results: {out / 'results.json'}")


def print_seed_groups(results: dict[str, dict]) -> None:
    """Each setting over its training seeds (`ours@3e-4`, `ours+seed=1@3e-4`, ...): means (s.e. over seeds),
    then each against TRL 1.12's PPO where it ran."""
    runs = {m: {"episodes_per_second": r["episodes_per_second"], "peak_rss_mib": r["peak_rss_mib"],
                "gain": r.get("score_gain"), "kl": r.get("kl")} for m, r in results.items() if "episodes_per_second" in r}
    groups = by_setting(runs)
    if not any(g["runs"] > 1 for g in groups.values()):
        return
    print("\nover training seeds: mean (s.e. over seeds)")
    for setting, g in groups.items():
        line = "  ".join(f"{k} {m:.3f} ({se:.3f})" for k in ("episodes_per_second", "gain", "kl", "gain_per_kl")
                         for m, se in [g[k]])
        print(f"{setting} x{g['runs']}: {line}  peak RSS {g['peak_rss_mib'][0]:.0f} MiB")
    if "trl112-ppo" in groups:
        for setting, v in versus(groups, "trl112-ppo").items():
            d, se = v["gain_per_kl_difference"]
            print(f"{setting} vs TRL 1.12 PPO over seeds: {v['speed']:.2f}x episodes/s, {v['memory']:.2f}x peak RSS, "
                  f"gain per nat of KL {d:+.3f} (s.e. {se:.3f}): "
                  + ("above by more than one s.e." if v["above_by_one_se"] else "not above by more than one s.e."))


if __name__ == "__main__":
    main()
