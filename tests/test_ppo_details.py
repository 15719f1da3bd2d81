"""Smaller PPO details of issue 19: dropout everywhere off, special tokens reach the reward model,
and tests of PPO's math that can fail."""

import torch
from transformers import AutoModelForCausalLM, set_seed

from rlhf.models import build_models
from tiny_models import make_tiny_reward_dir


def test_attention_dropout_from_the_config_is_off(tmp_path, tiny_llama):
    """Llama-style attention applies `config.attention_dropout` (a float, not an nn.Dropout) in train mode:
    the PPO epochs would then compute a different function from the rollout's."""
    policy = tmp_path / "policy"
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, attention_dropout=0.5)
    assert model.config.attention_dropout == 0.5
    model.save_pretrained(policy)
    for path in tiny_llama.glob("tokenizer*"):
        (policy / path.name).write_bytes(path.read_bytes())
    reward = make_tiny_reward_dir(tmp_path / "rm", policy)
    for value_model in ("reward", "shared"):
        set_seed(0)
        trained, _, _, _ = build_models(str(policy), str(reward), None, value_model)
        trained.train()
        ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
        first, second = trained(ids, torch.ones_like(ids), 3), trained(ids, torch.ones_like(ids), 3)
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1]), value_model


def test_special_tokens_the_policy_emits_reach_the_reward_model(tiny_llama):
    """The reward model must read the answer's tokens as generated, a special token mid-answer included:
    only the first EOS and the padding after it are not part of the answer text."""
    from ranktune.models import load_causal_lm
    from ranktune.sampling import Samples, response_mask, tokenize_prompts
    from ranktune.scoring import RewardScorer

    _, tokenizer = load_causal_lm(str(tiny_llama))
    special = tokenizer.convert_tokens_to_ids("<|im_start|>")
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    say = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    answer = say("good great") + [special] + say("yes no")
    ended_row = answer + [eos, pad]
    open_row = (say("hello") + [special, special, pad] + say("yes yes yes yes yes yes yes"))[:len(ended_row)]
    rows = [ended_row, open_row]  # the second never ends, and emits the pad token mid-answer
    responses = torch.tensor(rows)
    mask, ended = response_mask(responses, eos)
    prompts = ["Hi there", "Write about the sea"]
    queries, query_mask = tokenize_prompts(tokenizer, prompts)
    samples = Samples(prompts, queries, query_mask, responses.masked_fill(mask == 0, pad), mask, ended)
    answers = samples.answers(tokenizer)
    assert "<|im_start|>" in answers[0] and "<|im_start|><|im_start|><|endoftext|>yes" in answers[1]
    scorer = RewardScorer(torch.nn.Linear(1, 1), tokenizer)
    texts = scorer.texts(prompts, answers, ended.tolist())
    for prompt, text, row, end in zip(prompts, texts, rows, ended.tolist()):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        generated = row[:row.index(eos) + 1] if end else row
        assert ids[len(ids) - len(generated):] == generated, (text, ids, generated)


def test_resume_replays_the_demonstration_stream(tmp_path, tiny_llama, monkeypatch):
    """PPO-ptx on resume: the updates after the checkpoint train on the demonstration batches the
    uninterrupted run used there, not on the stream's first ones again."""
    import rlhf.checkpoint
    from rlhf.data import ptx_batches
    from rlhf.ppo import PPOConfig, PPOTrainer

    reward = make_tiny_reward_dir(tmp_path / "rm", tiny_llama)
    demos = [{"prompt": f"Say item {i}", "completion": f"Item {i} is good."} for i in range(12)]

    def run(resume_from=None):
        set_seed(0)
        trained, roles, tokenizer, reward_tokenizer = build_models(str(tiny_llama), str(reward), None, "shared")
        config = PPOConfig(output_dir=str(tmp_path / "out"), total_episodes=3 * 4, per_device_train_batch_size=2,
                           num_mini_batches=2, num_ppo_epochs=1, response_length=4, ptx_coef=0.5, save_steps=0,
                           use_cpu=True, report_to=[], disable_tqdm=True, seed=3)
        trainer = PPOTrainer(config, trained, roles, tokenizer, reward_tokenizer, [f"Prompt {i}" for i in range(8)],
                             ptx_batches=ptx_batches(demos, tokenizer, 2, 64, seed=0))
        used, real = [], trainer.ptx_loss
        trainer.ptx_loss = lambda batch: (used.append(batch["input_ids"].tolist()), real(batch))[1]
        trainer.train(resume_from)
        return used

    whole = run()
    assert len(whole) == 3 * 2  # one batch per micro-batch: 2 an update
    monkeypatch.setattr(rlhf.checkpoint, "load_checkpoint", lambda trainer, folder: 2)  # as if stopped after 2
    assert run(resume_from="checkpoint-2") == whole[4:]
