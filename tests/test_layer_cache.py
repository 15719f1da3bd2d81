"""The frozen-layer cache (rlhf/layer_cache.py): with LoRA on the top layers only, the layers below run
once per rollout; the split forward must be the full forward, and PPO must train the same with it."""

import pytest
import torch
from peft import LoraConfig
from transformers import set_seed

from rlhf import layer_cache
from rlhf.models import build_models
from rlhf.ppo import PPOConfig, PPOTrainer
from tiny_models import make_tiny_reward_dir

LORA = LoraConfig(r=4, target_modules="all-linear")
PROMPTS = [f"Write about item {i}, please." for i in range(8)]


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory, tiny_llama):
    return make_tiny_reward_dir(tmp_path_factory.mktemp("tiny-rm"), tiny_llama, {"gain": 1.0, "bias": 0.0})


def _left_padded(tokenizer, texts):
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    return batch["input_ids"], batch["attention_mask"]


@pytest.mark.parametrize("value_model", ["reward", "shared"])
def test_split_forward_equals_the_full_forward(tiny_llama, reward_folder, value_model):
    set_seed(0)
    trained, _, tokenizer, _ = build_models(str(tiny_llama), str(reward_folder), LORA, value_model, lora_top_layers=1)
    for p in trained.parameters():  # adapters (and a shared head) that change the output
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.3)
    assert layer_cache.enable(trained, tokenizer.pad_token_id) is None
    assert trained.split == ({"policy": 1} if value_model == "shared" else {"policy": 1, "value": 1})
    ids, mask = _left_padded(tokenizer, ["Hi", "Write a long poem about the sea and the rain"])
    assert mask[0, 0] == 0, "the first row is left-padded"
    Q = ids.shape[1] - 3  # the last three tokens play the response

    def run(frozen):
        trained.zero_grad(set_to_none=True)
        logits, values = trained(ids, mask, Q, frozen=frozen)
        (logits.float().square().mean() + values.square().mean()).backward()
        grads = {n: p.grad.clone() for n, p in trained.named_parameters() if p.grad is not None}
        return logits.detach(), values.detach(), grads

    with torch.no_grad():
        frozen = trained.frozen_hidden(ids, mask)
    assert {k: h.shape for k, h in frozen.items()} == {k: (2, ids.shape[1], 32) for k in trained.split}
    full, split = run(None), run(frozen)
    assert torch.allclose(full[0], split[0], atol=1e-5) and torch.allclose(full[1], split[1], atol=1e-5)
    assert full[2].keys() == split[2].keys() and full[2]
    for name in full[2]:  # the same gradients reach the same adapters
        assert torch.allclose(full[2][name], split[2][name], atol=1e-5), name
    # the layer stacks are whole again after the split forward
    assert all(len(layer_cache.decoder_layers(trained.backbone(k))[1]) == 2 for k in trained.split)


def _train(tmp_path, policy, reward, cache: bool, **extra):
    set_seed(0)
    trained, roles, tokenizer, reward_tokenizer = build_models(str(policy), str(reward), extra.pop("lora", LORA),
                                                               extra.pop("value_model", "reward"),
                                                               lora_top_layers=extra.pop("top", 1))
    config = PPOConfig(output_dir=str(tmp_path / f"out-{cache}"), total_episodes=8 * 2, per_device_train_batch_size=4,
                       num_mini_batches=2, response_length=6, learning_rate=1e-2, save_steps=0, logging_steps=1,
                       use_cpu=True, report_to=[], disable_tqdm=True, seed=3, cache_frozen_layers=cache, **extra)
    trainer = PPOTrainer(config, trained, roles, tokenizer, reward_tokenizer, PROMPTS)
    trainer.initial = {n: p.detach().clone() for n, p in trained.named_parameters() if p.requires_grad}
    history = [h for h in trainer.train() if "objective/scores" in h]
    params = {n: p.detach().clone() for n, p in trained.named_parameters() if p.requires_grad}
    return trainer, history, params


