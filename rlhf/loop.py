"""`python -m rlhf loop --config configs/demo.yaml --run NAME --rounds N`: the closed loop.

    SFT (once) -> for each round r:
        the current policy answers new prompts (K each) into the label store, tagged round r
        -> reviewers rank them (simulated ones here and now, or people in the app: the loop waits)
        -> export ALL labels so far -> reward model r -> PPO r (from the SFT policy, against RM r)
        -> PPO r is the policy whose answers round r+1's reviewers see.
    With --select random|uncertainty, rounds 2 on answer a pool of prompts no earlier round had and
    send reviewers prompts_per_round of them (uncertainty: those reward model r-1's ensemble members
    disagree on most; labeling_ui/selection.py).

Every step is the stage's own command (`python -m sft`, `python -m labeling_ui ...`,
`python -m reward`, `python -m rlhf`), run as a subprocess: stages meet only through the run
folder. A step whose output already exists is skipped, so a stopped loop continues where it was.

    runs/<run>/sft/  labels.db  export/
    runs/<run>/rounds/round-<r>/{prompts.jsonl, reward/, rlhf/, round.json}
"""

from __future__ import annotations

import random
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ranktune.config import parse_config
from ranktune.errors import InputError, exit_on_input_error
from ranktune.jsonl import write_json_atomic, write_jsonl_atomic
from ranktune.records import read_prompts
from ranktune.runs import run_dir
from ranktune.records import split_prompts


@dataclass
class LoopArguments:
    run: str = field(default="demo", metadata={"help": "Run name: everything goes to <runs_dir>/<run>/."})
    runs_dir: str = field(default="runs", metadata={"help": "Folder holding all runs."})
    rounds: int = field(default=1, metadata={"help": "Rounds of generate -> rank -> reward model -> PPO."})
    prompts: str = field(default="data/prompts.jsonl", metadata={"help": "Prompts for labeling and PPO."})
    prompts_per_round: int = field(default=48, metadata={"help": "New prompts reviewers see each round."})
    reviewers: str = field(default="simulated",
                           metadata={"help": "simulated: rule-based stand-ins rank at once; human: wait for people "
                                             "in the app (python -m labeling_ui serve)."})
    simulated_reviewers: int = field(default=3, metadata={"help": "How many simulated reviewers."})
    reviewer_noise: float = field(default=0.3, metadata={"help": "Std of each simulated reviewer's noise."})
    reviewer_disagreement: float = field(
        default=0.5, metadata={"help": "Spread of the simulated reviewers' length tastes (they disagree on length)."})
    min_rankings: int = field(default=50, metadata={"help": "human: rankings of the round to wait for before training."})
    poll_seconds: float = field(default=30, metadata={"help": "human: how often to look at the store."})
    max_wait_minutes: float = field(default=0, metadata={"help": "human: give up waiting after this long (0 = never)."})
    sft_config: str = field(default="configs/sft.yaml", metadata={"help": "Config of the SFT stage."})
    label_config: str = field(default="configs/label.yaml", metadata={"help": "Config of the labeling stage."})
    reward_config: str = field(default="configs/reward.yaml", metadata={"help": "Config of the reward stage."})
    rlhf_config: str = field(default="configs/rlhf.yaml", metadata={"help": "Config of the PPO stage."})
    sft_args: str = field(default="", metadata={"help": "Extra arguments for `python -m sft`."})
    generate_args: str = field(default="", metadata={"help": "Extra arguments for `python -m labeling_ui generate`."})
    reward_args: str = field(default="", metadata={"help": "Extra arguments for `python -m reward`."})
    rlhf_args: str = field(default="", metadata={"help": "Extra arguments for `python -m rlhf`."})
    eval_fraction: float = field(default=0.1, metadata={"help": "PPO's held-out prompts (never labeled either)."})
    max_eval_prompts: int = field(default=32, metadata={"help": "At most this many held-out prompts."})
    seed: int = field(default=42, metadata={"help": "Seed of the prompt split and the simulated reviewers."})
    select: str = field(
        default="order", metadata={"help": "Rounds 2 on: order (each round's own prompts, as drawn), random or "
                                           "uncertainty: generate --select chooses prompts_per_round from a pool "
                                           "of select_pool_factor times as many prompts no earlier round had; "
                                           "uncertainty scores it with the previous round's reward model, and "
                                           "only when that has 2+ members (else the round uses order, and says "
                                           "so). See docs/labeling.md."})
    select_pool_factor: float = field(default=4.0, metadata={"help": "random/uncertainty: the pool's size, in "
                                                                     "prompts_per_round."})


