"""A pairwise round and a rating round, end to end through the command line: generate the
answers (a tiny random model), simulated reviewers answer the round's question through the store,
export, and `python -m reward` trains on what was exported (issue 17)."""

from __future__ import annotations

import json

import pytest

from labeling_ui.cli import main as label_main
from reward.train import main as reward_main
from test_model_card import assert_model_card


def run_round(tmp_path, policy, question: str, k: int) -> dict:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Question {i}: say something about the number {i}."}) + "\n"
                               for i in range(16)))
    common = ["--runs_dir", str(tmp_path / "runs"), "--run", question]
    label_main(["generate", *common, "--policy", str(policy), "--prompts", str(prompts), "--k", str(k),
                "--question", question, "--max_new_tokens", "12", "--temperature", "1.5"])
    label_main(["simulate", *common, "--simulated_reviewers", "3", "--overlap", "2", "--gold_rate", "0"])
    label_main(["export", *common, "--margin_scale", "0.5"])
    return {"export": tmp_path / "runs" / question / "export", "common": common}


def train(policy, data, runs_dir, run) -> dict:
    final = reward_main(["--config", "configs/reward.yaml", "--model_name_or_path", str(policy), "--data", str(data),
                         "--runs_dir", str(runs_dir), "--run", run, "--num_train_epochs", "1", "--max_length", "48",
                         "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1",
                         "--eval_fraction", "0.25", "--margin_scale", "0.5", "--save_steps", "1000",
                         "--disable_tqdm", "true", "--seed", "0"])
    return json.loads((final / "metrics.json").read_text())


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_pairwise_round_with_strengths_trains_a_reward_model(tmp_path, tiny_llama):
    out = run_round(tmp_path, tiny_llama, "pairwise", 2)["export"]
    rows, pairs = read(out / "rankings.jsonl"), read(out / "pairs.jsonl")
    assert rows and all(r["question"] == "pairwise" and r["strength"] in (0, 1, 2, 3) for r in rows)
    assert pairs and all(p["margin"] == pytest.approx(0.5 * p["strength"]) for p in pairs)
    assert {p["strength"] for p in pairs} - {0}, "strength 0 is a tie and makes no pair"
    metrics = train(tiny_llama, out / "rankings.jsonl", tmp_path / "runs", "pairwise")
    assert metrics["data_stats"]["pairs_with_strength"] == len(pairs)
    assert metrics["global_step"] >= 1 and "accuracy" in metrics["test"]
    card = assert_model_card(tmp_path / "runs" / "pairwise" / "reward", "reward")  # the export's summary.json
    assert f"{len(rows)} rankings, {len(pairs)} pairs; label rounds: 1; reviewers: 3; question types: pairwise" in card


def test_a_rating_round_exports_scores_and_trains_on_the_pairs_they_imply(tmp_path, tiny_llama):
    # Readable answers, not the tiny random model's: its text is rated 1 by every simulated reviewer
    # (a full tie, no pair), as a person would rate it.
    from labeling_ui.db import sqlite_url
    from labeling_ui.store import LabelStore
    from labeling_ui.testing import DEMO_ITEMS

    (tmp_path / "runs" / "rating").mkdir(parents=True)
    store = LabelStore(sqlite_url(tmp_path / "runs" / "rating" / "labels.db"))
    for n in range(6):
        for prompt, answers, ended in DEMO_ITEMS:
            store.add_item(f"{prompt} ({n})", answers[:3], ended[:3], "demo", 1, question="rating")
    store.close()
    common = ["--runs_dir", str(tmp_path / "runs"), "--run", "rating"]
    label_main(["simulate", *common, "--simulated_reviewers", "3", "--overlap", "2", "--gold_rate", "0"])
    label_main(["export", *common])
    out = tmp_path / "runs" / "rating" / "export"
    ratings, rows = read(out / "ratings.jsonl"), read(out / "rankings.jsonl")
    assert ratings and all(len(r["scores"]) == 3 and all(1 <= s <= 7 for s in r["scores"]) for r in ratings)
    for r in rows:  # ranks follow the scores: a higher score never ranks worse
        assert all((r["scores"][i] > r["scores"][j]) == (r["ranks"][i] < r["ranks"][j])
                   for i in range(3) for j in range(3))
    metrics = train(tiny_llama, out / "rankings.jsonl", tmp_path / "runs", "rating")
    assert metrics["global_step"] >= 1 and metrics["data_stats"]["rankings"] == len(rows)
