"""ranktune/stats.py: the one mean and standard error every benchmark table and report uses."""

import math

import pytest

from ranktune.stats import mean_se


def test_mean_and_standard_error_leave_out_missing_values():
    m, se = mean_se([1.0, 2.0, None, 3.0, float("nan")])
    assert m == 2.0 and se == pytest.approx(1 / math.sqrt(3))
    m, se = mean_se([0.5])
    assert m == 0.5 and math.isnan(se)
    assert all(math.isnan(x) for x in mean_se([None]))
