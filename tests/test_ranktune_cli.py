"""The `ranktune` console script: every stage by name, its flags passed through untouched to the stage's
own `main`, the stage's help and errors; and one real SFT run through the installed executable."""

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ranktune import cli

EXPECTED = ["sft", "generate", "label", "arena", "simulate", "export", "import", "gold", "add-reviewer", "disable-reviewer",
            "enable-reviewer", "labels", "reward", "reward-serve", "rlhf", "dpo", "rloo", "grpo", "loop", "demo", "report"]

# command -> (module whose main runs, the leading positional arguments, what goes before the user's argv)
DISPATCH = {
    "sft": ("sft.train", (), []), "reward": ("reward.train", (), []), "reward-serve": ("reward.serve", (), []),
    "rlhf": ("rlhf.train", (), []),
    "dpo": ("alternatives.dpo", (), []), "rloo": ("alternatives.online", ("rloo",), []),
    "grpo": ("alternatives.online", ("grpo",), []), "loop": ("rlhf.loop", (), []), "report": ("report.build", (), []),
    "generate": ("labeling_ui.cli", (), ["generate"]), "label": ("labeling_ui.cli", (), ["serve"]),
    "export": ("labeling_ui.cli", (), ["export"]), "simulate": ("labeling_ui.cli", (), ["simulate"]),
    "import": ("labeling_ui.cli", (), ["import"]),
    "gold": ("labeling_ui.cli", (), ["gold"]), "add-reviewer": ("labeling_ui.cli", (), ["add-reviewer"]),
    "disable-reviewer": ("labeling_ui.cli", (), ["disable-reviewer"]),
    "enable-reviewer": ("labeling_ui.cli", (), ["enable-reviewer"]), "labels": ("labeling_ui.cli", (), []),
}


def executable() -> str:
    exe = Path(sys.executable).parent / "ranktune"
    found = str(exe) if exe.is_file() else shutil.which("ranktune")
    assert found, "the ranktune console script is not installed (pip install -e .)"
    return found


def test_help_lists_every_command_with_a_line_each(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert list(cli.COMMANDS) == EXPECTED and set(DISPATCH) == set(EXPECTED) - {"demo", "arena"}
    for name in EXPECTED:
        line = next((x for x in out.splitlines() if x.split()[:1] == [name]), None)
        assert line and len(line.split()) > 2, f"{name} has no one-line description"


def test_an_unknown_command_is_one_line_and_exit_2():
    result = subprocess.run([executable(), "sfft", "--config", "configs/sft.yaml"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == ["error: unknown command 'sfft' (`ranktune --help` lists them)"]


def test_no_command_prints_the_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "commands:" in capsys.readouterr().err


@pytest.mark.parametrize("command", list(DISPATCH))
def test_each_command_calls_its_stage_with_the_argv_untouched(command, monkeypatch):
    module, lead, prefix = DISPATCH[command]
    calls = []
    monkeypatch.setattr(importlib.import_module(module), "main", lambda *a: calls.append(a))
    argv = ["--config", "configs/x.yaml", "--run", "r", "--learning_rate", "1e-4", "NAME"]
    assert cli.main([command, *argv]) == 0
    assert calls == [(*lead, [*prefix, *argv])]


def test_demo_is_the_loop_on_the_demo_config_then_the_report(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(importlib.import_module("rlhf.loop"), "main",
                        lambda argv: calls.append(("loop", argv)) or tmp_path / "runs" / "demo")
    monkeypatch.setattr(importlib.import_module("report.build"), "main", lambda argv: calls.append(("report", argv)))
    assert cli.main(["demo", "--rounds", "2"]) == 0
    assert calls == [("loop", ["--config", "configs/demo.yaml", "--rounds", "2"]),
                     ("report", ["--run", "demo", "--runs_dir", str(tmp_path / "runs")])]
    calls.clear()
    cli.main(["demo", "--config", "my.yaml"])
    assert calls[0] == ("loop", ["--config", "my.yaml"]), "the user's config replaces the demo's"


def test_arena_serves_the_labeling_app_with_the_bundled_model_when_the_run_has_fewer_than_two(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(importlib.import_module("labeling_ui.cli"), "main", lambda argv: calls.append(argv))
    run = tmp_path / "runs" / "r"
    argv = ["--run", "r", "--runs_dir", str(tmp_path / "runs")]
    assert cli.main(["arena", *argv]) == 0  # no checkpoints
    assert calls.pop() == ["serve", *argv, "--arena_models", "base=smollm2-135m"]
    cli.main(["arena", *argv, "--arena_models", "mine=smollm2-135m"])  # one of the user's: theirs kept, base added
    assert calls.pop() == ["serve", *argv, "--arena_models", "mine=smollm2-135m", "--arena_models", "mine=smollm2-135m",
                           "base=smollm2-135m"]
    for stage in ("sft", "rlhf"):
        (run / stage).mkdir(parents=True)
        (run / stage / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    cli.main(["arena", *argv])
    assert calls.pop() == ["serve", *argv], "two checkpoints: the run's models only"


def test_a_stage_help_is_the_stage_own(capsys, repo_root):
    with pytest.raises(SystemExit) as err:
        cli.main(["sft", "--config", str(repo_root / "configs/sft.yaml"), "--help"])
    assert err.value.code == 0
    out = capsys.readouterr().out
    for setting in ("--learning_rate", "--eval_fraction", "--report_to", "--use_peft"):
        assert setting in out


def test_a_stage_error_is_the_stage_own_one_line_and_exit_code(capsys, repo_root, tmp_path):
    with pytest.raises(SystemExit) as err:
        cli.main(["sft", "--config", str(repo_root / "configs/sft.yaml"), "--runs_dir", str(tmp_path),
                  "--data", str(tmp_path / "missing.jsonl")])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.jsonl" in lines[0], lines


def test_sft_end_to_end_through_the_installed_script(tiny_llama, tmp_path, repo_root):
    data = tmp_path / "demos.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Say word {i}", "completion": f"Word {i}."}) + "\n"
                            for i in range(8)))
    result = subprocess.run(
        [executable(), "sft", "--config", "configs/sft.yaml", "--model_name_or_path", str(tiny_llama),
         "--data", str(data), "--runs_dir", str(tmp_path / "runs"), "--run", "t", "--num_train_epochs", "1",
         "--per_device_train_batch_size", "4", "--eval_fraction", "0.25", "--save_strategy", "no",
         "--disable_tqdm", "true"],
        cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    final = tmp_path / "runs" / "t" / "sft"
    assert f"SFT model written to {final}" in result.stdout
    assert (final / "config.json").is_file()
    assert json.loads((final / "metrics.json").read_text())["train_examples"] == 6
