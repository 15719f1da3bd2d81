"""kill -9 of a real training process: `python -m rlhf` is killed (SIGKILL, no cleanup) once its
first checkpoint is on disk, then `--resume true` continues from that checkpoint to the same
final update count. (The in-process crash, with step-by-step equality to an uninterrupted run,
is test_ppo.py::test_resume_after_a_crash_continues_to_the_same_result; SFT's is in test_sft.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from ranktune.models import load_sequence_classifier

UPDATES = 6


def test_rlhf_killed_after_its_first_checkpoint_resumes_to_the_full_update_count(tmp_path, tiny_llama, repo_root):
    reward = tmp_path / "rm"
    model, tokenizer = load_sequence_classifier(str(tiny_llama))
    model.save_pretrained(reward)
    tokenizer.save_pretrained(reward)
    (reward / "reward_normalization.json").write_text(json.dumps({"gain": 1.0, "bias": 0.0}))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Write about topic {i}."}) + "\n" for i in range(40)))
    runs = tmp_path / "runs"
    args = [sys.executable, "-m", "rlhf", "--run", "t", "--runs_dir", str(runs), "--prompts", str(prompts),
            "--model_name_or_path", str(tiny_llama), "--reward_model", str(reward),
            "--per_device_train_batch_size", "4", "--response_length", "8", "--eval_fraction", "0",
            "--save_steps", "2", "--logging_steps", "1",
            "--total_episodes", str(4 * UPDATES), "--use_peft", "true", "--lora_r", "4",
            "--lora_target_modules", "all-linear"]
    work, final = runs / "t" / "rlhf.work", runs / "t" / "rlhf"
    env = {**os.environ, "PYTHONPATH": str(repo_root)}

    log = open(tmp_path / "first.log", "wb")
    proc = subprocess.Popen(args, cwd=repo_root, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if any((p / "state.json").is_file() for p in work.glob("checkpoint-*")):
                break
            time.sleep(0.01)  # another process's file: polled (bounded by the deadline)
        assert proc.poll() is None, "the run ended before its first checkpoint:\n" + (tmp_path / "first.log").read_text()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    saved = sorted(int(p.name.split("-")[1]) for p in work.glob("checkpoint-*") if (p / "state.json").is_file())
    assert saved and saved[-1] < UPDATES, saved
    assert not final.exists()  # nothing published by the killed run

    out = subprocess.run([*args, "--resume", "true"], cwd=repo_root, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "starting from the beginning" not in out.stdout  # it did find the checkpoint
    rows = [json.loads(line) for line in (final / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == UPDATES
    assert json.loads((final / "metrics.json").read_text())["updates"] == UPDATES
    steps = [r.get("step") for r in rows]
    assert steps == list(range(1, UPDATES + 1)), steps  # each update logged once, in order
    assert not work.exists()
