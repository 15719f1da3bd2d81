"""The report's over-optimisation section, from a benchmark's results file (no models): updates binned
by KL with seeds weighed equally, the single model's gold peak, and the conservative run's verdict."""

import json
import math

import pytest

from report.build import build
from report.overoptimisation import FILE, binned, kl_edges, verdict


def _run(method: str, seed: int, kls: list[float], gold, proxy=lambda kl: kl) -> dict:
    return {"method": method, "seed": seed,
            "updates": [{"update": n + 1, "kl": kl, "gold": gold(kl) + 0.01 * seed, "proxy": proxy(kl)}
                        for n, kl in enumerate(kls)]}


def _results(conservative_gold) -> dict:
    kls = [0.5 * i for i in range(13)]  # 0 .. 6 nats
    single = lambda kl: kl - 0.25 * kl ** 2  # noqa: E731  (peaks at 2 nats, then falls)
    runs = [_run("single", s, kls, single) for s in range(3)] + \
           [_run("mean_minus_std@1", s, kls, conservative_gold) for s in range(3)]
    return {"methods": ["single", "mean_minus_std@1"], "reference": "single", "conservative": "mean_minus_std@1",
            "seeds": 3, "runs": runs}


def test_a_seed_with_many_updates_in_a_bin_weighs_as_much_as_one_with_few():
    results = {"methods": ["single"], "runs": [
        {"method": "single", "seed": 0, "updates": [{"kl": 0.1, "gold": 1.0, "proxy": 0}] * 9},
        {"method": "single", "seed": 1, "updates": [{"kl": 0.2, "gold": 0.0, "proxy": 0},
                                                    {"kl": 1.0, "gold": 5.0, "proxy": 0}]}]}
    edges = kl_edges(results, bins=2)
    assert edges == pytest.approx([0.0, 0.5, 1.0])
    first, last = binned(results, "single", "gold", edges)
    assert first[1] == pytest.approx(0.5) and first[3] == 2  # (1.0 + 0.0) / 2, not (9 + 0) / 10
    assert first[2] == pytest.approx(0.5)  # s.e. of {1, 0}
    assert last[1] == 5.0 and last[3] == 1 and math.isnan(last[2])  # the KL at the last edge is in the last bin


def test_the_verdict_finds_the_single_models_peak_and_compares_from_there():
    keeps_rising = verdict(_results(lambda kl: 0.8 * kl))
    # single gold kl - kl^2/4 peaks at 2 nats: the bin 2.0-3.0 of six bins up to 6
    assert keeps_rising["peak_kl"] == pytest.approx((2.0, 3.0)) and keeps_rising["higher"]
    assert all(d > 0 for _, d, _ in keeps_rising["rows"]) and len(keeps_rising["rows"]) == 4
    same = verdict(_results(lambda kl: kl - 0.25 * kl ** 2))
    assert not same["higher"] and all(abs(d) < 1e-9 for _, d, _ in same["rows"])


def test_the_report_shows_the_figure_only_when_the_run_has_one(tmp_path):
    run = tmp_path / "demo"
    run.mkdir()
    assert "Over-optimisation" not in build(run).read_text()
    (run / FILE).write_text(json.dumps(_results(lambda kl: 0.8 * kl)))
    page = build(run).read_text()
    section = page[page.index("Over-optimisation"):]
    assert "data:image/png;base64," in section and (run / "report" / "overoptimisation.png").stat().st_size > 1000
    assert "The conservative run keeps more gold" in section and "mean_minus_std@1" in section