def _stage(*args: str) -> None:
    """Run one stage as its own process; its failure (one-line error or not) stops the loop."""
    cmd = [sys.executable, "-m", *args]
    print(f"\n$ {' '.join(shlex.quote(a) for a in cmd)}", flush=True)
    started = time.time()
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise InputError(f"stage `{' '.join(args[:2])}` failed with exit code {result.returncode} (see above)")
    print(f"  ({time.time() - started:.0f} s)", flush=True)


def training_order(a: LoopArguments) -> list:
    """The prompts rounds may label (never PPO's held-out ones), in the loop's seeded order."""
    prompts = [r["prompt"] for r in read_prompts(a.prompts)]
    train, _ = split_prompts(prompts, a.eval_fraction, a.max_eval_prompts, a.seed)
    random.Random(a.seed + 1).shuffle(train)
    return train


def round_prompts(a: LoopArguments) -> list[list]:
    """Disjoint prompt sets for the rounds, none of them among PPO's held-out prompts."""
    train = training_order(a)
    n = a.prompts_per_round
    if n * a.rounds > len(train):
        print(f"note: {len(train)} prompts for {a.rounds} rounds of {n}: rounds share prompts")
    return [[train[(r * n + i) % len(train)] for i in range(n)] for r in range(a.rounds)]


def selection_args(a: LoopArguments, run: Path, r: int) -> tuple[list, list[str]]:
    """Round r's prompts file and generate's --select settings: the round's own set (order, round 1,
    or uncertainty when the previous round's reward model is a single one), else a pool of
    select_pool_factor x prompts_per_round training prompts no earlier round had, starting at the
    round's own set in the loop's seeded order, of which generate sends prompts_per_round."""
    train, n = training_order(a), a.prompts_per_round
    own = [train[((r - 1) * n + i) % len(train)] for i in range(n)]
    if a.select == "order" or r == 1:
        return own, []
    previous = run / "rounds" / f"round-{r - 1}" / "reward"
    flags = ["--select", a.select, "--select_count", str(n)]
    if a.select == "uncertainty":
        from labeling_ui.generate import load_scorer

        members = int(getattr(load_scorer(str(previous)), "members", 1))
        if members < 2:
            print(f"round {r}: --select uncertainty needs an ensemble and {previous} has {members} member(s): "
                  "this round's prompts go in order (python -m reward --ensemble_size N makes one)", flush=True)
            return own, []
        flags += ["--select_reward_model", str(previous)]
    from labeling_ui.store import LabelStore, prompt_key

    store = LabelStore.for_run(a.run, a.runs_dir, must_exist=True)
    try:
        asked = set().union(*(store.items_in_round(q) for q in range(1, r)))
    finally:
        store.close()
    pool, seen = [], set(asked)
    for i in range(len(train)):
        p = train[((r - 1) * n + i) % len(train)]
        if prompt_key(p) not in seen:
            seen.add(prompt_key(p))
            pool.append(p)
    if not pool:
        print(f"round {r}: every training prompt was labeled in an earlier round: this round's go in order")
        return own, []
    return pool[:max(n, int(n * a.select_pool_factor))], flags


def _rankings_in_round(a: LoopArguments, round_: int) -> int:
    from labeling_ui.store import LabelStore

    store = LabelStore.for_run(a.run, a.runs_dir, must_exist=True)
    try:
        return sum(1 for r in store.rankings() if r.get("round") == round_)
    finally:
        store.close()


