"""The report's active-learning section, from a benchmark's results file (no models)."""

import json

import pytest

from report.active_learning import FILE, budget_to_reach, labels_saved
from report.build import build


def _results(active_by_seed: list[list[float]], random_by_seed: list[list[float]]) -> dict:
    budgets = [40, 80, 160, 320]
    points = []
    for seed, (act, rnd) in enumerate(zip(active_by_seed, random_by_seed)):
        for b, a, r in zip(budgets, act, rnd):
            points.append({"method": "uncertainty", "seed": seed, "budget": b, "test": a, "validation": a})
            points.append({"method": "random", "seed": seed, "budget": b, "test": r, "validation": r})
    return {"budgets": budgets, "methods": ["random", "uncertainty"], "seeds": len(active_by_seed),
            "report_split": "test", "points": points}


def test_budget_to_reach_interpolates_between_measured_budgets():
    assert budget_to_reach([(40, 0.5), (80, 0.6), (160, 0.7)], 0.65) == pytest.approx(120)
    assert budget_to_reach([(40, 0.8), (80, 0.6)], 0.7) == 40
    assert budget_to_reach([(40, 0.5), (80, 0.6)], 0.9) is None


def test_labels_saved_per_seed_counts_a_seed_that_never_gets_there_as_none_saved():
    random = [[0.55, 0.60, 0.65, 0.70]] * 3
    active = [[0.55, 0.65, 0.70, 0.72], [0.55, 0.62, 0.68, 0.70], [0.55, 0.60, 0.64, 0.66]]
    saved = labels_saved(_results(active, random), "test")
    # seed 0 reaches 0.70 at 160 (50% saved); seed 1 at 320 (0%); seed 2 never (0%)
    assert saved["per_seed"] == pytest.approx([0.5, 0.0, 0.0])
    assert saved["reached"] == [True, True, False]
    assert saved["mean"] == pytest.approx(1 / 6)


def test_the_report_shows_the_curve_only_when_the_run_has_one(tmp_path):
    run = tmp_path / "demo"
    run.mkdir()
    assert "Choosing what to label" not in build(run).read_text()
    (run / FILE).write_text(json.dumps(_results([[0.6, 0.7, 0.75, 0.78]] * 2, [[0.6, 0.65, 0.7, 0.75]] * 2)))
    page = build(run).read_text()
    section = page[page.index("Choosing what to label"):]
    assert "data:image/png;base64," in section and (run / "report" / "active_learning.png").stat().st_size > 1000
    # active reaches random's final 0.75 at 160 of 320: half the labels
    assert "Labels saved: 50%" in section


def test_nothing_is_saved_where_random_order_already_had_its_final_agreement_early():
    # the reward model stops improving after 40 rankings: both methods are there at the shared start
    flat = [[0.67, 0.665, 0.67, 0.67]] * 2
    saved = labels_saved(_results(flat, flat), "test")
    assert saved["per_seed"] == pytest.approx([0.0, 0.0]) and all(saved["reached"])
    # random first reaches its final 0.70 at 160 (of 320); active at 80: half of random's own need saved
    saved = labels_saved(_results([[0.6, 0.7, 0.7, 0.7]], [[0.6, 0.65, 0.7, 0.7]]), "test")
    assert saved["per_seed"] == pytest.approx([0.5])
