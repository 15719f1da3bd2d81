"""Reviewer reliability (labeling_ui/reliability.py): Crowd-BT tells bad reviewers from good ones.

Synthetic throughout: every item has K answers with known latent utilities, good reviewers rank
them by utility plus noise, bad ones as their kind says; no database, no models.
"""

import itertools

import numpy as np
import pytest

from labeling_ui import reliability as rel
from labeling_ui.crowd_bt import neg_log_posterior
from labeling_ui.reliability import assess
from ranktune.ranks import dense_ranks
from labeling_ui.stats import agreement as raw_agreement
from ranktune.gold import BAD_KINDS, SimulatedReviewer, bad_reviewer, gold_score


def _dense(values, margin=0.05) -> list[int]:
    """Dense ranks by descending value, values within `margin` of the one above sharing a rank."""
    return dense_ranks(list(values), margin)


def simulate(kinds, n_items=60, k=4, overlap=3, seed=0, noise=0.5, utilities=None, shuffle_shown=False,
             seconds=None, item_base=0):
    """Rankings of `n_items` items, item n ranked by reviewers n, n+1, ..., n+overlap-1 (mod count).

    Returns (rankings, utilities); reviewer i is named f"{kinds[i]}-{i}"."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_items, k)) if utilities is None else np.asarray(utilities, dtype=float)
    out = []
    for n in range(n_items):
        for o in range(overlap):
            i = (n + o) % len(kinds)
            kind = kinds[i]
            shown = list(rng.permutation(k)) if shuffle_shown else list(range(k))
            if kind == "good":
                ranks = _dense(u[n] + rng.normal(0, noise, k))
            elif kind == "adversarial":
                ranks = _dense(-(u[n] + rng.normal(0, noise, k)))
            elif kind == "random":
                ranks = [int(v) + 1 for v in rng.permutation(k)]
            elif kind == "lazy":
                ranks = [0] * k
                for place, pos in enumerate(shown):
                    ranks[pos] = place + 1
            elif kind == "ties":
                ranks = [1] * k
            else:
                raise ValueError(kind)
            secs = 30.0 + rng.uniform(-10, 10) if seconds is None else seconds.get(kind, 30.0)
            r = {"item_id": item_base + n, "reviewer": f"{kind}-{i}", "ranks": ranks, "seconds": secs}
            if shuffle_shown:
                r["shown"] = [int(p) for p in shown]
            out.append(r)
    return out, u


def by_name(assessment):
    return {r.reviewer: r for r in assessment.reviewers}


def assert_bad_below_good(assessment):
    good = [r.reliability for r in assessment.reviewers if r.reviewer.startswith("good")]
    bad = {r.reviewer: r.reliability for r in assessment.reviewers if not r.reviewer.startswith("good")}
    assert good and bad and None not in good and None not in bad.values()
    assert max(bad.values()) < min(good), f"bad {bad} not below good {good}"
    names = [r.reviewer for r in assessment.reviewers]
    assert all(n.startswith("good") for n in names[:len(good)]), f"most reliable first: {names}"


# ---------------------------------------------------------------------------------------------
# The objective


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(7)
    n_scores, n_free = 12, 3
    n_obs = 80
    a = rng.integers(0, n_scores, n_obs)
    b = (a + rng.integers(1, n_scores, n_obs)) % n_scores
    y = rng.choice([0.0, 0.5, 1.0], n_obs)                      # ties included
    r = rng.integers(0, n_free + 1, n_obs)                       # the last one: the fixed gold pseudo-reviewer
    w = rng.choice([1.0, rel.ANCHOR_WEIGHT], n_obs)
    fixed = np.array([0.97])
    x = np.concatenate([rng.normal(0, 2, n_scores), rng.uniform(0.05, 0.95, n_free)])
    f, grad = neg_log_posterior(x, a, b, y, r, w, n_scores, fixed)
    eps = 1e-6
    numeric = np.empty_like(x)
    for i in range(len(x)):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (neg_log_posterior(up, a, b, y, r, w, n_scores, fixed)[0]
                      - neg_log_posterior(down, a, b, y, r, w, n_scores, fixed)[0]) / (2 * eps)
    assert np.isfinite(f)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)
    assert np.abs(grad[n_scores:]).min() > 1e-3, "the eta part of the gradient is exercised"


# ---------------------------------------------------------------------------------------------
# Good and bad reviewers


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_bad_kind_alone_is_less_reliable_than_every_good_reviewer(kind, seed):
    rankings, _ = simulate(("good",) * 4 + (kind,), seed=seed)
    assert_bad_below_good(assess(rankings))


TWO_AT_ONCE = list(itertools.combinations(BAD_KINDS, 2)) + [("random", "random"), ("adversarial", "adversarial"),
                                                           ("ties", "ties")]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("pair", TWO_AT_ONCE, ids="+".join)
def test_two_bad_reviewers_at_once_are_less_reliable_than_every_good_reviewer(pair, seed):
    # 3 good and 2 bad of 5 with overlap 3: on some items the bad ones are the majority.
    rankings, _ = simulate(("good",) * 3 + pair, seed=seed)
    assert_bad_below_good(assess(rankings))


def test_two_lazy_reviewers_are_caught_by_the_shown_order_warning():
    """The documented limit: two reviewers who always submit the shown order agree perfectly with
    each other, and with only 3 good reviewers in 5 they can out-vote them on reliability - but
    not escape the behaviour warning."""
    a = assess(simulate(("good",) * 3 + ("lazy", "lazy"))[0])
    for name, r in by_name(a).items():
        assert (rel.W_SHOWN_ORDER in r.warnings) == name.startswith("lazy"), (name, r.warnings)


def test_bad_reviewers_in_a_team_of_twenty():
    """Twenty reviewers, random assignment, seven of them bad: two of each kind but one lazy (two
    lazy ones agree perfectly whenever they meet, which Crowd-BT reads as reliability; see the
    test above)."""
    rng = np.random.default_rng(3)
    kinds = ["good"] * 13 + ["random", "random", "adversarial", "adversarial", "ties", "ties", "lazy"]
    u = rng.normal(size=(600, 4))
    rankings = []
    for n in range(600):
        for i in rng.choice(len(kinds), 3, replace=False):
            one, _ = simulate([kinds[i]], n_items=1, overlap=1, seed=int(rng.integers(1 << 30)), utilities=u[n:n + 1])
            rankings.append(dict(one[0], item_id=n, reviewer=f"{kinds[i]}-{i}"))
    a = assess(rankings)
    assert_bad_below_good(a)
    for r in a.reviewers:
        assert (rel.W_LOW_RELIABILITY in r.warnings) == (not r.reviewer.startswith("good")), (r.reviewer, r.warnings)
        assert (rel.W_REVERSED in r.warnings) == r.reviewer.startswith("adversarial"), (r.reviewer, r.warnings)
        expected_weight = 0.0 if r.reliability < 0.5 else 2 * r.reliability - 1
        assert r.weight == pytest.approx(expected_weight)


def test_reviewers_from_ranktune_gold_are_told_apart():
    """End to end with the simulated reviewers of ranktune.gold on text answers (gold score = truth)."""
    prompt = "Explain why the sky is blue."
    pool = [
        ("Sunlight scatters off air molecules, and blue light scatters the most, so the sky looks blue to us.", True),
        ("Air molecules scatter short blue wavelengths of sunlight more than red ones, so blue light reaches "
         "our eyes from every part of the sky.", True),
        ("Sunlight scatters off air molecules, and blue light scatters the most, so the sky", False),
        ("Blue.", True),
        ("Bananas are yellow and tasty fruit to eat daily, and I like them.", True),
        ("the sky is blue the sky is blue the sky is blue the sky is blue the sky is blue.", True),
        ("Whatever, it is blue because it is blue, stupid question about the sky.", True),
        ("I can't help with that request about the sky.", True),
    ]
    rng = np.random.default_rng(0)
    good = [SimulatedReviewer(f"good-{i}", noise=0.3, seed=i) for i in range(4)]
    bad = [bad_reviewer(kind, f"{kind}-bad", seed=9) for kind in BAD_KINDS]
    panel = good + bad
    rankings = []
    for n in range(120):
        answers = [pool[j] for j in rng.choice(len(pool), 4, replace=False)]
        for i in rng.choice(len(panel), 3, replace=False):
            ranks = panel[i].rank(prompt, [t for t, _ in answers], [e for _, e in answers])
            rankings.append({"item_id": n, "reviewer": panel[i].name, "ranks": ranks, "seconds": 20.0})
    assert_bad_below_good(assess(rankings))
    assert gold_score(prompt, pool[0][0]) > gold_score(prompt, pool[3][0]), "the pool does have a gold order"


# ---------------------------------------------------------------------------------------------
# Agreement, consensus, gold


def test_a_reviewer_who_ties_everything_gets_chance_agreement_though_raw_agreement_is_high():
    # Most answers are equally good (utility 0), so good reviewers tie most pairs too, and
    # always saying "tie" matches them on most pairs.
    rng = np.random.default_rng(1)
    u = (rng.random((80, 4)) < 0.12).astype(float)
    rankings, _ = simulate(("good",) * 4 + ("ties",), n_items=80, utilities=u, noise=0.0)
    raw = raw_agreement(rankings)["per_reviewer"]
    a = by_name(assess(rankings))
    assert raw["ties-4"] > 0.7, raw
    assert abs(a["ties-4"].agreement) < 0.05, a["ties-4"].agreement
    assert min(a[f"good-{i}"].agreement for i in range(4)) > 0.8
    assert a["ties-4"].tie_share == 1.0


def test_agreement_is_negative_for_a_reversed_reviewer_and_near_zero_for_a_random_one():
    for bad, check in [("adversarial", lambda kappa: kappa < -0.3), ("random", lambda kappa: abs(kappa) < 0.1)]:
        a = by_name(assess(simulate(("good",) * 4 + (bad,), seed=4)[0]))
        assert check(a[f"{bad}-4"].agreement), (bad, a[f"{bad}-4"].agreement)
        assert min(a[f"good-{i}"].agreement for i in range(4)) > 0.1


def _truth_accuracy(ranks, utilities) -> tuple[float, int]:
    """Share of pairs with distinct utilities that `ranks` orders like the truth, a tie half."""
    hit = n = 0
    for i, j in itertools.combinations(range(len(ranks)), 2):
        if utilities[i] == utilities[j]:
            continue
        n += 1
        truth, said = np.sign(utilities[i] - utilities[j]), np.sign(ranks[j] - ranks[i])
        hit += 1.0 if said == truth else 0.5 if said == 0 else 0.0
    return hit, n


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fifth", ["good", "adversarial"])
def test_consensus_agrees_with_the_truth_more_often_than_any_single_good_reviewer(fifth, seed):
    """On each good reviewer's own items, the consensus of all (3 per item) orders more pairs like
    the truth than that reviewer did; an adversarial's votes, reversed, help too."""
    rankings, u = simulate(("good",) * 4 + (fifth,), seed=seed, noise=0.8)
    a = assess(rankings)
    assert set(a.consensus) == set(range(60))
    for name in sorted({r["reviewer"] for r in rankings if r["reviewer"].startswith("good")}):
        own = [r for r in rankings if r["reviewer"] == name]
        single = [_truth_accuracy(r["ranks"], u[r["item_id"]]) for r in own]
        consensus = [_truth_accuracy(a.consensus[r["item_id"]], u[r["item_id"]]) for r in own]
        rate = lambda hits: sum(h for h, _ in hits) / sum(n for _, n in hits)  # noqa: E731
        assert rate(consensus) > rate(single), (name, rate(consensus), rate(single))