def wait_for_people(a: LoopArguments, run: Path, round_: int) -> None:
    start = time.time()
    while (n := _rankings_in_round(a, round_)) < a.min_rankings:
        if a.max_wait_minutes and time.time() - start > a.max_wait_minutes * 60:
            if n == 0:
                raise InputError(f"round {round_}: no rankings after {a.max_wait_minutes} minutes of waiting")
            print(f"round {round_}: {n} rankings after {a.max_wait_minutes} minutes; training on what there is")
            return
        print(f"round {round_}: {n}/{a.min_rankings} rankings; reviewers work in `make label RUN={a.run}` "
              f"(checking again in {a.poll_seconds:.0f} s)", flush=True)
        time.sleep(a.poll_seconds)


@exit_on_input_error
def main(argv: list[str] | None = None) -> Path:
    (a,) = parse_config((LoopArguments,), argv)
    if a.reviewers not in ("simulated", "human"):
        raise InputError("must be simulated or human", field="reviewers")
    if a.rounds < 1:
        raise InputError("must be at least 1", field="rounds")
    if a.select not in ("order", "random", "uncertainty"):
        raise InputError("must be order, random or uncertainty", field="select")
    if not a.select_pool_factor >= 1:
        raise InputError("must be at least 1 (the pool holds prompts_per_round times this)", field="select_pool_factor")
    run = run_dir(a.run, a.runs_dir)
    common = ["--run", a.run, "--runs_dir", a.runs_dir]
    round_prompts(a)  # bad prompts fail here, before any training (and a note if rounds must share prompts)
    started = time.time()
    sft = run / "sft"
    if not (sft / "config.json").is_file():
        _stage("sft", "--config", a.sft_config, *common, *shlex.split(a.sft_args))
    policy = str(sft)
    for r in range(1, a.rounds + 1):
        here = run / "rounds" / f"round-{r}"
        if (here / "round.json").is_file():
            policy = str(here / "rlhf")
            continue
        here.mkdir(parents=True, exist_ok=True)
        prompts, select = selection_args(a, run, r)  # sets[r - 1] unless --select chooses from a pool
        write_jsonl_atomic(here / "prompts.jsonl", [{"prompt": p} for p in prompts])
        _stage("labeling_ui", "generate", "--config", a.label_config, *common, "--policy", policy,
               "--prompts", str(here / "prompts.jsonl"), "--round", str(r), *select, *shlex.split(a.generate_args))
        if a.reviewers == "simulated":
            _stage("labeling_ui", "simulate", "--config", a.label_config, *common, "--round", str(r),
                   "--simulated_reviewers", str(a.simulated_reviewers), "--reviewer_noise", str(a.reviewer_noise),
                   "--reviewer_disagreement", str(a.reviewer_disagreement), "--seed", str(a.seed + r))
        else:
            wait_for_people(a, run, r)
        _stage("labeling_ui", "export", "--config", a.label_config, *common)  # every round's labels so far
        rounds_dir = str(run / "rounds")
        if not (here / "reward" / "config.json").is_file():
            _stage("reward", "--config", a.reward_config, "--run", here.name, "--runs_dir", rounds_dir,
                   "--data", str(run / "export"), "--model_name_or_path", str(sft), *shlex.split(a.reward_args))
        if not (here / "rlhf" / "config.json").is_file():
            _stage("rlhf", "--config", a.rlhf_config, "--run", here.name, "--runs_dir", rounds_dir,
                   "--model_name_or_path", str(sft), "--reward_model", str(here / "reward"),
                   "--prompts", a.prompts, "--eval_fraction", str(a.eval_fraction),
                   "--max_eval_prompts", str(a.max_eval_prompts), "--seed", str(a.seed), *shlex.split(a.rlhf_args))
        write_json_atomic(here / "round.json", {"round": r, "labeled_policy": policy, "reviewers": a.reviewers,
                                                "select": select[1] if select else "order",
                                                "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
        policy = str(here / "rlhf")
    write_json_atomic(run / "loop.json", {**{k: v for k, v in vars(a).items()},
                                          "seconds": round(time.time() - started, 1)})
    print(f"\nloop finished: {a.rounds} round(s) in {run} ({time.time() - started:.0f} s)")
    return run
