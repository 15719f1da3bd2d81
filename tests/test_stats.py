"""ranktune/stats.py: the one mean and standard error every benchmark table and report uses."""

import math

import pytest

from ranktune.stats import gold_gain_verdict, mean_se, t_interval


def test_mean_and_standard_error_leave_out_missing_values():
    m, se = mean_se([1.0, 2.0, None, 3.0, float("nan")])
    assert m == 2.0 and se == pytest.approx(1 / math.sqrt(3))
    m, se = mean_se([0.5])
    assert m == 0.5 and math.isnan(se)
    assert all(math.isnan(x) for x in mean_se([None]))


def test_a_t_interval_is_wider_than_two_standard_errors_for_few_units():
    lo, hi = t_interval(0.2, 0.1, 24)
    assert lo == pytest.approx(0.2 - 2.0687 * 0.1, abs=1e-4) and hi == pytest.approx(0.2 + 2.0687 * 0.1, abs=1e-4)
    assert all(math.isnan(x) for x in t_interval(0.2, 0.1, 1))
    assert all(math.isnan(x) for x in t_interval(0.2, float("nan"), 24))


def _eval(gain, se, prompts=24):
    return {"sft_gold": 0.2, "ppo_gold": 0.2 + gain, "gold_gain_se": se, "prompts": prompts, "samples_per_prompt": 2}


def test_the_gold_gain_verdict_says_established_only_when_the_interval_excludes_zero():
    # 0.203 at s.e. 0.18 (the 2026-12-03 demo): about one standard error, could be noise
    sentence, status = gold_gain_verdict(_eval(0.203, 0.18))
    assert status == "not established" and "+0.203" in sentence and "1.1 standard errors" in sentence
    # 2 s.e. on 24 prompts is just short of the t interval's 2.07
    assert gold_gain_verdict(_eval(0.2, 0.1))[1] == "not established"
    assert gold_gain_verdict(_eval(0.21, 0.1))[1] == "established"
    assert gold_gain_verdict(_eval(-0.3, 0.1))[1] == "worse"
    assert gold_gain_verdict(_eval(0.3, float("nan"), prompts=1))[1] == "unknown"
