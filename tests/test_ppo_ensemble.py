"""PPO against an ensemble reward model (tiny random models): the value head starts as the members'
normalised mean, the reward role keeps every member, and the conservative aggregations score lower."""

import json

import pytest
import torch

from ranktune.models import load_sequence_classifier
from rlhf.models import build_models
from rlhf.train import main as rlhf_main

MEMBERS = [(2.0, 0.5), (1.0, -0.25), (0.5, 1.0)]  # each member's own (gain, bias)


@pytest.fixture(scope="module")
def ensemble_folder(tmp_path_factory, tiny_llama):
    """A random three-member reward model over the tiny llama; its members' heads differ."""
    folder = tmp_path_factory.mktemp("tiny-ensemble")
    torch.manual_seed(0)
    model, tokenizer = load_sequence_classifier(str(tiny_llama), num_labels=len(MEMBERS))
    with torch.no_grad():
        model.score.weight.normal_(std=1.0)  # members that disagree clearly
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "reward_normalization.json").write_text(json.dumps(
        {"gain": 1.0, "bias": 0.0, "members": [{"gain": g, "bias": b} for g, b in MEMBERS]}))
    return folder


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Say something about {t} ({i})."}) + "\n"
                            for i, t in enumerate(["tea", "rain", "a fox", "bread", "snow"] * 4)))
    return path


def _normalised_mean(folder, ids) -> torch.Tensor:
    original, _ = load_sequence_classifier(str(folder))
    with torch.no_grad():
        raw = original(**ids).logits  # (B, M)
    g, c = torch.tensor([m[0] for m in MEMBERS]), torch.tensor([m[1] for m in MEMBERS])
    return (g * raw + c).mean(-1), raw


@pytest.mark.parametrize("lora", [False, True])
def test_value_head_starts_as_the_members_normalised_mean_and_the_reward_keeps_them_all(tiny_llama, ensemble_folder,
                                                                                     lora):
    from peft import LoraConfig

    peft = LoraConfig(r=4, target_modules="all-linear") if lora else None
    trained, roles, tokenizer, _ = build_models(str(tiny_llama), str(ensemble_folder), peft, "reward",
                                                reward_normalization=(1.0, 0.0), member_normalization=MEMBERS)
    ids = tokenizer(["Hello world, a poem", "Rain on the sea"], return_tensors="pt", padding=True)
    expected, raw = _normalised_mean(ensemble_folder, ids)
    assert raw.std(-1).min() > 1e-3  # the members disagree, so the mean is not any one of them
    with torch.no_grad():
        value = trained.value(**ids).logits  # LoRA's B starts at zero: the value model is the reward model's base
        with roles.reward() as rm:
            reward = rm(**ids).logits
    assert value.shape == (2, 1)
    assert torch.allclose(value[:, 0], expected, atol=1e-5)
    assert reward.shape == (2, len(MEMBERS)) and torch.allclose(reward, raw, atol=1e-5)


def _first_scores(tmp_path, policy, reward, prompts, *extra) -> float:
    final = rlhf_main(["--run", "t", "--runs_dir", str(tmp_path), "--prompts", str(prompts),
                       "--model_name_or_path", str(policy), "--reward_model", str(reward),
                       "--per_device_train_batch_size", "4", "--response_length", "8", "--max_eval_prompts", "2",
                       "--per_device_eval_batch_size", "4", "--total_episodes", "4", "--seed", "3",
                       "--use_peft", "true", "--lora_r", "4", "--lora_target_modules", "all-linear", *extra])
    first = json.loads((final / "metrics.jsonl").read_text().splitlines()[0])
    return first["objective/scores"]


def test_conservative_aggregations_score_the_same_rollouts_lower(tmp_path, tiny_llama, ensemble_folder, prompts_file):
    # Same seed, same starting policy: the first update's rollouts are the same answers in every run,
    # so their scores differ only by how the members are aggregated.
    run = lambda name, *extra: _first_scores(tmp_path / name, tiny_llama, ensemble_folder, prompts_file,  # noqa: E731
                                             *extra)
    mean = run("mean")
    assert run("mean-again") == pytest.approx(mean, abs=1e-6)  # the premise: the rollouts repeat
    cautious = run("mmstd", "--reward_aggregation", "mean_minus_std", "--uncertainty_coef", "2")
    worst = run("min", "--reward_aggregation", "min")
    assert cautious < mean - 1e-3 and worst < mean - 1e-3


def test_an_unknown_aggregation_is_one_line(tmp_path, tiny_llama, ensemble_folder, prompts_file, capsys):
    with pytest.raises(SystemExit):
        _first_scores(tmp_path, tiny_llama, ensemble_folder, prompts_file, "--reward_aggregation", "median")
    err = capsys.readouterr().err
    assert "reward_aggregation" in err and "mean_minus_std" in err and "Traceback" not in err
