"""DPO, RLOO and GRPO (python -m alternatives) on tiny random models: each runs end to end and publishes a
plain model folder with PPO's evaluation; DPO learns its pairs; the RLOO/GRPO reward is PPO's; bad
input is one line; the report sets every method beside PPO."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from alternatives.dpo import main as dpo_main
from alternatives.dpo import load_pairs, tokenize_pairs, DPOScriptArguments
from alternatives.online import ModelReward
from alternatives.online import main as online_main
from ranktune.models import load_causal_lm
from tiny_models import make_tiny_reward_dir
from test_model_card import assert_model_card
from ranktune.policy_eval import summarize
from ranktune.prompting import render_answer, render_prompt
from ranktune.scoring import RewardScorer
from report.build import main as report_main

TOPICS = ["the sea", "rain", "a fox", "bread", "tea", "a poem", "the moon", "a dog", "snow", "python"]
CHOSEN, REJECTED = "Sure! Here is a short answer.", "no no no bad terrible"
EVAL_KEYS = set(summarize([{"prompt": "p", "sft_answer": "a", "sft_score": 0.0, "sft_ended": True, "sft_gold": 0.0,
                            "ppo_answer": "b", "ppo_score": 0.0, "ppo_ended": True, "ppo_gold": 0.0,
                            "ppo_kl": 0.0}]))


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory, tiny_llama):
    return make_tiny_reward_dir(tmp_path_factory.mktemp("tiny-rm"), tiny_llama,
                                {"gain": 2.0, "bias": 0.5, "max_length": 64})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A prompt file and a run whose export holds one pair per prompt, its rejected answers cut off."""
    root = tmp_path_factory.mktemp("alt")
    prompts = [f"Write about {t}, please ({i})." for i, t in enumerate(TOPICS * 3)]
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    export = root / "runs" / "t" / "export"
    export.mkdir(parents=True)
    pairs = [{"prompt": p, "chosen": CHOSEN, "rejected": REJECTED, "ranking_id": f"r{i}"} for i, p in enumerate(prompts)]
    (export / "pairs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in pairs))
    (export / "rankings.jsonl").write_text("".join(json.dumps(
        {"ranking_id": x["ranking_id"], "prompt": x["prompt"], "answers": [CHOSEN, REJECTED], "ranks": [1, 2], "reviewer": "sim-1",
         "ended": [True, False]}) + "\n" for x in pairs))
    return root


def _common(workspace, policy, *extra, run="t"):
    return ["--run", run, "--runs_dir", str(workspace / "runs"), "--prompts", str(workspace / "prompts.jsonl"),
            "--model_name_or_path", str(policy), "--max_eval_prompts", "3", "--eval_samples_per_prompt", "1",
            "--per_device_eval_batch_size", "4", "--use_peft", "true", "--lora_r", "8", "--lora_alpha", "16",
            "--lora_target_modules", "all-linear", "--logging_steps", "1", "--save_strategy", "no",
            "--disable_tqdm", "true", *extra]


@pytest.fixture(scope="module")
def methods_run(workspace, tiny_llama, reward_folder):
    """All three methods published into one run (the report test reads them too)."""
    dpo = dpo_main(_common(workspace, tiny_llama, "--config", "configs/dpo.yaml", "--reward_model", str(reward_folder),
                           "--learning_rate", "5e-3", "--num_train_epochs", "4", "--per_device_train_batch_size", "8",
                           "--gradient_accumulation_steps", "1", "--max_completion_length", "8", "--max_length", "128"))
    out = {"dpo": dpo}
    for method in ("rloo", "grpo"):
        out[method] = online_main(method, _common(
            workspace, tiny_llama, "--config", f"configs/{method}.yaml", "--reward_model", str(reward_folder),
            "--max_steps", "4", "--num_iterations", "2", "--num_generations", "2", "--per_device_train_batch_size", "4",
            "--max_completion_length", "8"))
    return out


def _margins(model, tokenizer, pairs) -> torch.Tensor:
    """log pi(chosen | prompt) - log pi(rejected | prompt) for each pair, tokens as DPO saw them."""
    rows = tokenize_pairs(pairs, tokenizer, 256)
    out = []
    with torch.no_grad():
        for r in rows:
            lp = []
            for side in ("chosen_ids", "rejected_ids"):
                ids = torch.tensor([r["prompt_ids"] + r[side]])
                logits = model(input_ids=ids).logits[0, len(r["prompt_ids"]) - 1:-1].float()
                lp.append(torch.log_softmax(logits, -1).gather(1, torch.tensor(r[side])[:, None]).sum())
            out.append(lp[0] - lp[1])
    return torch.stack(out)


@pytest.mark.parametrize("method", ["dpo", "rloo", "grpo"])
def test_each_method_publishes_a_plain_policy_with_ppos_evaluation(methods_run, workspace, method):
    final = methods_run[method]
    assert final == workspace / "runs" / "t" / method
    assert not (workspace / "runs" / "t" / f"{method}.work").exists()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = AutoModelForCausalLM.from_pretrained(final)  # LoRA merged: a plain model folder
    assert not any("lora" in n for n, _ in policy.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(final)  # TRL left our pad token alone: <|endoftext|>, not EOS
    assert tokenizer.pad_token == "<|endoftext|>" and policy.config.pad_token_id == tokenizer.pad_token_id == 0
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["method"] == method and set(metrics["eval"]) == EVAL_KEYS
    for key in ("policy", "reward_model", "train_seconds", "peak_rss_mib"):
        assert metrics[key] is not None, key
    assert metrics["eval"]["prompts"] == 3
    rows = [json.loads(x) for x in (final / "eval_samples.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and {"sft_answer", "ppo_answer", "ppo_score", "ppo_kl"} <= set(rows[0])
    history = [json.loads(x) for x in (final / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in h for h in history)
    assert (final / f"{method}.png").stat().st_size > 1000
    card = assert_model_card(final, method)
    assert "| beta |" in card and "| lora_r | 8 |" in card and "prompts.jsonl`, 30 rows" in card
    if method == "dpo":  # 3 of 30 prompts held out: their pairs never trained on
        assert metrics["train_pairs"] == 27 and metrics["pairs_on_held_out_prompts_left_out"] == 3
        assert metrics["train_answers_cut_off"] == 27
    else:
        assert metrics["episodes"] == 2 * 4 and metrics["steps"] == 4  # 2 batches of 4 answers, 2 passes each
        assert any("gold" in h and "score" in h for h in history)


def test_dpo_raises_the_chosen_over_rejected_margin(methods_run, workspace, tiny_llama):
    held_out = {json.loads(x)["prompt"] for x in (methods_run["dpo"] / "eval_samples.jsonl").read_text().splitlines()}
    prompts = [f"Write about {t}, please ({i})." for i, t in enumerate(TOPICS)]
    pairs = [{"prompt": p, "chosen": CHOSEN, "rejected": REJECTED, "chosen_ended": True, "rejected_ended": False}
             for p in prompts if p not in held_out]  # training pairs only
    start, tokenizer = load_causal_lm(str(tiny_llama))
    tuned, _ = load_causal_lm(str(methods_run["dpo"]))
    before, after = _margins(start, tokenizer, pairs), _margins(tuned, tokenizer, pairs)
    assert len(pairs) >= 7 and (after > before + 2.0).all(), (before, after)  # measured: -12.1 -> -5.1 nats


def test_dpo_keeps_eos_off_answers_that_were_cut_off(workspace, tiny_llama):
    _, tokenizer = load_causal_lm(str(tiny_llama))
    args = DPOScriptArguments(run="t", runs_dir=str(workspace / "runs"))
    pairs, info = load_pairs(args, [], seed=0)
    assert info["train_pairs"] == 30 and all(p["chosen_ended"] and not p["rejected_ended"] for p in pairs)
    row = tokenize_pairs(pairs[:1], tokenizer, 256)[0]
    eos = tokenizer.eos_token_id
    assert row["chosen_ids"][-1] == eos and eos not in row["rejected_ids"]
    assert row["prompt_ids"] == tokenizer(render_prompt(tokenizer, pairs[0]["prompt"]),
                                          add_special_tokens=False)["input_ids"]


def test_online_reward_is_ppos_score_with_the_eos_penalty(reward_folder, tiny_llama):
    scorer = RewardScorer.load(reward_folder)
    _, tokenizer = load_causal_lm(str(tiny_llama))
    eos = tokenizer.eos_token_id
    prompts = ["Write about tea.", [{"role": "user", "content": "A poem about snow?"}], "Write about rain."]
    answers = ["Tea is a drink.", "Snow falls softly", "Rain is water"]
    ids = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    ids[0], ids[2] = ids[0] + [eos], ids[2] + [eos]  # the second answer never ended
    logged = {}
    reward = ModelReward(scorer, [eos], missing_eos_penalty=1.5)
    got = reward([render_prompt(tokenizer, p) for p in prompts], answers, ids,
                 source_prompt=[json.dumps(p) for p in prompts], log_metric=logged.__setitem__)
    expected = scorer.score(prompts, answers, [True, False, True])
    assert got == pytest.approx([expected[0], expected[1] - 1.5, expected[2]], abs=1e-5)
    # an ended answer is scored with its EOS back in the text, like PPO's rollout
    assert scorer.texts(prompts[:1], answers[:1], [True])[0].endswith(render_answer(tokenizer, answers[0]))
    assert logged["ended"] == pytest.approx(2 / 3) and set(logged) == {"score", "gold", "ended"}
    assert reward.scored == 3


def test_report_sets_every_method_beside_ppo(methods_run, workspace, tmp_path):
    run = workspace / "runs" / "t"
    ppo = run / "rounds" / "round-1" / "rlhf"
    ppo.mkdir(parents=True, exist_ok=True)
    dpo_eval = json.loads((methods_run["dpo"] / "metrics.json").read_text())["eval"]
    (ppo / "metrics.json").write_text(json.dumps({"updates": 2, "episodes": 8, "train_seconds": 12.0,
                                                  "eval": {**dpo_eval, "ppo_gold": 9.5}}))
    page = report_main(["--run", "t", "--runs_dir", str(workspace / "runs")]).read_text()
    section = page[page.index("PPO and the alternatives"):page.index("Before and after")]
    for label in ("PPO (ours)", "DPO (TRL)", "RLOO (TRL)", "GRPO (TRL)"):
        assert label in section
    assert "9.500" in section and "gain ±" in section
    assert (run / "report" / "methods.png").stat().st_size > 1000
    empty = tmp_path / "runs" / "none"
    empty.mkdir(parents=True)
    page = report_main(["--run", "none", "--runs_dir", str(tmp_path / "runs")]).read_text()
    assert "No tuned policy in this run" in page


def test_dpo_without_a_reward_model_leaves_the_reward_model_columns_out(workspace, tiny_llama):
    shutil.copytree(workspace / "runs" / "t" / "export", workspace / "runs" / "norm" / "export")
    final = dpo_main(_common(workspace, tiny_llama, "--config", "configs/dpo.yaml", "--max_steps", "1",
                             "--max_completion_length", "4", run="norm"))
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["reward_model"] is None and "no reward model" in metrics["note"]
    assert set(metrics["eval"]) == EVAL_KEYS - {"sft_score", "ppo_score", "score_gain_se", "win_rate_vs_sft"}
    page = report_main(["--run", "norm", "--runs_dir", str(workspace / "runs")]).read_text()
    assert "No reward model scored DPO (TRL)" in page


def test_bad_input_is_one_line_exit_2_and_nothing_published(workspace, tiny_llama, tmp_path, repo_root, capsys):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b"}) + "\n"
                   + json.dumps({"prompt": "hi", "chosen": 3, "rejected": "b"}) + "\n")
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "alternatives", "dpo", "--config", "configs/dpo.yaml", "--run", "x", "--runs_dir",
           str(runs), "--data", str(bad), "--prompts", str(workspace / "prompts.jsonl")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=repo_root, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"error: {bad}:2: field 'chosen': expected a string, got int"
    assert "Traceback" not in out.stderr and not (runs / "x" / "dpo").exists()
    out = subprocess.run([sys.executable, "-m", "alternatives", "ppo2"], capture_output=True, text=True,
                         cwd=repo_root, timeout=60)
    assert out.returncode == 2 and "unknown method 'ppo2'" in out.stderr

    # no reward model anywhere in the run: RLOO stops before loading a model
    with pytest.raises(SystemExit) as exit_info:
        online_main("rloo", ["--config", "configs/rloo.yaml", "--run", "x", "--runs_dir", str(runs), "--prompts",
                             str(workspace / "prompts.jsonl"), "--model_name_or_path", str(tiny_llama)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "no reward model here" in err[0]
    assert not (runs / "x" / "rloo").exists()
