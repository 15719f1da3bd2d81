"""The PPO stage on tiny random models: wiring, a learning signal, checkpoints and resume, bad input."""

import json
import subprocess
import sys

import pytest
import torch

from rlhf import ppo as ppo_module
from ranktune.sampling import response_logprobs, sample, sampling_config
from rlhf.models import build_models
from rlhf.ppo import PPOConfig, PPOTrainer
from rlhf.train import main as rlhf_main
from ranktune.models import load_sequence_classifier
from tiny_models import CountingReward, make_tiny_reward_dir
from test_model_card import assert_model_card


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory, tiny_llama):
    """A (random) reward model folder: a one-output classifier over the tiny llama."""
    return make_tiny_reward_dir(tmp_path_factory.mktemp("tiny-rm"), tiny_llama, {"gain": 2.0, "bias": 0.5})


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    topics = ["the sea", "rain", "a fox", "bread", "tea", "a poem", "the moon", "a dog", "snow", "python"]
    path.write_text("".join(json.dumps({"prompt": f"Write about {t}, please ({i})."}) + "\n"
                            for i, t in enumerate(topics * 3)))
    return path


def _args(tmp_path, policy, reward, prompts, *extra):
    return ["--run", "t", "--runs_dir", str(tmp_path / "runs"), "--prompts", str(prompts),
            "--model_name_or_path", str(policy), "--reward_model", str(reward),
            "--per_device_train_batch_size", "4", "--response_length", "8", "--max_eval_prompts", "4",
            "--per_device_eval_batch_size", "4", "--save_steps", "2", "--logging_steps", "1", *extra]


def test_sampling_logprobs_equal_a_forward_pass(tiny_llama):
    """PPO reuses generate()'s logits as the old log-probs: they must be the policy's, so the first
    PPO epoch starts at ratio 1."""
    from ranktune.models import load_causal_lm

    model, tokenizer = load_causal_lm(str(tiny_llama))
    model.eval()
    torch.manual_seed(0)
    config = sampling_config(tokenizer, max_new_tokens=10, temperature=0.7)
    samples = sample(model, tokenizer, ["Hi there", "Write a long poem about the sea"], config, with_logprobs=True)
    assert samples.queries.shape[1] > 0 and samples.responses.shape[1] <= 10
    again = response_logprobs(model, samples, 0.7)
    mask = samples.mask.bool()
    assert torch.allclose(samples.logprobs[mask], again[mask], atol=1e-4)


def test_shared_values_from_generation_equal_a_forward_pass(tiny_llama, reward_folder):
    """With a shared value head, the rollout's values come from generate()'s hidden states; they must
    be the values the training forward pass computes, or value clipping starts from the wrong place."""
    trained, _, tokenizer, _ = build_models(str(tiny_llama), str(reward_folder), None, "shared")
    torch.nn.init.normal_(trained.value_head.weight)  # the zero-initialised head would agree trivially
    trained.eval()
    torch.manual_seed(0)
    config = sampling_config(tokenizer, max_new_tokens=10, temperature=0.7)
    samples = sample(trained.policy, tokenizer, ["Hi there", "Write a long poem about the sea"], config,
                     with_logprobs=True, with_hidden=True)
    assert samples.hidden.shape[:2] == samples.responses.shape
    with torch.no_grad():
        _, values = trained(samples.input_ids, samples.attention_mask, samples.context_length)
    mask = samples.mask.bool()
    assert torch.allclose(trained.head_values(samples.hidden)[mask], values[mask], atol=1e-4)


