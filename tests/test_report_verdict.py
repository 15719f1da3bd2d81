"""The report's first line: PPO's held-out gold gain over SFT, its interval, and whether it is established."""

import json

from report.build import build


def _run(tmp_path, gain: float, se: float):
    run = tmp_path / "demo"
    folder = run / "rounds" / "round-1" / "rlhf"
    folder.mkdir(parents=True)
    ev = {"prompts": 24, "samples_per_prompt": 2, "sft_score": -0.2, "ppo_score": 0.25, "score_gain_se": 0.1,
          "kl_to_sft": 0.1, "win_rate_vs_sft": 0.6, "sft_gold": 0.19, "ppo_gold": 0.19 + gain, "gold_gain_se": se,
          "sft_ended": 0.9, "ppo_ended": 0.9, "sft_words": 20.0, "ppo_words": 22.0}
    (folder / "metrics.json").write_text(json.dumps({"updates": 12, "episodes": 96, "train_seconds": 199.0,
                                                     "eval": ev}))
    return run


def test_the_page_opens_with_the_gold_gain_and_whether_it_is_beyond_noise(tmp_path):
    page = build(_run(tmp_path, 0.203, 0.18)).read_text()
    first = page[page.index("</h1>"):page.index("In short")]
    assert "data-status='not established'" in first and "gold score gain +0.203" in first
    assert "95% interval -0.169 to +0.575" in first and "could be noise" in first

    page = build(_run(tmp_path / "b", 0.40, 0.12)).read_text()
    first = page[page.index("</h1>"):page.index("In short")]
    assert "data-status='established'" in first and "class='good'" in first


def test_a_run_without_a_ppo_evaluation_says_so_first(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    page = build(run).read_text()
    assert "No held-out evaluation of a PPO policy" in page[page.index("</h1>"):page.index("In short")]
