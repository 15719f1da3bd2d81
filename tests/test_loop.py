"""The closed loop end to end on a tiny model: two rounds of generate -> simulated reviewers ->
reward model -> PPO, each stage as its own process, then the report."""

import json

from labeling_ui.db import sqlite_url
from labeling_ui.store import LabelStore
from report.build import main as report_main
from rlhf.loop import main as loop_main


def test_two_round_loop_and_report(tmp_path, tiny_llama, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)  # the stages' configs and shipped data are found from the repo root
    runs = tmp_path / "runs"
    args = ["--config", "configs/demo.yaml", "--run", "tiny", "--runs_dir", str(runs), "--rounds", "2",
            "--prompts_per_round", "10", "--max_eval_prompts", "4",
            "--sft_args", f"--model_name_or_path {tiny_llama} --max_train_samples 16 --max_length 128 "
                          "--num_train_epochs 1 --per_device_train_batch_size 4 --save_steps 100",
            "--generate_args", "--k 3 --max_new_tokens 12 --batch_size 10",
            "--reward_args", "--max_length 128 --normalization_samples 24 --per_device_train_batch_size 4 "
                             "--eval_fraction 0.2",
            "--rlhf_args", "--total_episodes 8 --per_device_train_batch_size 4 --response_length 8 "
                           "--per_device_eval_batch_size 4 --lora_r 4 --save_steps 100"]
    run = loop_main(args)
    assert run == runs / "tiny"
    for r in (1, 2):
        here = run / "rounds" / f"round-{r}"
        assert (here / "reward" / "config.json").is_file() and (here / "rlhf" / "config.json").is_file()
        assert json.loads((here / "round.json").read_text())["round"] == r

    # Round 2's answers came from round 1's PPO policy, and its reward model saw both rounds' labels.
    store = LabelStore(sqlite_url(run / "labels.db"))
    try:
        rounds = {r: p for r, p, _ in store.rounds()}
        rankings = store.rankings()
    finally:
        store.close()
    assert rounds[1].endswith("sft") and rounds[2].endswith("round-1/rlhf")
    assert {r["round"] for r in rankings} == {1, 2}
    assert {r["reviewer"] for r in rankings} == {"sim-1", "sim-2", "sim-3"}  # the work is shared
    assert len(rankings) == 2 * 10 * 2  # 10 items a round, each ranked by `overlap` = 2 reviewers
    first = json.loads((run / "rounds/round-1/reward/metrics.json").read_text())
    second = json.loads((run / "rounds/round-2/reward/metrics.json").read_text())
    assert second["train_rankings"] > first["train_rankings"]
    # labeled prompts never include PPO's held-out prompts
    held_out = {r["prompt"] for r in map(json.loads, (run / "rounds/round-2/rlhf/eval_samples.jsonl").open())}
    labeled = {json.loads(x)["prompt"] for r in (1, 2) for x in (run / f"rounds/round-{r}/prompts.jsonl").open()}
    assert held_out and not held_out & labeled

    # A second call finds every round done and trains nothing again.
    stamp = (run / "rounds/round-2/rlhf/metrics.json").stat().st_mtime_ns
    loop_main(args)
    assert (run / "rounds/round-2/rlhf/metrics.json").stat().st_mtime_ns == stamp

    page = report_main(["--run", "tiny", "--runs_dir", str(runs)])
    text = page.read_text()
    assert page == run / "report.html"
    for heading in ("Supervised fine-tuning", "Labels", "Reward model", "PPO", "Before and after", "round 2"):
        assert heading in text
    assert text.count("data:image/png;base64,") >= 5  # self-contained: figures inlined
    assert (run / "report" / "proxy_vs_gold.png").stat().st_size > 1000
    assert "Krippendorff" in text and "(simulated)" in text
    assert "Reviewer reliability" in text and text.count("<td>sim-") >= 3  # the export's reliability table


def test_report_escapes_model_text(tmp_path):
    run = tmp_path / "runs" / "x"
    (run / "rlhf").mkdir(parents=True)
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    row = {"prompt": evil, "sft_answer": evil, "sft_score": 0.0, "sft_gold": 0.0, "sft_ended": True,
           "ppo_answer": evil, "ppo_score": 1.0, "ppo_gold": 1.0, "ppo_ended": False, "ppo_kl": 0.1}
    (run / "rlhf" / "eval_samples.jsonl").write_text(json.dumps(row) + "\n")
    page = report_main(["--run", "x", "--runs_dir", str(tmp_path / "runs")]).read_text()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_loop_bad_input_is_one_line(tmp_path, repo_root, capsys, monkeypatch):
    import pytest

    monkeypatch.chdir(repo_root)
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"prompt": "ok"}\nnot json\n')
    with pytest.raises(SystemExit) as exit_info:
        loop_main(["--run", "x", "--runs_dir", str(tmp_path / "runs"), "--prompts", str(bad)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}:2: not valid JSON (Expecting value at column 1)"
    assert not (tmp_path / "runs" / "x" / "sft").exists()
    assert not (tmp_path / "runs" / "x" / "labels.db").exists()


def test_human_mode_waits_for_the_rounds_rankings(tmp_path):
    import pytest

    from ranktune.errors import InputError
    from rlhf.loop import LoopArguments, wait_for_people

    runs = tmp_path / "runs"
    (runs / "h").mkdir(parents=True)
    store = LabelStore(sqlite_url(runs / "h" / "labels.db"))
    store.add_item("Name a color.", ["Red.", "Blue."], [True, True], "pol", 1)
    store.accounts.add("ann", "a long enough password 123")
    a = LoopArguments(run="h", runs_dir=str(runs), reviewers="human", min_rankings=1, poll_seconds=0.01,
                      max_wait_minutes=0.002)
    with pytest.raises(InputError, match="no rankings after"):
        wait_for_people(a, runs / "h", 1)
    task = store.next_task("ann")
    store.submit("ann", task.assignment_id, [2, 1], token="tok-000001")
    store.close()
    wait_for_people(a, runs / "h", 1)  # returns at once: the round has its ranking