def test_consensus_ties_only_what_everybody_tied():
    rankings = []
    for n in range(12):
        for name in ("alice", "bob", "carol"):
            ranks = [1, 1, 2, 3] if n == 0 else ([1, 2, 3, 4] if name != "carol" or n % 3 else [2, 1, 3, 4])
            rankings.append({"item_id": n, "reviewer": name, "ranks": ranks, "seconds": 20.0})
    rankings.append({"item_id": 99, "reviewer": "alice", "ranks": [2, 1], "seconds": 20.0})
    a = assess(rankings)
    assert a.consensus[0] == [1, 1, 2, 3]
    assert a.consensus[1] == [1, 2, 3, 4] and a.consensus[3] == [1, 2, 3, 4], "2 of 3 say 0 beats 1"
    assert 99 not in a.consensus and len(a.scores[99]) == 2, "one reviewer: scores but no consensus"
    assert dense_ranks([0.5, 0.5 + 1e-9, -1.0], 1e-6) == [1, 1, 2]


def test_gold_accuracy_by_hand():
    gold = {100: [(0, 1), (0, 2), (0, 3)],   # answer 0 is the best
            101: [(0, 2), (1, 2)]}           # answer 2 must be last
    gold_rankings = [
        {"item_id": 100, "reviewer": "alice", "ranks": [1, 2, 2, 1], "seconds": 10.0},  # 1 + 1 + 0.5 (tie)
        {"item_id": 101, "reviewer": "alice", "ranks": [2, 3, 1], "seconds": 10.0},     # 0 + 0
        {"item_id": 100, "reviewer": "bob", "ranks": [1, 2, 3, 4], "seconds": 10.0},    # 3
    ]
    rankings = [{"item_id": 1, "reviewer": "alice", "ranks": [1, 2], "seconds": 10.0}]
    a = by_name(assess(rankings, gold_rankings, gold))
    assert a["alice"].gold_pairs == 5 and a["alice"].gold_accuracy == pytest.approx(2.5 / 5)
    assert a["bob"].gold_pairs == 3 and a["bob"].gold_accuracy == 1.0
    assert a["alice"].rankings == 3 and a["bob"].rankings == 1
    assert rel.W_LOW_GOLD in a["alice"].warnings and rel.W_LOW_GOLD not in a["bob"].warnings


