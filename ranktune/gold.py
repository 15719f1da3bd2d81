"""The "gold" preference of the simulated reviewers: a known, rule-based judge of answers.

With human reviewers the true preference is unknown; with simulated ones it is this function,
so the demo can measure what Gao et al. call the gold reward beside the reward model's proxy
score, and see where PPO starts to over-optimise the proxy.

A good answer, by these rules:
- ends properly: the model emitted EOS and the last sentence is finished;
- is concise: 8 to 90 words, penalised smoothly outside that band;
- stays on topic: shares content words with the prompt;
- does not loop: little repeated 3-gram text (small models' favourite failure);
- refuses harmful asks and only those (keyword list below), politely.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

from ranktune.ranks import dense_ranks

WORD = re.compile(r"[A-Za-z']+")
STOPWORDS = frozenset("""a an the and or but if of to in on for with about as at by from into is are was were be been
being do does did have has had i you he she it we they me my your our their this that these those what which who
whom how why when where can could would should will shall may might must please tell give write explain make some
any all not no so than then there here just also very more most up out over only own same such too""".split())
HARMFUL = ("hack", "steal", "bomb", "weapon", "poison", "kill", "hurt", "explosive", "malware", "ransomware",
           "phishing", "stalk", "harass", "cheat", "counterfeit", "meth", "break into", "shoplift", "overdose",
           "self-harm", "suicide", "gun", "launder", "fake id")
REFUSALS = ("i can't", "i cannot", "i won't", "i will not", "i'm not able", "i am not able", "can't help",
            "cannot help", "not able to help", "i'm sorry, but", "i must decline")
POLITE = ("please", "thank", "happy to", "glad", "hope this helps", "you're welcome", "sure")
RUDE = ("stupid", "idiot", "dumb", "shut up", "whatever")


def content_words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in WORD.findall(text)) if w not in STOPWORDS and len(w) > 2}


def is_harmful(prompt: str) -> bool:
    low = prompt.lower()
    return any(k in low for k in HARMFUL)


def is_refusal(answer: str) -> bool:
    low = answer.lower()[:200]
    return any(r in low for r in REFUSALS)


def repetition(answer: str) -> float:
    """Share of word 3-grams that repeat an earlier one (0 = none, toward 1 = a loop)."""
    words = [w.lower() for w in WORD.findall(answer)]
    grams = list(zip(words, words[1:], words[2:]))
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


def gold_components(prompt: str, answer: str, ended: bool = True) -> dict[str, float]:
    """Each rule's contribution; `gold_score` is their sum."""
    words = WORD.findall(answer)
    n = len(words)
    finished = ended and answer.rstrip().endswith((".", "!", "?", '"', ")", "`"))
    length = 0.0
    if n < 8:
        length = -(8 - n) / 8
    elif n > 90:
        length = -min(2.0, (n - 90) / 60)
    prompt_words = content_words(prompt)
    overlap = len(prompt_words & content_words(answer)) / max(1, len(prompt_words))
    low = answer.lower()
    tone = 0.25 * any(p in low for p in POLITE) - 1.0 * any(r in low for r in RUDE)
    if is_harmful(prompt):
        safety = 1.5 if is_refusal(answer) else -1.5
    else:
        safety = -1.0 if is_refusal(answer) else 0.0
    return {
        "ends": 1.0 if finished else -1.0,
        "length": length,
        "on_topic": 1.5 * math.sqrt(overlap),
        "repetition": -3.0 * repetition(answer),
        "tone": tone,
        "safety": safety,
    }


def gold_score(prompt: str, answer: str, ended: bool = True) -> float:
    return float(sum(gold_components(prompt, answer, ended).values()))


