"""Position bias of the simulated reviewers (issue #17): what it does to one ranking, and what the
store's per-claim answer order does to a biased panel's first places. No model."""

from collections import Counter

import pytest

from labeling_ui.db import sqlite_url
from labeling_ui.simulate import default_panel, simulate_reviews
from labeling_ui.store import LabelStore
from ranktune.gold import SimulatedReviewer, simulated_panel
from ranktune.ranks import dense_ranks

PROMPT = "Explain why the sky is blue."
ANSWERS = ["Sunlight scatters off air molecules, and blue light scatters the most, so the sky looks blue to us.",
           "Blue.",
           "Bananas are yellow and tasty fruit to eat daily.",
           "the sky is blue the sky is blue the sky is blue the sky is blue.",
           "Air scatters short wavelengths of light more than long ones, which is why the sky is blue."]
ENDED = [True, True, False, True, True]


def test_no_position_bias_reproduces_the_unbiased_ranks_and_noise_draws():
    """position_bias 0 (the default) ranks exactly as the reviewer always did: the utilities in the
    order shown, densely ranked, from the same noise draws."""
    for seed in range(5):
        biased0 = SimulatedReviewer("sim-1", noise=0.3, length_taste=0.2, seed=seed, position_bias=0.0)
        default = SimulatedReviewer("sim-1", noise=0.3, length_taste=0.2, seed=seed)
        old = SimulatedReviewer("sim-1", noise=0.3, length_taste=0.2, seed=seed)  # the pre-bias rank, by hand
        for n in (2, 3, 5):
            expected = dense_ranks([old.utility(PROMPT, a, e) for a, e in zip(ANSWERS[:n], ENDED[:n])], old.tie_margin)
            assert biased0.rank(PROMPT, ANSWERS[:n], ENDED[:n]) == expected
            assert default.rank(PROMPT, ANSWERS[:n], ENDED[:n]) == expected
        assert biased0._rng.random() == default._rng.random() == old._rng.random(), "the same draws, no more"
    panel = simulated_panel(3, seed=4)
    assert [r.position_bias for r in panel] == [0.0] * 3
    assert [r.rank(PROMPT, ANSWERS) for r in panel] == [r.rank(PROMPT, ANSWERS) for r in simulated_panel(3, seed=4)]


def test_position_bias_adds_bias_times_k_minus_1_minus_i_over_k_minus_1(monkeypatch):
    """The utility of the answer shown at index i of K gains bias * (K-1-i)/(K-1): the first the
    whole bias, the last none; the noise draws are the unbiased reviewer's."""
    import ranktune.gold as gold

    seen = []
    monkeypatch.setattr(gold, "dense_ranks", lambda utilities, margin: seen.append(list(utilities)) or [1])
    for n in (2, 3, 5):
        SimulatedReviewer("sim-1", noise=0.3, seed=2, position_bias=0.6).rank(PROMPT, ANSWERS[:n], ENDED[:n])
        SimulatedReviewer("sim-1", noise=0.3, seed=2).rank(PROMPT, ANSWERS[:n], ENDED[:n])
        biased, plain = seen[-2], seen[-1]
        assert [b - u for b, u in zip(biased, plain)] == pytest.approx([0.6 * (n - 1 - i) / (n - 1) for i in range(n)])
    SimulatedReviewer("x", position_bias=1.0).rank(PROMPT, ANSWERS[:1])  # one answer: no division by 0
    assert seen[-1] == [SimulatedReviewer("x").utility(PROMPT, ANSWERS[0])]


def test_a_position_bias_above_a_gold_gap_lifts_the_worse_answer_shown_first():
    from ranktune.gold import gold_score

    better, worse = ANSWERS[0], ANSWERS[2]
    gap = gold_score(PROMPT, better) - gold_score(PROMPT, worse)
    assert gap > 0.2
    below = SimulatedReviewer("x", noise=0.0, tie_margin=0.0, position_bias=gap - 0.1)
    above = SimulatedReviewer("x", noise=0.0, tie_margin=0.0, position_bias=gap + 0.1)
    assert below.rank(PROMPT, [worse, better]) == [2, 1] and above.rank(PROMPT, [worse, better]) == [1, 2]


# Answers of equal gold score: only the noise (and the position bias) tells them apart.
EVEN = [f"answer {c}" for c in "abcd"]


def test_with_a_bias_large_against_the_noise_the_first_shown_answer_wins_most_often():
    panel = default_panel(3, noise=0.3, seed=1, position_bias=1.0)
    assert [r.position_bias for r in panel] == [1.0] * 3
    unbiased = default_panel(3, noise=0.3, seed=1)

    def first_shown_wins(reviewers) -> float:
        wins = [r.rank(PROMPT, EVEN[s:] + EVEN[:s])[0] == 1 for s in range(len(EVEN)) for r in reviewers
                for _ in range(25)]
        return sum(wins) / len(wins)

    assert first_shown_wins(panel) > 0.8
    assert first_shown_wins(unbiased) < 0.45, "about 1 in K without the bias"


# ---------------------------------------------------------------------------------------------
# Through the store


