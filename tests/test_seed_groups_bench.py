"""benchmarks/seed_groups.py (no models): runs of one setting over seeds summarised together, and the
gain-per-KL comparison against TRL's runs."""

import math

import pytest

from benchmarks.seed_groups import by_setting, setting_of, versus


def test_the_seed_is_the_only_override_a_setting_drops():
    assert setting_of("ours+seed=1@3.5e-4") == "ours@3.5e-4" == setting_of("ours@3.5e-4")
    assert setting_of("ours-shared+seed=2+lora_r=8@2e-4") == "ours-shared+lora_r=8@2e-4"
    assert setting_of("trl112-ppo+seed=1") == "trl112-ppo"
    assert setting_of("ours+lora_r=8") != setting_of("ours")


def _run(eps, rss, gain, kl):
    return {"episodes_per_second": eps, "peak_rss_mib": rss, "gain": gain, "kl": kl}


def test_gain_per_kl_is_taken_per_run_then_averaged_over_seeds():
    groups = by_setting({"trl112-ppo": _run(0.2, 8000, 0.25, 0.5), "trl112-ppo+seed=1": _run(0.2, 8000, 0.24, 0.25),
                         "ours@3e-4": _run(0.8, 2400, 0.30, 0.3), "ours+seed=1@3e-4": _run(0.8, 2400, 0.4, 0.4)})
    trl, ours = groups["trl112-ppo"], groups["ours@3e-4"]
    assert trl["runs"] == 2 and trl["gain_per_kl"][0] == pytest.approx((0.5 + 0.96) / 2)
    assert ours["gain_per_kl"] == (pytest.approx(1.0), 0.0)  # both runs 1.0 per nat: no spread
    cmp = versus(groups, "trl112-ppo")["ours@3e-4"]
    assert cmp["speed"] == pytest.approx(4.0) and cmp["memory"] == pytest.approx(0.3)
    assert cmp["gain_per_kl_difference"][0] == pytest.approx(1.0 - 0.73)
    assert cmp["above_by_one_se"] is True  # 0.27 against an s.e. of 0.23


def test_a_difference_within_one_standard_error_is_not_called_above():
    groups = by_setting({"trl112-ppo": _run(0.2, 8000, 0.2, 0.4), "trl112-ppo+seed=1": _run(0.2, 8000, 0.6, 0.4),
                         "ours": _run(0.8, 2400, 0.4, 0.4), "ours+seed=1": _run(0.8, 2400, 0.44, 0.4)})
    cmp = versus(groups, "trl112-ppo")["ours"]
    difference, se = cmp["gain_per_kl_difference"]
    assert difference == pytest.approx(0.05) and se == pytest.approx(0.502, abs=1e-3)
    assert cmp["above_by_one_se"] is False


def test_a_run_that_did_not_move_has_no_gain_per_kl():
    groups = by_setting({"ours": _run(0.8, 2400, 0.0, 0.0), "ours+seed=1": _run(0.8, 2400, 0.2, 0.4)})
    m, se = groups["ours"]["gain_per_kl"]
    assert m == pytest.approx(0.5) and math.isnan(se)
