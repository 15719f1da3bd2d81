"""The SFT stage on tiny random models: it learns, publishes a loadable model, resumes after a
crash, and turns bad input into one-line errors."""

import json
import subprocess
import sys

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from sft.train import main as sft_main
from test_model_card import assert_model_card

REPETITIVE = [{"prompt": f"Say the word number {i}", "completion": f"Sure: word {i}. Done."} for i in range(24)]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run_sft(model_dir, data, runs_dir, *extra, run="t"):
    return sft_main([
        "--config", "configs/sft.yaml", "--model_name_or_path", str(model_dir), "--data", str(data),
        "--runs_dir", str(runs_dir), "--run", run, "--learning_rate", "1e-3", "--num_train_epochs", "3",
        "--per_device_train_batch_size", "4", "--save_steps", "2", "--disable_tqdm", "true", *extra,
    ])


@pytest.fixture
def demos(tmp_path):
    return write_jsonl(tmp_path / "demos.jsonl", REPETITIVE)


def test_sft_lowers_held_out_loss_and_publishes_a_plain_model(tiny_llama, demos, tmp_path):
    final = run_sft(tiny_llama, demos, tmp_path / "runs")
    assert final == tmp_path / "runs" / "t" / "sft"
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["eval_loss"] < metrics["base_eval_loss"]
    assert metrics["train_examples"] + metrics["eval_examples"] == len(REPETITIVE)
    assert (final / "loss.png").stat().st_size > 1000
    card = assert_model_card(final, "sft")  # README.md: base model, data and held-out losses
    assert f"`{demos}`, 24 rows" in card and f"train_examples {metrics['train_examples']}" in card
    assert not (final.parent / "sft.work").exists(), "checkpoints are cleaned up after publishing"
    model = AutoModelForCausalLM.from_pretrained(final)  # plain transformers, no ranktune needed
    tok = AutoTokenizer.from_pretrained(final)
    assert tok.pad_token_id != tok.eos_token_id
    assert model.config.pad_token_id == tok.pad_token_id


def test_sft_on_gpt2_style_model_with_lora(tiny_gpt2, demos, tmp_path):
    final = run_sft(tiny_gpt2, demos, tmp_path / "runs", "--use_peft", "true", "--lora_r", "4",
                    "--lora_target_modules", "c_attn")
    assert not (final / "adapter_config.json").exists(), "the LoRA adapter is merged into a plain model"
    tok = AutoTokenizer.from_pretrained(final)
    model = AutoModelForCausalLM.from_pretrained(final)
    assert tok.pad_token not in (None, tok.eos_token)
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    base = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    changed = [n for n, p in model.named_parameters() if "attn.c_attn.weight" in n
               and not torch.equal(p, dict(base.named_parameters())[n])]
    assert changed, "merged LoRA weights differ from the base"


def test_resume_after_crash_reaches_the_same_step_count(tiny_llama, demos, tmp_path, monkeypatch):
    full = run_sft(tiny_llama, demos, tmp_path / "full")
    expected_steps = json.loads((full / "metrics.json").read_text())["global_step"]

    original = transformers.Trainer.training_step

    def crash_at_step_3(self, *args, **kwargs):
        if self.state.global_step == 3:
            raise KeyboardInterrupt("simulated crash")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "training_step", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        run_sft(tiny_llama, demos, tmp_path / "runs")
    work = tmp_path / "runs" / "t" / "sft.work"
    assert (work / "checkpoint-2").is_dir()
    assert not (tmp_path / "runs" / "t" / "sft").exists(), "no final model after a crash"

    steps_run = []

    def count_steps(self, *args, **kwargs):
        steps_run.append(self.state.global_step)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "training_step", count_steps)
    final = run_sft(tiny_llama, demos, tmp_path / "runs", "--resume", "true")
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["global_step"] == expected_steps
    assert steps_run[0] == 2, "resumed training continues after checkpoint-2 instead of restarting"
    assert len(steps_run) == expected_steps - 2


@pytest.mark.parametrize("content, expected", [
    ("", "file is empty"),
    ('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": \n', ":2: not valid JSON"),
    ('{"prompt": "a", "completion": "b"}\n{"prompt": "x"}\n', ":2: field 'completion': missing"),
    ('{"prompt": 3, "completion": "b"}\n', ":1: field 'prompt': expected a string, got int"),
    ('{"prompt": "a", "completion": "  "}\n', ":1: field 'completion': is empty"),
    ('["prompt", "completion"]\n', ":1: expected a JSON object"),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n', ":1: field 'messages': must end with an assistant"),
    ('{"messages": [{"role": "robot", "content": "hi"}]}\n', "field 'messages[0].role'"),
])
def test_bad_demonstrations_give_one_line_errors(tiny_llama, tmp_path, capsys, content, expected):
    data = tmp_path / "bad.jsonl"
    data.write_text(content)
    with pytest.raises(SystemExit) as exc:
        run_sft(tiny_llama, data, tmp_path / "runs")
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {data}")
    assert expected in err[0]
    assert not (tmp_path / "runs" / "t" / "sft").exists()


def test_cli_missing_file_and_bad_config_are_one_line_errors(tmp_path, repo_root):
    missing = subprocess.run([sys.executable, "-m", "sft", "--config", "configs/sft.yaml", "--data",
                              str(tmp_path / "nope.jsonl"), "--runs_dir", str(tmp_path)],
                             cwd=repo_root, capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'nope.jsonl'}: file not found"

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("learning_rate: [1, 2\n")
    bad_yaml = subprocess.run([sys.executable, "-m", "sft", "--config", str(cfg)], cwd=repo_root,
                              capture_output=True, text=True)
    assert bad_yaml.returncode == 2
    assert len(bad_yaml.stderr.strip().splitlines()) == 1 and str(cfg) in bad_yaml.stderr

    cfg.write_text("learnin_rate: 0.1\n")
    unknown = subprocess.run([sys.executable, "-m", "sft", "--config", str(cfg)], cwd=repo_root,
                             capture_output=True, text=True)
    assert unknown.returncode == 2
    assert "learnin_rate" in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1


@pytest.mark.e2e
def test_a_few_sft_steps_on_the_bundled_smollm2(demos, tmp_path):
    final = sft_main(["--config", "configs/sft.yaml", "--data", str(demos), "--runs_dir", str(tmp_path),
                      "--run", "e2e", "--max_steps", "2", "--per_device_train_batch_size", "2",
                      "--max_length", "96", "--disable_tqdm", "true"])
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["base_model"] == "smollm2-135m"
    model = AutoModelForCausalLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    assert tok.pad_token == "<|endoftext|>" and model.config.model_type == "llama"