def test_gold_items_rescue_the_fit_when_the_bad_reviewers_are_the_majority():
    kinds = ("good",) * 2 + ("adversarial",) * 3
    rankings, _ = simulate(kinds, seed=5)
    without = assess(rankings)
    assert without.reviewers[0].reviewer.startswith("adversarial"), "a reversed majority wins without gold"
    # 20 gold items with a known full order, ranked by everybody.
    gu = np.random.default_rng(6).normal(size=(20, 4))
    gold_rankings, _ = simulate(kinds, n_items=20, overlap=5, utilities=gu, seed=6, item_base=1000)
    gold = {1000 + n: [(i, j) for i in range(4) for j in range(4) if gu[n, i] > gu[n, j]] for n in range(20)}
    with_gold = assess(rankings, gold_rankings, gold)
    assert_bad_below_good(with_gold)
    for r in with_gold.reviewers:
        assert (rel.W_LOW_GOLD in r.warnings) == r.reviewer.startswith("adversarial")


def test_gold_pairs_anchor_gold_items_and_measure_reviewers_nobody_overlaps():
    rankings, _ = simulate(("good",) * 5, seed=2)
    order = [2, 0, 3, 1]                                   # best to worst
    gold = {2000 + n: [(order[i], order[j]) for i in range(4) for j in range(i + 1, 4)] for n in range(11)}
    right = [0] * 4
    for place, pos in enumerate(order):
        right[pos] = place + 1
    wrong = [5 - v for v in right]
    # A reliable reviewer's slip, on a gold item nobody else ranked.
    gold_rankings = [{"item_id": 2010, "reviewer": "good-0", "ranks": wrong, "seconds": 20.0}]
    for n in range(10):                                    # two newcomers, each alone on ten gold items
        gold_rankings.append({"item_id": 2000 + n, "reviewer": "newcomer-right", "ranks": right, "seconds": 20.0})
        gold_rankings.append({"item_id": 2000 + n, "reviewer": "newcomer-wrong", "ranks": wrong, "seconds": 20.0})
    a = assess(rankings, gold_rankings, gold)
    s = a.scores[2010]
    assert all(s[i] > s[j] for i, j in gold[2010]), f"the expected order, not the reviewer's: {s}"
    assert 2010 not in a.consensus and a.consensus[2000] == right
    people = by_name(a)
    assert people["newcomer-right"].reliability > 0.9 and people["newcomer-wrong"].reliability < 0.1
    assert people["newcomer-wrong"].gold_accuracy == 0.0 and people["good-0"].gold_accuracy == 0.0


