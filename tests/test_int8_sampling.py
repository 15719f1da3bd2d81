"""PPO's int8 sampling (rlhf/int8_sampling.py): tokens drawn through int8 copies of the frozen layers,
old log-probs and values exactly the fp32 policy's, the policy's own modules back after each rollout."""

import pytest
import torch
from peft import LoraConfig
from transformers import set_seed

from rlhf.models import build_models
from rlhf.ppo import PPOConfig, PPOTrainer
from ranktune.sampling import response_logprobs
from tiny_models import make_tiny_reward_dir

PROMPTS = [f"Write about item {i}, please." for i in range(8)]
QUANTIZED = torch.ao.nn.quantized.dynamic.Linear


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory, tiny_llama):
    return make_tiny_reward_dir(tmp_path_factory.mktemp("tiny-rm"), tiny_llama, {"gain": 1.0, "bias": 0.0})


def _trainer(tmp_path, policy, reward, value_model="reward", top_layers=1, **settings):
    set_seed(0)
    lora = LoraConfig(r=4, target_modules="all-linear")
    trained, roles, tokenizer, reward_tokenizer = build_models(str(policy), str(reward), lora, value_model,
                                                               lora_top_layers=top_layers)
    config = PPOConfig(**{"output_dir": str(tmp_path / "out"), "total_episodes": 8, "per_device_train_batch_size": 4,
                          "response_length": 6, "save_steps": 0, "use_cpu": True, "report_to": [],
                          "disable_tqdm": True, "seed": 3, "sampling_weights": "int8", **settings})
    return PPOTrainer(config, trained, roles, tokenizer, reward_tokenizer, PROMPTS)


@pytest.mark.parametrize("value_model", ["reward", "shared"])
def test_rollout_samples_through_int8_and_keeps_the_fp32_log_probs(tmp_path, tiny_llama, reward_folder, value_model):
    trainer = _trainer(tmp_path, tiny_llama, reward_folder, value_model)
    policy = trainer.model.policy
    calls = []
    trainer.int8.int8_layers[0].register_forward_hook(lambda *_: calls.append(1))
    trainer.int8.int8_head.register_forward_hook(lambda *_: calls.append(1))
    ro = trainer.rollout(trainer.prompts_for(0))
    assert len(calls) >= 2 * ro.samples.responses.shape[1], "every decode step ran the int8 layer and head"
    assert not any(isinstance(m, QUANTIZED) for m in policy.modules()), "the policy's own modules are back"
    with torch.no_grad():
        exact = response_logprobs(policy, ro.samples, trainer.args.temperature)
        logits, values = trainer.model(ro.samples.input_ids, ro.samples.attention_mask, ro.samples.context_length)
    mask = ro.samples.mask.bool()
    assert (ro.logprobs - exact)[mask].abs().max().item() < 1e-5
    assert (ro.values - values.float())[mask].abs().max().item() < 1e-5


def test_a_run_with_int8_sampling_starts_each_update_at_ratio_one(tmp_path, tiny_llama, reward_folder):
    trainer = _trainer(tmp_path, tiny_llama, reward_folder, learning_rate=0.0, num_ppo_epochs=1)
    trainer.train()
    ratios = [h["policy/ratio"] for h in trainer.state.log_history if "policy/ratio" in h]
    assert ratios and all(r == pytest.approx(1.0, abs=1e-5) for r in ratios)


def test_int8_sampling_needs_frozen_layers_and_fp32(tmp_path, tiny_llama, reward_folder):
    with pytest.raises(ValueError, match="lora_top_layers"):
        _trainer(tmp_path, tiny_llama, reward_folder, top_layers=0)
    with pytest.raises(ValueError, match="fp32"):
        PPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=True, sampling_weights="int8")
