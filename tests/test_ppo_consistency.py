"""PPO is the same algorithm whatever runs it: bf16 autocast, other models' generation settings,
the reward normalisation's units. Each test here failed on the code before issue 19's fixes."""

import pytest
import torch
from peft import LoraConfig
from transformers import set_seed

from rlhf import ppo_math
from rlhf.models import build_models
from rlhf.ppo import PPOConfig, PPOTrainer
from tiny_models import make_tiny_reward_dir

LORA = LoraConfig(r=4, target_modules="all-linear")
PROMPTS = [f"Write about item {i}, please." for i in range(8)]


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory, tiny_llama):
    return make_tiny_reward_dir(tmp_path_factory.mktemp("tiny-rm"), tiny_llama, {"gain": 1.0, "bias": 0.0})


def _trainer(tmp_path, policy, reward, value_model="reward", **settings):
    set_seed(0)
    trained, roles, tokenizer, reward_tokenizer = build_models(str(policy), str(reward), LORA, value_model,
                                                               lora_top_layers=1)
    if value_model == "shared":  # the zero-initialised head would give equal values trivially
        torch.nn.init.normal_(trained.value_head.weight)
    config = PPOConfig(**{"output_dir": str(tmp_path / "out"), "total_episodes": 8, "per_device_train_batch_size": 4,
                          "num_mini_batches": 2, "response_length": 6, "save_steps": 0, "use_cpu": True,
                          "report_to": [], "disable_tqdm": True, "seed": 3, **settings})
    return PPOTrainer(config, trained, roles, tokenizer, reward_tokenizer, PROMPTS)


@pytest.mark.parametrize("value_model", ["reward", "shared"])
@pytest.mark.parametrize("cache", [True, False])
def test_bf16_first_minibatch_starts_at_ratio_one(tmp_path, tiny_llama, reward_folder, monkeypatch, cache,
                                                  value_model):
    """Under bf16 autocast, with learning rate 0, the PPO epochs see the rollout's own policy: every
    token's ratio is 1 and approx-KL 0, and the values are the rollout's (value clipping starts there)."""
    seen = []
    real_policy_loss, real_value_loss = ppo_math.policy_loss, ppo_math.value_loss

    def policy_loss(new, old, advantages, mask, cliprange):
        loss, stats = real_policy_loss(new, old, advantages, mask, cliprange)
        seen.append(("logprob", (new - old)[mask.bool()].abs().max().item(), stats))
        return loss, stats

    def value_loss(new, old, returns, mask, cliprange_value):
        seen.append(("value", (new - old)[mask.bool()].abs().max().item(), None))
        return real_value_loss(new, old, returns, mask, cliprange_value)

    monkeypatch.setattr(ppo_math, "policy_loss", policy_loss)
    monkeypatch.setattr(ppo_math, "value_loss", value_loss)
    trainer = _trainer(tmp_path, tiny_llama, reward_folder, value_model, bf16=True, learning_rate=0.0,
                       temperature=0.7, num_ppo_epochs=1, cache_frozen_layers=cache)
    assert trainer.accelerator.mixed_precision == "bf16" and trainer.layer_cache == cache
    trainer.train()
    assert seen
    for kind, error, stats in seen:
        assert error < 1e-5, (kind, error)  # before the fix: 1e-3 (log-probs), 4e-2 (shared values)
        if stats is not None:
            assert stats["ratio"].item() == pytest.approx(1.0, abs=1e-5)
            assert stats["approxkl"].item() < 1e-10


