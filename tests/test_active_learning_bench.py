"""benchmarks/active_learning.py's bookkeeping (no models): a rerun reuses the reward models already
trained for the same rankings, and runs of other seeds on the same pool combine into one table."""

import json
from argparse import Namespace

import pytest

import benchmarks.active_learning as al


def _items(n: int) -> list[dict]:
    return [{"item": i, "prompt": f"prompt {i}", "answers": [f"a{i}", f"b{i}"], "ended": [True, True]}
            for i in range(n)]


def test_a_rerun_reuses_the_scores_of_rankings_it_already_trained_on(tmp_path, monkeypatch):
    candidates, held_out = _items(12), {"test": _items(3)}
    trained = []

    def fake_child(ctx, target, args):
        train_args, score_sets, _ = args
        trained.append(train_args[train_args.index("--data") + 1])
        out = {name: [[[0.1 * a] for a in range(2)] for _ in items] for name, items in score_sets.items()}
        return {"train_seconds": 1.0, **out}, 0

    monkeypatch.setattr(al, "run_in_child", fake_child)
    opts = Namespace(method_list=["random"], panel_seed=0, threads=1, pairs={"test": [(0, 1, 0, 0)]})
    first = al.run_curve(None, "random", 0, candidates, held_out, [4, 8], opts, [], tmp_path, {})
    assert len(trained) == 2
    again = al.run_curve(None, "random", 0, candidates, held_out, [4, 8], opts, [], tmp_path, {})
    assert len(trained) == 2 and again == first, "nothing retrained: the same rankings, the same scores"
    other = al.run_curve(None, "random", 1, candidates, held_out, [4, 8], opts, [], tmp_path, {})
    assert len(trained) == 4, "another seed's rankings are trained on"
    assert other[0]["seed"] == 1


def _run_file(path, seeds: list[int], pool="abc") -> str:
    points = [{"method": m, "seed": s, "budget": b, "test": 0.6 + 0.01 * b / 40 + (0.02 if m == "uncertainty" else 0)}
              for s in seeds for m in ("random", "uncertainty") for b in (40, 80)]
    path.write_text(json.dumps({"budgets": [40, 80], "methods": ["random", "uncertainty"], "seeds": len(seeds),
                                "report_split": "test", "points": points, "reward_args": ["--x", "1"],
                                "pool_sha256": pool, "gold_pairs": {"test": 10}, "complete": True}))
    return str(path)


def test_runs_of_other_seeds_on_the_same_pool_combine_and_others_are_refused(tmp_path):
    a, b = _run_file(tmp_path / "a.json", [0, 1]), _run_file(tmp_path / "b.json", [2])
    opts = Namespace(run=None, runs_dir=str(tmp_path / "runs"))
    (tmp_path / "out").mkdir()
    results = al.combine([a, b], tmp_path / "out", opts)
    assert results["seeds"] == 3 and len(results["points"]) == 12
    assert len(results["labels_saved"]["per_seed"]) == 3
    assert json.loads((tmp_path / "out" / "results.json").read_text())["combined_from"] == [a, b]
    c = _run_file(tmp_path / "c.json", [2], pool="another pool")
    with pytest.raises(SystemExit, match="pool_sha256"):
        al.combine([a, c], tmp_path / "out", opts)
