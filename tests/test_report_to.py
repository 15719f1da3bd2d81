"""`--report_to` reaches the trackers in every training stage (HF's semantics), and the default stays offline.

SFT, the reward model and our PPO each run once on tiny random models: with `--report_to tensorboard`
they write event files under runs/<run>/logs/<stage>/ (PPO's with its own scalars); with the configs'
default no tracker is set up and nothing is written anywhere.
"""

import json

import pytest
import transformers.trainer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from reward.train import main as reward_main
from rlhf.train import main as rlhf_main
from sft.train import main as sft_main
from tiny_models import make_tiny_reward_dir

EVENTS = "events.out.tfevents.*"


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory, tiny_llama):
    return make_tiny_reward_dir(tmp_path_factory.mktemp("tiny-rm"), tiny_llama, {"gain": 1.0, "bias": 0.0})


def run_stage(stage, tmp_path, repo_root, model, reward_folder, *extra):
    common = ["--runs_dir", str(tmp_path / "runs"), "--run", "t", "--disable_tqdm", "true", *extra]
    if stage == "sft":
        data = write_jsonl(tmp_path / "demos.jsonl",
                           [{"prompt": f"Say word {i}", "completion": f"Word {i}."} for i in range(8)])
        return sft_main(["--config", str(repo_root / "configs/sft.yaml"), "--model_name_or_path", str(model),
                         "--data", str(data), "--num_train_epochs", "1", "--per_device_train_batch_size", "4",
                         "--eval_fraction", "0.25", "--logging_steps", "1", "--save_strategy", "no", *common])
    if stage == "reward":
        data = write_jsonl(tmp_path / "pairs.jsonl",
                           [{"prompt": f"Question {i}?", "chosen": "thank you, here it is", "rejected": "terrible"}
                            for i in range(12)])
        return reward_main(["--config", str(repo_root / "configs/reward.yaml"), "--model_name_or_path", str(model),
                            "--data", str(data), "--num_train_epochs", "1", "--per_device_train_batch_size", "4",
                            "--eval_fraction", "0.25", "--max_length", "32", "--logging_steps", "1",
                            "--normalization_samples", "8", "--save_strategy", "no", *common])
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Write about {t}."} for t in range(8)])
    return rlhf_main(["--config", str(repo_root / "configs/rlhf.yaml"), "--model_name_or_path", str(model),
                      "--reward_model", str(reward_folder), "--prompts", str(prompts), "--total_episodes", "8",
                      "--per_device_train_batch_size", "4", "--num_ppo_epochs", "1", "--response_length", "4",
                      "--lora_r", "4", "--lora_top_layers", "1", "--eval_fraction", "0", "--save_steps", "0",
                      "--logging_steps", "1", *common])


@pytest.fixture
def trackers_set_up(monkeypatch):
    """The report_to of every Trainer built: the integrations transformers turns into callbacks."""
    seen = []
    original = transformers.trainer.get_reporting_integration_callbacks

    def spy(report_to):
        seen.append(list(report_to or []))
        return original(report_to)

    monkeypatch.setattr(transformers.trainer, "get_reporting_integration_callbacks", spy)
    return seen


@pytest.mark.parametrize("stage", ["sft", "reward", "rlhf"])
def test_report_to_tensorboard_writes_event_files_under_the_run(stage, tmp_path, repo_root, tiny_llama,
                                                                 reward_folder, trackers_set_up, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a stray default folder (./runs/<time>_<host>) would show up here
    final = run_stage(stage, tmp_path, repo_root, tiny_llama, reward_folder, "--report_to", "tensorboard")
    assert (final / "config.json").is_file()
    assert trackers_set_up == [["tensorboard"]]
    logs = tmp_path / "runs" / "t" / "logs" / stage
    files = sorted(tmp_path.rglob(EVENTS))
    assert files and all(logs in f.parents for f in files), files
    events = EventAccumulator(str(files[0].parent))
    events.Reload()
    tags = events.Tags()["scalars"]
    own = {"sft": "train/loss", "reward": "train/loss", "rlhf": "train/objective/scores"}[stage]
    assert own in tags, tags
    if stage == "rlhf":  # PPO's own metrics, one point per update
        assert {"train/objective/kl", "train/policy/entropy", "train/loss/value"} <= set(tags)
        assert [e.step for e in events.Scalars("train/objective/scores")] == [1, 2]


@pytest.mark.parametrize("stage", ["sft", "rlhf"])
def test_by_default_no_tracker_and_no_event_files(stage, tmp_path, repo_root, tiny_llama, reward_folder,
                                                   trackers_set_up, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_stage(stage, tmp_path, repo_root, tiny_llama, reward_folder)
    assert trackers_set_up == [[]], "report_to defaults to none: no tracker callback at all"
    assert not list(tmp_path.rglob(EVENTS))
    assert not (tmp_path / "runs" / "t" / "logs").exists()


def test_an_unknown_tracker_is_one_line_before_any_model_loads(tmp_path, repo_root, capsys):
    with pytest.raises(SystemExit) as err:
        sft_main(["--config", str(repo_root / "configs/sft.yaml"), "--runs_dir", str(tmp_path), "--run", "t",
                  "--model_name_or_path", "no-such-model", "--report_to", "tensorbored"])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "report_to" in lines[0] and "tensorbored" in lines[0], lines
