"""Model cards (ranktune/model_card.py): what a card says, built from fake records; its YAML front
matter; its loading code runs. `assert_model_card` is what the stage tests (test_sft, test_reward,
test_ppo, test_alternatives) call on the folders their runs published."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import yaml

from ranktune.model_card import build_model_card, fmt, held_out, write_model_card
from tiny_models import make_tiny_reward_dir


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---", 2)[1])


def code_block(card: str) -> str:
    return re.search(r"```python\n(.*?)```", card, re.S).group(1)


def assert_model_card(final: Path, stage: str) -> str:
    """The published folder's README.md: front matter the Hub reads, and every held-out metric of its
    metrics.json with its value, in a table row."""
    card = (final / "README.md").read_text()
    front = front_matter(card)
    assert front["library_name"] == "transformers" and front["tags"][:2] == ["ranktune", stage]
    metrics = json.loads((final / "metrics.json").read_text())
    held = held_out(stage, metrics)
    assert held, "the run recorded held-out metrics"
    for key, value in held.items():
        assert f"| {key} | {fmt(value)} |" in card, key
    assert "## How to load" in card and str(final) in code_block(card)
    return card


SETTINGS = SimpleNamespace(learning_rate=2e-5, num_train_epochs=3, max_steps=-1, max_length=512, use_peft=True,
                           lora_r=16, lora_alpha=32, loss_type="pairwise", seed=0)


def fake_export(root: Path) -> Path:
    export = root / "runs" / "r" / "export"
    export.mkdir(parents=True)
    rows = [{"prompt": f"p{i}", "answers": ["a", "b", "c"], "ranks": [1, 2, 3], "reviewer": f"sim-{i % 3 + 1}"}
            for i in range(7)]
    (export / "rankings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (export / "summary.json").write_text(json.dumps({
        "rankings": 7, "pairs": 21, "rounds": [1, 2], "reviewers": ["sim-1", "sim-2", "sim-3"],
        "questions": {"ranking": {"rankings": 5}, "pairwise": {"rankings": 2}},
        "rankings_held_out": {"gold": 2, "flagged_confirmed": 1}}))
    return export / "rankings.jsonl"


def test_a_reward_card_names_its_metrics_base_model_and_data(tmp_path):
    rankings = fake_export(tmp_path)
    metrics = {"base_model": "smollm2-135m", "data": str(rankings), "train_rankings": 6, "train_pairs": 18,
               "test_prompts": 1, "data_stats": {"records": 7, "rankings": 7, "pairs": 21, "tied_pairs": 0},
               "global_step": 12, "train_loss": 0.41234,
               "test": {"pairs": 3, "accuracy": 0.6667, "loss": 0.58123, "length_baseline_accuracy": 0.5,
                        "calibration": [{"count": 1}], "accuracy_by_reviewer": {"sim-1": {"pairs": 3}}}}
    card = build_model_card("reward", metrics, (SETTINGS,), {"labels": str(rankings)}, None,
                            tmp_path / "runs" / "r" / "reward")
    front = front_matter(card)
    assert front["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and front["license"] == "apache-2.0"
    assert front["tags"] == ["ranktune", "reward", "trl"] and "datasets" not in front  # a local file, no Hub id
    assert front["pipeline_tag"] == "text-classification"
    for row in ("| accuracy | 0.6667 |", "| loss | 0.5812 |", "| pairs | 3 |", "| length_baseline_accuracy | 0.5 |",
                "| learning_rate | 2e-05 |", "| lora_r | 16 |", "| train_loss | 0.4123 |"):
        assert row in card, row
    assert "| calibration |" not in card and "accuracy_by_reviewer" not in card, "tables hold scalars only"
    assert "| max_steps |" not in card, "no max_steps: epochs decide"
    assert f"`{rankings}`, 7 rows" in card
    assert "7 rankings, 21 pairs; label rounds: 1, 2; reviewers: 3; question types: pairwise, ranking" in card
    assert "rankings held out of training: 3" in card and "train_pairs 18" in card
    assert "the data's: unknown" in card and "RewardScorer.load" in card


def test_a_missing_field_reads_not_recorded_and_never_fails(tmp_path):
    card = build_model_card("rlhf", {}, (), {"prompts": str(tmp_path / "gone.jsonl")})
    assert "not recorded" in card and "base_model" not in front_matter(card)
    assert front_matter(card)["tags"] == ["ranktune", "rlhf"], "our PPO is not TRL's"
    (tmp_path / "m").mkdir()
    path = write_model_card(tmp_path / "m", "sft", {"eval": "not a dict", "data_stats": 3}, (object(),),
                            {"x": None})
    assert front_matter(path.read_text())["tags"][:2] == ["ranktune", "sft"]


def test_lineage_hub_datasets_and_known_licenses(tmp_path):
    sft = tmp_path / "runs" / "r" / "sft"
    sft.mkdir(parents=True)
    write_model_card(sft, "sft", {"base_model": "smollm2-135m"}, final=sft)
    card = build_model_card("dpo", {"policy": str(sft), "data": "Anthropic/hh-rlhf", "eval": {"kl_to_sft": 0.25}},
                            (SimpleNamespace(beta=0.1, use_peft=False, lora_r=8),), {"preference pairs": "Anthropic/hh-rlhf"})
    front = front_matter(card)
    assert front["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct", "the root of a ranktune folder chain"
    assert front["license"] == "apache-2.0" and front["datasets"] == ["Anthropic/hh-rlhf"]
    assert f"`{sft}` (a ranktune sft model folder" in card and "license: mit" in card
    assert "| beta | 0.1 |" in card and "lora_r" not in card, "LoRA settings only with LoRA"
    assert "| kl_to_sft | 0.25 |" in card


def test_the_loading_code_runs_on_real_folders(tmp_path, tiny_llama):
    reward = make_tiny_reward_dir(tmp_path / "rm", tiny_llama, {"gain": 2.0, "bias": 0.5})
    for stage, folder in (("sft", tiny_llama), ("reward", reward)):
        card = build_model_card(stage, {}, (), {}, Path(folder), Path(folder))
        scope: dict = {}
        exec(code_block(card), scope)  # noqa: S102 - our own generated example
        assert ("raw" if stage == "reward" else "out") in scope