K, N_ITEMS = 4, 12


def _store(tmp_path, **kw) -> LabelStore:
    store = LabelStore(sqlite_url(tmp_path / "labels.db"), overlap=3, **kw)
    for i in range(N_ITEMS):  # answers of equal gold score: only the noise and the position bias tell them apart
        store.add_item(f"prompt {i}", [f"answer {i} {chr(97 + j)}" for j in range(K)], [True] * K, "pol", 1)
    return store


def _first_places(store: LabelStore) -> Counter:
    """Which true candidate (the generated order) each ranking put first."""
    rankings = store.rankings()
    assert len(rankings) == 3 * N_ITEMS
    assert all(r["ranks"].count(1) == 1 for r in rankings), "the bias breaks the ties"
    return Counter(r["ranks"].index(1) for r in rankings)


def test_a_biased_panel_in_one_fixed_order_puts_candidate_0_first(tmp_path):
    store = _store(tmp_path, shuffle=False)
    try:
        simulate_reviews(store, default_panel(3, noise=0.3, seed=0, position_bias=3.0))
        assert _first_places(store) == Counter({0: 3 * N_ITEMS})
    finally:
        store.close()


class Recording(SimulatedReviewer):
    """A simulated reviewer that notes which true candidate it was shown first, per item (the answers'
    texts end in the candidate's letter)."""

    def rank(self, prompt, answers, ended=None):
        self.seen.setdefault(prompt, []).append("abcd".index(answers[0][-1]))
        return super().rank(prompt, answers, ended)


def test_a_shuffled_store_spreads_a_biased_panels_first_places_over_the_candidates(tmp_path):
    store = _store(tmp_path, shuffle=True)
    try:
        panel = [Recording(r.name, noise=r.noise, length_taste=r.length_taste, seed=r.seed, position_bias=3.0)
                 for r in default_panel(3, noise=0.3, seed=0)]
        for reviewer in panel:
            reviewer.seen = {}
        simulate_reviews(store, panel)
        first = _first_places(store)
        assert len(first) >= 3 and max(first.values()) <= 0.6 * 3 * N_ITEMS, first
        # the ranks were given by shown order and stored by true candidate: each reviewer's first place
        # is the candidate they were shown first
        by_reviewer = {(r["reviewer"], r["prompt"]): r["ranks"].index(1) for r in store.rankings()}
        assert by_reviewer == {(rev.name, p): seen[0] for rev in panel for p, seen in rev.seen.items()}
        orders = Counter(seen[0] for rev in panel for seen in rev.seen.values())
        assert len(orders) >= 3, "the reviewers were not all shown candidate 0 first"
    finally:
        store.close()


def test_simulate_command_line_takes_position_bias(tmp_path):
    from labeling_ui.cli import main

    path = tmp_path / "runs" / "r" / "labels.db"
    path.parent.mkdir(parents=True)
    _store(path.parent).close()
    common = ["--runs_dir", str(tmp_path / "runs"), "--run", "r"]
    stats = main(["simulate", "--simulated_reviewers", "3", "--overlap", "3", "--position_bias", "3.0",
                  "--shuffle_answers", "false", *common])
    assert stats["rankings"] == 3 * N_ITEMS
    store = LabelStore(sqlite_url(path))
    try:
        assert _first_places(store) == Counter({0: 3 * N_ITEMS})
    finally:
        store.close()


def test_the_benchmark_measures_the_labels_without_training(tmp_path, repo_root):
    """benchmarks/position_bias.py --labels_only on a pool of equal-quality answers: in one fixed order a
    strongly biased panel's first places all go to candidate 0 and its reviewers agree with each other;
    shuffled per reviewer, the first places spread and the agreement falls to what the noise leaves."""
    import json
    import subprocess
    import sys

    from ranktune.gold import gold_score

    with (tmp_path / "pool.jsonl").open("w") as f:
        for i in range(30):
            answers = [f"answer {i} {c}" for c in "abcd"]
            gold = [round(gold_score(f"prompt {i}", a), 4) for a in answers]
            f.write(json.dumps({"prompt": f"prompt {i}", "answers": answers, "ended": [True] * 4,
                                "ranks": [1, 2, 3, 4], "gold": gold}) + "\n")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(repo_root / "benchmarks" / "position_bias.py"), "--pool",
                           str(tmp_path / "pool.jsonl"), "--seeds", "0", "1", "--out", str(out), "--position_bias",
                           "3", "--labels_only"], capture_output=True, text=True, cwd=repo_root, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    labels = res["summary"]["labels"]
    assert labels["fixed"]["first_place"][0] == 1.0 and max(labels["shuffled"]["first_place"]) < 0.5
    assert labels["clean"]["first_place"][0] < 0.5
    assert labels["fixed"]["reviewer_agreement"][0] > 0.95 > 0.7 > labels["shuffled"]["reviewer_agreement"][0]
    assert res["summary"]["conditions"] == {} and all(s["labels"]["shuffled"]["orders_seeded"] for s in res["per_seed"])
    assert "| fixed |" in proc.stdout and "Reward model" not in proc.stdout
