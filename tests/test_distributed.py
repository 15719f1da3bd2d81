"""Stages launched with `accelerate launch` over 2 CPU processes (gloo) agree with 1 process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_sft import REPETITIVE, write_jsonl

ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/cpu_2proc.yaml"]


def sft_args(model, data, runs, run, batch):
    return ["-m", "sft", "--config", "configs/sft.yaml", "--model_name_or_path", str(model), "--data", str(data),
            "--runs_dir", str(runs), "--run", run, "--per_device_train_batch_size", str(batch),
            "--num_train_epochs", "2", "--learning_rate", "5e-4", "--disable_tqdm", "true"]


def test_sft_two_processes_match_one(tiny_llama, tmp_path, repo_root):
    data = write_jsonl(tmp_path / "demos.jsonl", REPETITIVE)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *sft_args(tiny_llama, data, tmp_path, "one", 4)], cwd=repo_root,
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([*ACCELERATE, *sft_args(tiny_llama, data, tmp_path, "two", 2)], cwd=repo_root,
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    m1 = json.loads((tmp_path / "one" / "sft" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "sft" / "metrics.json").read_text())
    assert (m1["world_size"], m2["world_size"]) == (1, 2)
    assert m1["global_step"] == m2["global_step"], "same global batch, same number of optimizer steps"
    assert m2["eval_loss"] < m2["base_eval_loss"]
    # Same data and global batch; only the order within an epoch differs between samplers.
    assert m2["eval_loss"] == pytest.approx(m1["eval_loss"], rel=0.02)
    assert not list(Path(tmp_path / "two").glob(".sft*")), "one published folder, no leftovers"