# ---------------------------------------------------------------------------------------------
# Warnings, unknown reliability, determinism, input checks


def test_warnings_fire_for_lazy_ties_and_fast_reviewers_and_not_for_good_ones():
    kinds = ("good",) * 3 + ("lazy", "ties")
    rankings, _ = simulate(kinds, shuffle_shown=True, seed=2)
    for r in rankings:
        if r["reviewer"] == "good-2":
            r["seconds"] = 2.0  # a good order, clicked in two seconds
    a = by_name(assess(rankings))
    assert a["lazy-3"].shown_order_share == 1.0 and rel.W_SHOWN_ORDER in a["lazy-3"].warnings
    assert rel.W_TIES in a["ties-4"].warnings and rel.W_LOW_RELIABILITY in a["ties-4"].warnings
    assert a["good-2"].warnings == (rel.W_TOO_FAST,) and a["good-2"].median_seconds == 2.0
    assert a["good-0"].warnings == () and a["good-1"].warnings == ()
    assert a["good-0"].shown_order_share < 0.2, "answers were shown shuffled: good ones rarely match it"


def test_a_quick_team_is_not_too_fast():
    rankings, _ = simulate(("good",) * 5, seconds={"good": 3.0})
    assert all(rel.W_TOO_FAST not in r.warnings for r in assess(rankings).reviewers)