@pytest.mark.parametrize("engine", ["generate", "continuous_batching"])
def test_ppo_trains_the_same_with_and_without_the_cache(tmp_path, tiny_llama, reward_folder, engine):
    on, on_log, on_params = _train(tmp_path, tiny_llama, reward_folder, True, generation_engine=engine)
    off, off_log, off_params = _train(tmp_path, tiny_llama, reward_folder, False, generation_engine=engine)
    assert on.layer_cache and not off.layer_cache
    assert len(on_log) == len(off_log) == 2
    timings = ("episodes_per_second", "tokens_per_second", "rollout_seconds", "update_seconds")
    for a, b in zip(on_log, off_log):
        for key in a:
            if key not in timings and isinstance(a[key], float):
                assert a[key] == pytest.approx(b[key], abs=1e-5), key
    assert on_params.keys() == off_params.keys()
    for name in on_params:
        assert torch.allclose(on_params[name], off_params[name], atol=1e-5), name
    assert any(not torch.allclose(on_params[n], on.initial[n]) for n in on_params), "the updates moved them"


def test_self_check_refuses_gpt2_and_the_trainer_falls_back(tmp_path, tiny_gpt2, caplog):
    from ranktune.models import load_sequence_classifier

    rm, tok = load_sequence_classifier(str(tiny_gpt2))
    rm.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    trained, _, tokenizer, _ = build_models(str(tiny_gpt2), str(tmp_path / "rm"),
                                            LoraConfig(r=4, target_modules="c_attn"), "reward", lora_top_layers=1)
    why = layer_cache.enable(trained, tokenizer.pad_token_id)  # GPT-2 adds position embeddings to inputs_embeds
    assert why and "differs" in why and trained.split is None
    with caplog.at_level("INFO", logger="rlhf.layer_cache"):
        trainer, history, _ = _train(tmp_path, tiny_gpt2, tmp_path / "rm", True,
                                     lora=LoraConfig(r=4, target_modules="c_attn"))
    assert not trainer.layer_cache and len(history) == 2
    assert "cache_frozen_layers: off" in caplog.text


def test_no_cache_without_frozen_layers(tiny_llama, reward_folder):
    for lora, top in ((LORA, 0), (None, 0)):  # adapters on every layer; full fine-tuning
        trained, _, tokenizer, _ = build_models(str(tiny_llama), str(reward_folder), lora, "reward",
                                                lora_top_layers=top)
        assert "no frozen layers" in layer_cache.enable(trained, tokenizer.pad_token_id)
        assert trained.split is None


@pytest.fixture(scope="module")
def mixed_layers(tmp_path_factory):
    """A Qwen2-style policy (and reward model over it) whose top layer uses a 16-token sliding window."""
    from tiny_models import make_tiny_qwen2_dir

    folder = tmp_path_factory.mktemp("tiny-qwen2")
    policy = make_tiny_qwen2_dir(folder / "policy", ["full_attention", "sliding_attention"], sliding_window=16)
    return policy, make_tiny_reward_dir(folder / "rm", policy, {"gain": 1.0, "bias": 0.0})


def _mixed_trained(mixed_layers):
    set_seed(0)
    policy, reward = mixed_layers
    trained, _, tokenizer, _ = build_models(str(policy), str(reward), LORA, "reward", lora_top_layers=1)
    for p in trained.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.3)
    return trained, tokenizer


def test_mixed_layer_types_split_forward_equals_the_full_one_past_the_window(mixed_layers):
    """Qwen2/Gemma-style models pick layer i's mask as config.layer_types[i]: the cut stack must keep
    each layer's own type, over a sequence longer than the sliding window."""
    trained, tokenizer = _mixed_trained(mixed_layers)
    assert layer_cache.enable(trained, tokenizer.pad_token_id) is None
    ids = torch.randint(0, len(tokenizer), (2, 40), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :7], ids[1, :7] = 0, tokenizer.pad_token_id  # left padding
    with torch.no_grad():
        full = trained(ids, mask, 20)
        split = trained(ids, mask, 20, frozen=trained.frozen_hidden(ids, mask))
    assert torch.allclose(full[0], split[0], atol=1e-5) and torch.allclose(full[1], split[1], atol=1e-5)
    assert trained.backbone("policy").config.layer_types == ["full_attention", "sliding_attention"]


def test_the_probe_crosses_the_sliding_window(mixed_layers, monkeypatch):
    """Were the layer types not cut with the stack, the probe must see it (a 12-token probe inside a
    16-token window did not) and the cache refuse, saying why."""
    trained, tokenizer = _mixed_trained(mixed_layers)
    monkeypatch.setattr(layer_cache, "_config_from", lambda config, k, n: config)
    why = layer_cache.enable(trained, tokenizer.pad_token_id)
    assert why and "differs" in why and "24-token probe" in why and trained.split is None
