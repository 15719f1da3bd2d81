"""transformers' continuous batching as the sampling engine, for PPO rollouts and candidate answers."""

import json

import torch
from transformers import GenerationConfig

from labeling_ui.cli import main as label_main
from ranktune.models import load_causal_lm
from ranktune.sampling import continuous_generate, sample, sample_continuous, sampling_config, tokenize_prompts
from rlhf.train import main as rlhf_main
from tiny_models import make_tiny_reward_dir

PROMPTS = ["Hi there", "Write a long poem about the sea", "Explain rain."]


def test_greedy_answers_are_the_same_from_both_engines(tiny_llama):
    model, tokenizer = load_causal_lm(str(tiny_llama))
    model.eval()
    greedy = GenerationConfig(do_sample=False, max_new_tokens=8, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)
    queries, mask = tokenize_prompts(tokenizer, PROMPTS)
    with torch.no_grad():
        out = model.generate(input_ids=queries, attention_mask=mask, generation_config=greedy)
    ids = [q[m.bool()].tolist() for q, m in zip(queries, mask)]
    batched = continuous_generate(model, ids, greedy)
    for row, answer in zip(out[:, queries.shape[1]:].tolist(), batched):
        assert answer == row[:len(answer)], "same tokens, in the order of the prompts"


def test_continuous_batching_samples_are_shaped_like_generate_ones(tiny_llama):
    model, tokenizer = load_causal_lm(str(tiny_llama))
    model.eval()
    config = sampling_config(tokenizer, max_new_tokens=10, temperature=0.7)
    torch.manual_seed(0)
    samples = sample_continuous(model, tokenizer, PROMPTS * 2, config)
    reference = sample(model, tokenizer, PROMPTS * 2, config)
    assert samples.queries.shape == reference.queries.shape and samples.responses.shape[0] == 6
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    for row, m, ended in zip(samples.responses.tolist(), samples.mask, samples.ended):
        n = int(m.sum())
        assert all(t == pad for t in row[n:])
        if ended:
            assert row[n - 1] == eos and eos not in row[:n - 1]
        else:
            assert n == 10 and eos not in row, "an answer that never ended ran to max_new_tokens"


def test_ppo_and_candidate_generation_run_on_continuous_batching(tmp_path, tiny_llama):
    reward = make_tiny_reward_dir(tmp_path / "rm", tiny_llama)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Write about topic {i}."}) + "\n" for i in range(12)))
    final = rlhf_main(["--run", "cb", "--runs_dir", str(tmp_path / "runs"), "--prompts", str(prompts),
                       "--model_name_or_path", str(tiny_llama), "--reward_model", str(reward),
                       "--generation_engine", "continuous_batching", "--total_episodes", "8",
                       "--per_device_train_batch_size", "4", "--response_length", "8", "--max_eval_prompts", "0",
                       "--eval_fraction", "0", "--lora_r", "4", "--save_steps", "100", "--disable_tqdm", "true"])
    lines = [json.loads(x) for x in (final / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(abs(x["policy/ratio"] - 1) < 0.5 for x in lines)

    stats = label_main(["generate", "--config", "configs/label.yaml", "--runs_dir", str(tmp_path / "runs"),
                        "--run", "cb", "--policy", str(tiny_llama), "--prompts", str(prompts), "--max_prompts", "3",
                        "--k", "2", "--max_new_tokens", "6", "--engine", "continuous_batching"])
    assert (stats["items_written"], stats["answers_written"]) == (3, 6)
