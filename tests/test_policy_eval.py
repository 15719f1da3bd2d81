"""The summary every tuned policy is judged by: means over answers, standard errors over prompts."""

import math

import pytest

from ranktune.policy_eval import summarize


def row(prompt, sft_score, ppo_score, sft_gold, ppo_gold, kl=0.5):
    return {"prompt": prompt, "sft_answer": "a b", "ppo_answer": "a b c", "sft_ended": True, "ppo_ended": False,
            "sft_score": sft_score, "ppo_score": ppo_score, "sft_gold": sft_gold, "ppo_gold": ppo_gold, "ppo_kl": kl}


def test_summary_means_win_rate_and_prompt_level_standard_error():
    rows = [row("p1", 0.0, 1.0, 0.0, 2.0), row("p1", 1.0, 1.0, 0.0, 0.0),   # p1: gold gain 1.0
            row("p2", 0.0, -1.0, 1.0, 0.0), row("p2", 0.0, 2.0, 1.0, 1.0)]  # p2: gold gain -0.5
    m = summarize(rows, samples_per_prompt=2)
    assert m["prompts"] == 2 and m["samples_per_prompt"] == 2
    assert m["ppo_score"] == pytest.approx(0.75) and m["sft_score"] == pytest.approx(0.25)
    assert m["win_rate_vs_sft"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert m["ppo_gold"] - m["sft_gold"] == pytest.approx(0.25)
    # two prompt-level gains, 1.0 and -0.5: sample sd 1.0607, s.e. = sd / sqrt(2) = 0.75
    assert m["gold_gain_se"] == pytest.approx(0.75)
    assert m["ppo_ended"] == 0.0 and m["sft_ended"] == 1.0
    assert (m["sft_words"], m["ppo_words"]) == (2, 3)


def test_one_prompt_has_no_standard_error():
    assert math.isnan(summarize([row("p", 0, 1, 0, 1)])["gold_gain_se"])
