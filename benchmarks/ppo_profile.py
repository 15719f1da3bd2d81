"""Where one PPO update's time goes: sampling, the reference, the reward model, the values, each PPO
epoch's forward and backward, the optimizer.

    python benchmarks/ppo_profile.py --policy runs/default/sft --reward_model runs/default/reward

Runs `python -m rlhf` in this process at `benchmarks/ppo_vs_trl.py`'s settings (8 episodes an
update, 32 new tokens, 4 PPO epochs) with timers wrapped around the trainer's parts, and prints the
seconds each part takes per update (mean and standard error over the updates after the first,
which warms up). A timer's time is its own: a part called inside another (the value model inside a
PPO forward) is subtracted from the outer one, so the rows add up to the update's wall time. The
code measured is the product's, unchanged; only this process wraps it. Extra arguments go to
`python -m rlhf` as they are (e.g. `--value_model shared`, `--bf16 true`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.ppo_vs_trl import SETTINGS, split_prompts  # noqa: E402
from ranktune.stats import mean_se  # noqa: E402


class PhaseTimer:
    """Exclusive wall time per label, per update. `wrap(owner, name, label)` replaces a function with
    one that times itself; `label` may be a function of the call's arguments and the timer's state."""

    def __init__(self):
        self.updates: list[dict[str, float]] = []
        self.current: dict[str, float] | None = None
        self.stack: list[list] = []  # [label, start, seconds spent in timed callees]
        self.phase = "update"
        self.epoch_forwards = 0
        self.forwards_per_epoch = 1

    @contextlib.contextmanager
    def timing(self, label: str):
        if self.current is None:  # outside an update (model loading, the final evaluation): not counted
            yield
            return
        frame = [label, time.perf_counter(), 0.0]
        self.stack.append(frame)
        try:
            yield
        finally:
            self.stack.pop()
            spent = time.perf_counter() - frame[1]
            self.current[label] = self.current.get(label, 0.0) + spent - frame[2]
            if self.stack:
                self.stack[-1][2] += spent

    def wrap(self, owner, name: str, label, phase: str | None = None):
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            text = label(*args, **kwargs) if callable(label) else label
            before = self.phase
            if phase:
                self.phase = phase
            try:
                with self.timing(text):
                    return original(*args, **kwargs)
            finally:
                self.phase = before

        setattr(owner, name, timed)

    def epoch(self) -> int:
        """The PPO epoch (from 1) of the next policy forward."""
        return self.epoch_forwards // self.forwards_per_epoch + 1

    def last_epoch(self) -> int:
        """The PPO epoch of the latest policy forward (its value model and backward belong to it)."""
        return max(0, self.epoch_forwards - 1) // self.forwards_per_epoch + 1


def install(timer: PhaseTimer) -> None:
    """Wrap the trainer's parts (rlhf/ppo.py, rlhf/models.py) in timers."""
    import accelerate
    from accelerate.optimizer import AcceleratedOptimizer

    import rlhf.ppo as ppo
    from rlhf.models import PolicyAndValue

    step = ppo.PPOTrainer.step

    def timed_step(self, update):
        timer.current, timer.stack = {}, []
        timer.forwards_per_epoch = max(1, self.args.local_batch_size // self.args.per_device_train_batch_size)
        start = time.perf_counter()
        with timer.timing("update: the rest (metrics, gold scores, KL control)"):
            out = step(self, update)
        timer.current["_wall"] = time.perf_counter() - start
        timer.updates.append(timer.current)
        timer.current = None
        return out

    ppo.PPOTrainer.step = timed_step
    timer.wrap(ppo.PPOTrainer, "rollout", "rollout: the rest (decode, log-prob gathers)", phase="rollout")
    timer.wrap(ppo, "sample", "rollout: sampling (generate)")
    timer.wrap(ppo, "sample_continuous", "rollout: sampling (continuous batching)")
    timer.wrap(ppo, "response_logprobs", "rollout: reference forward")
    timer.wrap(PolicyAndValue, "frozen_hidden", "rollout: frozen lower layers (once, cached)")
    timer.wrap(ppo.PPOTrainer, "reward_scores", "rollout: reward model")
    timer.wrap(ppo.PPOTrainer, "advantages", "advantages (GAE, whitening)", phase="advantages")

    def forward_label(self, *args, with_values=True, **kwargs):
        if timer.phase == "optimize":
            label = f"PPO epoch {timer.epoch()}: forward (policy)"
            timer.epoch_forwards += 1
            return label
        return "rollout: policy forward" if with_values else "rollout: reference forward"

    timer.wrap(PolicyAndValue, "forward", forward_label)

    def value_label(self, *args, **kwargs):
        if timer.phase == "optimize":
            return f"PPO epoch {timer.last_epoch()}: forward (value model)"
        return "rollout: value model"

    timer.wrap(PolicyAndValue, "token_values", value_label)
    timer.wrap(PolicyAndValue, "head_values", lambda *a, **k: "value head")

    optimize = ppo.PPOTrainer.optimize

    def timed_optimize(self, ro):
        timer.epoch_forwards = 0
        return optimize(self, ro)

    ppo.PPOTrainer.optimize = timed_optimize
    timer.wrap(ppo.PPOTrainer, "optimize", "PPO epochs: the rest (losses, statistics)", phase="optimize")
    timer.wrap(accelerate.Accelerator, "backward",
               lambda *a, **k: f"PPO epoch {timer.last_epoch()}: backward")
    timer.wrap(accelerate.Accelerator, "clip_grad_norm_", "optimizer (clip, step)")
    timer.wrap(AcceleratedOptimizer, "step", "optimizer (clip, step)")


def summarise(updates: list[dict[str, float]], skip: int) -> dict:
    timed = updates[skip:] or updates
    labels = sorted({k for u in timed for k in u if k != "_wall"}, key=_order)
    wall = mean_se([u["_wall"] for u in timed])
    rows = []
    for label in labels:
        m, se = mean_se([u.get(label, 0.0) for u in timed])
        rows.append({"part": label, "seconds": m, "se": se, "share": m / wall[0]})
    return {"updates_timed": len(timed), "update_seconds": wall[0], "update_se": wall[1], "parts": rows}


def _order(label: str) -> tuple:
    head = label.split(":")[0]
    rank = {"rollout": 0, "advantages (GAE, whitening)": 1, "value head": 3, "optimizer (clip, step)": 4,
            "PPO epochs": 5, "update": 6}
    return (rank.get(head, 2), label)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", default="runs/default/sft")
    p.add_argument("--reward_model", default="runs/default/reward")
    p.add_argument("--prompts", default="data/prompts.jsonl")
    p.add_argument("--updates", type=int, default=6)
    p.add_argument("--warmup_updates", type=int, default=1, help="first updates left out of the means")
    p.add_argument("--out", default=None)
    a, extra = p.parse_known_args()
    if a.updates <= a.warmup_updates:
        p.error("--updates must exceed --warmup_updates")
    out = Path(a.out or tempfile.mkdtemp(prefix="ppo-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    train, _ = split_prompts(a.prompts, 48)  # ppo_vs_trl.py's training prompts
    prompts = out / "train.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": x}) + "\n" for x in train))

    timer = PhaseTimer()
    install(timer)
    from rlhf.train import main as rlhf_main

    rlhf_main(["--config", str(REPO / "configs/rlhf.yaml"), "--run", "profile", "--runs_dir", str(out / "runs"),
               "--model_name_or_path", a.policy, "--reward_model", a.reward_model, "--prompts", str(prompts),
               "--eval_fraction", "0", "--max_eval_prompts", "0",
               "--total_episodes", str(SETTINGS["per_update"] * a.updates),
               "--per_device_train_batch_size", str(SETTINGS["per_update"]),
               "--response_length", str(SETTINGS["response_length"]), "--num_ppo_epochs", str(SETTINGS["epochs"]),
               "--temperature", str(SETTINGS["temperature"]), "--kl_coef", str(SETTINGS["kl_coef"]),
               "--save_steps", "1000", "--sample_every", "0", "--disable_tqdm", "true", *extra])
    summary = summarise(timer.updates, a.warmup_updates)
    summary.update(settings=SETTINGS, extra_args=extra, policy=a.policy, reward_model=a.reward_model,
                   per_update_raw=timer.updates)
    (out / "profile.json").write_text(json.dumps(summary, indent=2))

    print(f"\none PPO update ({SETTINGS['per_update']} episodes, {SETTINGS['response_length']} new tokens, "
          f"{SETTINGS['epochs']} PPO epochs), mean of {summary['updates_timed']} updates after "
          f"{a.warmup_updates} warm-up: {summary['update_seconds']:.2f} s (s.e. {summary['update_se']:.2f})")
    print("| part | seconds per update | s.e. | share |\n|---|---|---|---|")
    for r in summary["parts"]:
        print(f"| {r['part']} | {r['seconds']:.3f} | {r['se']:.3f} | {100 * r['share']:.1f}% |")
    total = sum(r["seconds"] for r in summary["parts"])
    print(f"| (sum of parts) | {total:.3f} | | {100 * total / summary['update_seconds']:.1f}% |")
    print(f"profile: {out / 'profile.json'}")


if __name__ == "__main__":
    main()