@pytest.mark.parametrize("mode", ["lora-reward-value", "full-shared-value"])
def test_ppo_run_publishes_a_loadable_policy_and_metrics(tmp_path, tiny_llama, reward_folder, prompts_file, mode):
    extra = (["--use_peft", "true", "--lora_r", "4", "--lora_target_modules", "all-linear", "--lora_top_layers", "1"]
             if mode.startswith("lora")
             else ["--use_peft", "false", "--value_model", "shared", "--learning_rate", "1e-4"])
    final = rlhf_main(_args(tmp_path, tiny_llama, reward_folder, prompts_file, "--total_episodes", "12", *extra))
    assert final == tmp_path / "runs" / "t" / "rlhf"
    assert not (tmp_path / "runs" / "t" / "rlhf.work").exists()
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(final)  # a plain model folder, LoRA merged
    assert not any("lora" in n for n, _ in policy.named_parameters())
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["updates"] == 3 and metrics["episodes"] == 12
    for key in ("sft_score", "ppo_score", "kl_to_sft", "win_rate_vs_sft", "sft_gold", "ppo_gold"):
        assert isinstance(metrics["eval"][key], float)
    lines = [json.loads(x) for x in (final / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    for key in ("objective/scores", "objective/kl", "objective/non_score_reward", "policy/entropy",
                "policy/clipfrac", "policy/approxkl", "loss/value", "value/explained_variance",
                "answers/length", "episodes_per_second", "tokens_per_second"):
        assert key in lines[0], key
    assert (final / "ppo.png").stat().st_size > 1000
    rows = [json.loads(x) for x in (final / "eval_samples.jsonl").read_text().splitlines()]
    assert metrics["eval"]["prompts"] == 3  # 10% of 30 distinct prompts
    assert len(rows) == 3 * metrics["eval"]["samples_per_prompt"] == 6  # two answers per prompt by default
    assert {r["prompt"] for r in rows[:2]} == {rows[0]["prompt"]}, "a prompt's answers side by side"
    assert metrics["eval"]["gold_gain_se"] >= 0
    assert f"`{prompts_file}`, 30 rows" in assert_model_card(final, "rlhf")


def test_lora_roles_share_weights(tiny_llama, reward_folder):
    """With LoRA the reference is the policy with its adapter off, and the reward model is the value
    model with its adapter off: two copies of base weights, not four."""
    from peft import LoraConfig

    lora = LoraConfig(r=4, target_modules="all-linear")
    trained, roles, tokenizer, _ = build_models(str(tiny_llama), str(reward_folder), lora, "reward")
    assert roles.ref_model is None and roles.reward_model is None
    ids = tokenizer(["Hello world, a poem"], return_tensors="pt")
    for p in trained.parameters():  # make the adapters matter
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.5)
    with torch.no_grad():
        tuned = trained.policy(**ids).logits
        with roles.reference() as ref:
            base = ref(**ids).logits
        value = trained.value(**ids).logits
        with roles.reward() as rm:
            reward = rm(**ids).logits
    original, _ = load_sequence_classifier(str(reward_folder))
    with torch.no_grad():
        expected_reward = original(**ids).logits
    assert not torch.allclose(tuned, base)
    assert torch.allclose(reward, expected_reward, atol=1e-5)  # adapter off == the reward model as trained
    assert not torch.allclose(value, reward)


def test_lora_top_layers_adapts_only_the_last_layers(tiny_llama, reward_folder):
    from peft import LoraConfig

    from rlhf.layer_cache import decoder_layers

    lora = LoraConfig(r=4, target_modules="all-linear")
    for top, graph_from in ((1, 1), (0, 0)):  # top 0 (every layer) shows the check below can fail
        trained, _, _, _ = build_models(str(tiny_llama), str(reward_folder), lora, "reward", lora_top_layers=top)
        if top:
            for role in (trained.policy, trained.value):
                adapted = {n.split("layers.")[1].split(".")[0] for n, _ in role.named_parameters() if "lora_" in n}
                assert adapted == {"1"}, adapted  # the tiny model has layers 0 and 1
        # one forward and backward: the graph starts at the first adapted layer, so backward stops there
        in_graph = {}
        hooks = [layer.register_forward_hook(
                     lambda module, args, out, key=(role, i): in_graph.__setitem__(
                         key, (out[0] if isinstance(out, tuple) else out).requires_grad))
                 for role in ("policy", "value") for i, layer in enumerate(decoder_layers(trained.backbone(role))[1])]
        ids = torch.tensor([[5, 6, 7, 8, 9]])
        logits, values = trained(ids, torch.ones_like(ids), 2)
        (logits.float().mean() + values.mean()).backward()
        for hook in hooks:
            hook.remove()
        assert in_graph == {(role, i): i >= graph_from for role in ("policy", "value") for i in (0, 1)}, (top, in_graph)
        grads = {n for n, p in trained.named_parameters() if p.grad is not None}
        assert any("layers.1" in n and "lora_" in n for n in grads)


def test_mean_reward_rises_on_a_synthetic_task(tmp_path, tiny_llama, reward_folder):
    torch.manual_seed(0)
    trained, roles, tokenizer, reward_tokenizer = build_models(str(tiny_llama), str(reward_folder), None, "shared")
    vocab = len(tokenizer)
    liked = torch.arange(40, vocab, 4)  # a quarter of the vocabulary
    roles.reward_model = CountingReward(liked, tokenizer.eos_token_id, tokenizer.pad_token_id)
    config = PPOConfig(output_dir=str(tmp_path / "out"), total_episodes=8 * 30, per_device_train_batch_size=8,
                       response_length=8, learning_rate=1e-2, kl_coef=0.0, missing_eos_penalty=None,
                       temperature=1.0, save_steps=0, logging_steps=1, use_cpu=True, report_to=[],
                       disable_tqdm=True, seed=3)
    prompts = [f"Say something about item {i}" for i in range(16)]
    trainer = PPOTrainer(config, trained, roles, tokenizer, reward_tokenizer, prompts)
    history = [h["objective/scores"] for h in trainer.train() if "objective/scores" in h]
    assert len(history) == 30
    first, last = sum(history[:3]) / 3, sum(history[-3:]) / 3
    assert last > first + 0.3, history  # about +0.5 when measured (answer share of liked tokens 1/4 -> 3/4)


def test_resume_after_a_crash_continues_to_the_same_result(tmp_path, tiny_llama, reward_folder, prompts_file,
                                                           monkeypatch):
    lora = ["--use_peft", "true", "--lora_r", "4", "--lora_target_modules", "all-linear", "--total_episodes", "16"]
    clean = rlhf_main(_args(tmp_path / "clean", tiny_llama, reward_folder, prompts_file, *lora))
    clean_log = [json.loads(x) for x in (clean / "metrics.jsonl").read_text().splitlines()]

    real_step = PPOTrainer.step

    def crashing_step(self, update):
        if update == 3:
            raise KeyboardInterrupt("simulated kill")
        return real_step(self, update)

    monkeypatch.setattr(ppo_module.PPOTrainer, "step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        rlhf_main(_args(tmp_path / "crash", tiny_llama, reward_folder, prompts_file, *lora))
    work = tmp_path / "crash" / "runs" / "t" / "rlhf.work"
    assert [p.name for p in work.iterdir() if p.name.startswith("checkpoint-")] == ["checkpoint-2"]
    assert not (tmp_path / "crash" / "runs" / "t" / "rlhf").exists()  # nothing published half-done

    monkeypatch.setattr(ppo_module.PPOTrainer, "step", real_step)
    resumed = rlhf_main(_args(tmp_path / "crash", tiny_llama, reward_folder, prompts_file, *lora, "--resume", "true"))
    resumed_log = [json.loads(x) for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert len(resumed_log) == len(clean_log) == 4
    for a, b in zip(clean_log, resumed_log):  # same prompts, same draws, same weights
        assert a["objective/scores"] == pytest.approx(b["objective/scores"], abs=1e-4)
        assert a["loss/policy"] == pytest.approx(b["loss/policy"], abs=1e-4)


def test_gpt2_style_models_work(tmp_path, tiny_gpt2, prompts_file):
    rm, tok = load_sequence_classifier(str(tiny_gpt2))
    rm.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    final = rlhf_main(_args(tmp_path, tiny_gpt2, tmp_path / "rm", prompts_file, "--total_episodes", "4",
                            "--use_peft", "true", "--lora_r", "4", "--lora_target_modules", "c_attn"))
    assert json.loads((final / "metrics.json").read_text())["updates"] == 1


def test_bad_input_is_one_line_and_no_output(tmp_path, tiny_llama, reward_folder, prompts_file, repo_root):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": 3}\n')
    cmd = [sys.executable, "-m", "rlhf", *_args(tmp_path, tiny_llama, reward_folder, bad)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=repo_root, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == f"error: {bad}:2: field 'prompt': expected a string, got int"
    assert "Traceback" not in out.stderr
    cmd = [sys.executable, "-m", "rlhf", *_args(tmp_path, tiny_llama, tmp_path / "nowhere", prompts_file)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=repo_root, timeout=120)
    assert out.returncode == 2 and "no reward model here" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "runs" / "t" / "rlhf").exists()
