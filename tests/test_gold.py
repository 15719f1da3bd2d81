"""The simulated reviewers' gold preference prefers what its documentation says it prefers."""

from ranktune.gold import SimulatedReviewer, gold_score, repetition, simulated_panel

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