def test_reliability_is_unknown_without_overlap():
    rankings, _ = simulate(("good",) * 4 + ("adversarial",), seed=1)
    solo = [{"item_id": 500 + n, "reviewer": "newcomer", "ranks": [1, 2, 3, 4], "seconds": 20.0} for n in range(8)]
    a = assess(rankings + solo)
    new = by_name(a)["newcomer"]
    known = [r.weight for r in a.reviewers if r.reliability is not None]
    assert new.reliability is None and a.reviewers[-1] is new
    assert new.weight == pytest.approx(float(np.median(known))) and rel.W_NO_OVERLAP in new.warnings
    # Nobody overlaps anybody: nothing is known, everybody keeps the unweighted 1.0.
    alone = assess(simulate(("good", "adversarial"), n_items=10, overlap=1)[0])
    assert all(r.reliability is None and r.weight == 1.0 for r in alone.reviewers)
    assert alone.consensus == {}


def test_identical_input_gives_identical_output():
    rankings, _ = simulate(("good",) * 3 + ("random", "adversarial"), seed=8, shuffle_shown=True)
    first, second = assess(rankings), assess([dict(r) for r in rankings])
    assert first == second
    assert assess([]) == rel.Assessment([], {}, {})


def test_bad_input_is_refused():
    ok = {"item_id": 1, "reviewer": "a", "ranks": [1, 2, 3], "seconds": None}
    with pytest.raises(ValueError, match="dense"):
        assess([dict(ok, ranks=[1, 3, 3])])
    with pytest.raises(ValueError, match="answers"):
        assess([ok, dict(ok, reviewer="b", ranks=[1, 2])])
    with pytest.raises(ValueError, match="permutation"):
        assess([dict(ok, shown=[0, 0, 1])])
    with pytest.raises(ValueError, match="expected pairs"):
        assess([], [dict(ok)], {})
    with pytest.raises(ValueError, match="distinct positions"):
        assess([], [dict(ok)], {1: [(0, 3)]})
