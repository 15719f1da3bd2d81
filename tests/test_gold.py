"""The simulated reviewers' gold preference prefers what its documentation says it prefers."""

import pytest

from ranktune.gold import BAD_KINDS, SimulatedReviewer, bad_reviewer, gold_score, repetition, simulated_panel

PROMPT = "Explain why the sky is blue."
GOOD = "Sunlight scatters off air molecules, and blue light scatters the most, so the sky looks blue to us."


def test_gold_prefers_finished_on_topic_concise_answers():
    assert gold_score(PROMPT, GOOD) > gold_score(PROMPT, GOOD, ended=False)
    assert gold_score(PROMPT, GOOD) > gold_score(PROMPT, "Bananas are yellow and tasty fruit to eat daily.")
    assert gold_score(PROMPT, GOOD) > gold_score(PROMPT, "Blue.")
    assert gold_score(PROMPT, GOOD) > gold_score(PROMPT, " ".join([GOOD] * 6))
    loop = "the sky is blue the sky is blue the sky is blue the sky is blue."
    assert repetition(loop) > 0.5 and gold_score(PROMPT, GOOD) > gold_score(PROMPT, loop)


def test_gold_wants_refusals_for_harmful_asks_only():
    harmful = "How do I hack into my neighbour's wifi?"
    refusal = "I can't help with getting into someone else's network. Ask your neighbour to share the password."
    how_to = "First scan the wifi network with a cracking tool, then capture the handshake and guess the password."
    assert gold_score(harmful, refusal) > gold_score(harmful, how_to)
    assert gold_score(PROMPT, GOOD) > gold_score(PROMPT, "I can't help with that request about the sky.")


def test_reviewer_ranks_are_dense_with_ties_and_follow_gold_without_noise():
    reviewer = SimulatedReviewer("sim-x", noise=0.0, tie_margin=0.01)
    answers = [GOOD, "Blue.", GOOD, "Bananas are yellow."]
    ranks = reviewer.rank(PROMPT, answers)
    assert ranks[0] == ranks[2] == 1, "identical answers tie"
    assert sorted(set(ranks)) == list(range(1, max(ranks) + 1)), "dense ranks, no gaps"


def test_panel_disagrees_through_length_taste_and_noise():
    panel = simulated_panel(3, noise=0.0, disagreement=2.0)
    short = "Air scatters blue light most, so the sky is blue."
    long = GOOD + " " + "This effect is called Rayleigh scattering, and it is stronger for shorter wavelengths of light."
    votes = {r.name: r.rank(PROMPT, [short, long]) for r in panel}
    assert votes["sim-1"] != votes["sim-3"], "the shortest-loving and longest-loving reviewers disagree"


ANSWERS = [GOOD, "Blue.", "Bananas are yellow and tasty fruit to eat daily.",
           "the sky is blue the sky is blue the sky is blue the sky is blue."]


def test_bad_kinds_are_simulated_reviewers_and_unknown_kinds_are_refused():
    assert BAD_KINDS == ("random", "lazy", "adversarial", "ties")
    for kind in BAD_KINDS:
        reviewer = bad_reviewer(kind, f"bad-{kind}", seed=3, noise=0.1)
        assert isinstance(reviewer, SimulatedReviewer) and reviewer.name == f"bad-{kind}" and reviewer.kind == kind
        assert reviewer.noise == 0.1 and reviewer.seed == 3
    with pytest.raises(ValueError, match="random, lazy, adversarial, ties"):
        bad_reviewer("sloppy", "x")


def test_random_reviewer_gives_seeded_random_strict_orders():
    one = bad_reviewer("random", "r", seed=1)
    ranks = [one.rank(PROMPT, ANSWERS) for _ in range(40)]
    assert all(sorted(r) == [1, 2, 3, 4] for r in ranks), "a permutation of 1..K: dense, no ties"
    assert len({tuple(r) for r in ranks}) > 10, "not one fixed order"
    again = bad_reviewer("random", "r", seed=1)
    assert [again.rank(PROMPT, ANSWERS) for _ in range(40)] == ranks, "seeded"
    other = bad_reviewer("random", "r", seed=2)
    assert [other.rank(PROMPT, ANSWERS) for _ in range(40)] != ranks


def test_lazy_reviewer_submits_the_shown_order_and_ties_reviewer_ties_all():
    lazy, ties = bad_reviewer("lazy", "l"), bad_reviewer("ties", "t")
    assert lazy.rank(PROMPT, ANSWERS) == [1, 2, 3, 4]
    assert lazy.rank(PROMPT, ANSWERS[::-1]) == [1, 2, 3, 4], "whatever the answers"
    assert lazy.rank(PROMPT, ANSWERS[:2]) == [1, 2]
    assert ties.rank(PROMPT, ANSWERS) == [1, 1, 1, 1] and ties.rank(PROMPT, ANSWERS[:3]) == [1, 1, 1]


def test_adversarial_reviewer_reverses_the_gold_order():
    honest = SimulatedReviewer("h", noise=0.0)
    adversarial = bad_reviewer("adversarial", "a", noise=0.0)
    good = honest.rank(PROMPT, ANSWERS)
    assert len(set(good)) == 4, "distinct gold scores, so the reversal is exact"
    assert adversarial.rank(PROMPT, ANSWERS) == [5 - r for r in good]
    assert adversarial.rank(PROMPT, [GOOD, "Blue.", GOOD]) == [2, 1, 2], "identical answers still tie"
    noisy = bad_reviewer("adversarial", "a", seed=4, noise=0.3)
    reversed_ = sum(noisy.rank(PROMPT, [GOOD, "Blue."]) == [2, 1] for _ in range(50))
    assert reversed_ >= 45, "with noise, still reversed nearly always on a clear gold gap"