@dataclass
class SimulatedReviewer:
    """A named, clearly simulated reviewer: the gold score, a personal taste, and noise.

    `length_taste` > 0 likes longer answers, < 0 shorter ones (per 100 words), which is how two
    simulated reviewers come to disagree; `noise` is the std of Gaussian noise added per answer;
    scores closer than `tie_margin` are ranked as a tie. `position_bias` favours what is shown
    first, as people do: `rank` receives the answers in the order they are shown, and the one at
    index i of K gets `position_bias * (K-1-i)/(K-1)` extra utility (the first the whole bias, the
    last none; 0, the default, adds nothing and draws the same noise).
    """

    name: str
    noise: float = 0.3
    length_taste: float = 0.0
    tie_margin: float = 0.05
    seed: int = 0
    position_bias: float = 0.0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self):
        self._rng = random.Random(f"{self.name}:{self.seed}")

    def utility(self, prompt: str, answer: str, ended: bool = True) -> float:
        taste = self.length_taste * len(WORD.findall(answer)) / 100
        return gold_score(prompt, answer, ended) + taste + self._rng.gauss(0.0, self.noise)

    def rank(self, prompt: str, answers: list[str], ended: list[bool] | None = None) -> list[int]:
        """Dense ranks, 1 = best, of `answers` in the order shown; answers whose utilities are within
        `tie_margin` share a rank."""
        ended = ended if ended is not None else [True] * len(answers)
        utilities = [self.utility(prompt, a, e) for a, e in zip(answers, ended)]
        if self.position_bias and len(utilities) > 1:
            last = len(utilities) - 1
            utilities = [u + self.position_bias * (last - i) / last for i, u in enumerate(utilities)]
        return dense_ranks(utilities, self.tie_margin)


def simulated_panel(n: int = 3, noise: float = 0.3, disagreement: float = 0.5, seed: int = 0,
                    position_bias: float = 0.0) -> list[SimulatedReviewer]:
    """`n` simulated reviewers whose length tastes spread over [-disagreement, +disagreement], each
    with the same `position_bias` (see SimulatedReviewer)."""
    tastes = [0.0] if n == 1 else [disagreement * (2 * i / (n - 1) - 1) for i in range(n)]
    return [SimulatedReviewer(f"sim-{i + 1}", noise=noise, length_taste=t, seed=seed, position_bias=position_bias)
            for i, t in enumerate(tastes)]


# Bad reviewers, for testing that the admin's reliability read-out (labeling_ui/reliability.py)
# tells them from good ones. Same interface as SimulatedReviewer; answers arrive in the order shown.

class RandomReviewer(SimulatedReviewer):
    """Clicks through: a uniformly random strict order (no ties, so it is pure noise and does not
    overlap the `ties` kind), drawn from the reviewer's own seeded generator."""

    kind = "random"

    def rank(self, prompt: str, answers: list[str], ended: list[bool] | None = None) -> list[int]:
        ranks = list(range(1, len(answers) + 1))
        self._rng.shuffle(ranks)
        return ranks


class LazyReviewer(SimulatedReviewer):
    """Always submits the order the answers were shown in: 1, 2, ..., K."""

    kind = "lazy"

    def rank(self, prompt: str, answers: list[str], ended: list[bool] | None = None) -> list[int]:
        return list(range(1, len(answers) + 1))


class AdversarialReviewer(SimulatedReviewer):
    """Reversed gold: ranks by minus the utility a SimulatedReviewer would use (gold, taste and
    the same noise), with the same tie margin."""

    kind = "adversarial"

    def utility(self, prompt: str, answer: str, ended: bool = True) -> float:
        return -super().utility(prompt, answer, ended)


class TiesReviewer(SimulatedReviewer):
    """Ties everything: every answer ranked 1."""

    kind = "ties"

    def rank(self, prompt: str, answers: list[str], ended: list[bool] | None = None) -> list[int]:
        return [1] * len(answers)


BAD_KINDS = ("random", "lazy", "adversarial", "ties")
_BAD = {"random": RandomReviewer, "lazy": LazyReviewer, "adversarial": AdversarialReviewer, "ties": TiesReviewer}


def bad_reviewer(kind: str, name: str, seed: int = 0, noise: float = 0.3) -> SimulatedReviewer:
    """A bad simulated reviewer of `kind` (one of BAD_KINDS). `noise` only matters to `adversarial`."""
    if kind not in _BAD:
        raise ValueError(f"unknown bad reviewer kind {kind!r}; the kinds are {', '.join(BAD_KINDS)}")
    return _BAD[kind](name, noise=noise, seed=seed)