@pytest.mark.parametrize("shipped", [{"repetition_penalty": 1.3}, {"min_p": 0.9}, {"no_repeat_ngram_size": 1}])
def test_sampling_ignores_the_models_own_generation_config(tiny_llama, shipped):
    """A Hub model's generation_config (Qwen2.5-Instruct ships repetition_penalty 1.05) must not reshape the
    distribution PPO samples from: the tokens' sampling log-probs (generate()'s processed scores) equal
    a forward pass's at the same temperature."""
    from ranktune.models import load_causal_lm
    from ranktune.sampling import response_logprobs, sample, sampling_config

    model, tokenizer = load_causal_lm(str(tiny_llama))
    model.eval()
    model.generation_config.update(**shipped)
    outputs = []
    real_generate = model.generate

    def generate(*args, generation_config, **kwargs):
        generation_config.output_scores = True  # the scores after every logits processor and warper
        out = real_generate(*args, generation_config=generation_config, **kwargs)
        outputs.append(out)
        return out

    model.generate = generate
    torch.manual_seed(0)
    config = sampling_config(tokenizer, max_new_tokens=10, temperature=0.7)
    samples = sample(model, tokenizer, ["Hi there hi there", "Write a long poem about the sea"], config,
                     with_logprobs=True)
    drawn_from = torch.stack(outputs[0].scores, dim=1).float().log_softmax(-1)  # (B, R, V)
    drawn_logprobs = drawn_from.gather(-1, samples.responses[..., None]).squeeze(-1)
    forward = response_logprobs(model, samples, 0.7)
    mask = samples.mask.bool()
    assert torch.allclose(drawn_logprobs[mask], forward[mask], atol=1e-4)
    assert torch.allclose(samples.logprobs[mask], forward[mask], atol=1e-4)
    assert model.generation_config.to_dict().items() >= shipped.items(), "the model's own config is left as it was"


@pytest.mark.parametrize("use_peft", [True, False])
def test_value_model_starts_in_the_normalised_units_of_the_returns(tmp_path, tiny_llama, use_peft):
    """Returns are in normalised reward units (gain * raw + bias); the value model copied from the reward
    model must start there, at every answer state, while the reward model itself stays raw."""
    from ranktune.scoring import RewardScorer

    gain, bias = 3.0, -2.0  # far from 1 / 0
    reward = make_tiny_reward_dir(tmp_path / "rm", tiny_llama, {"gain": gain, "bias": bias})
    trained, roles, tokenizer, reward_tokenizer = build_models(str(tiny_llama), str(reward), LORA if use_peft else None,
                                                               "reward", lora_top_layers=1,
                                                               reward_normalization=(gain, bias))
    ids = tokenizer(["Write a long poem about the sea and the rain"], return_tensors="pt")["input_ids"]
    mask, Q = torch.ones_like(ids), 4
    with torch.no_grad():
        values = trained.token_values(ids, mask, Q)  # (1, R): the state before each answer token
    with roles.reward() as reward_model:
        scorer = RewardScorer(reward_model, reward_tokenizer, gain, bias)
        normalised = [scorer.score_ids(ids[:, :t], mask[:, :t]).item() for t in range(Q, ids.shape[1])]
        raw = [scorer.raw_scores_ids(ids[:, :t], mask[:, :t]).item() for t in range(Q, ids.shape[1])]
    assert values[0].tolist() == pytest.approx(normalised, abs=1e-4)
    assert values[0].tolist() != pytest.approx(raw, abs=0.1), "the reward model reads raw, the value normalised"


@pytest.mark.parametrize("engine", ["generate", "continuous_batching"])
def test_labeling_answers_are_sampled_with_the_stated_settings_only(tiny_llama, engine):
    """`labeling_ui generate` samples at its stated temperature and top_p, on both engines: not with
    the penalties a model's generation_config ships, nor transformers' default top-k."""
    from labeling_ui.config import GenerateArguments
    from labeling_ui.generate import sample_answers
    from ranktune.models import load_causal_lm

    model, tokenizer = load_causal_lm(str(tiny_llama))
    model.eval()
    model.generation_config.update(repetition_penalty=1.3, no_repeat_ngram_size=2)
    built = []
    real = model._get_logits_processor

    def logits_processor(generation_config, *args, **kwargs):
        processors = real(generation_config, *args, **kwargs)
        built.append(sorted(type(p).__name__ for p in processors))
        return processors

    model._get_logits_processor = logits_processor
    args = GenerateArguments(engine=engine, max_new_tokens=6, temperature=0.9, top_p=0.95)
    texts, _, _ = sample_answers(model, tokenizer, ["Hi there", "Write about the sea"], 2, args)
    assert len(texts) == 2 and all(len(answers) == 2 for answers in texts)
    # generate() turns min_new_tokens=0 into min_length = the prompt's length: a processor with nothing to do
    stated = {"TemperatureLogitsWarper", "TopPLogitsWarper", "MinLengthLogitsProcessor"}
    assert built and all(set(names) <= stated and "TopPLogitsWarper" in names for names in built), built
