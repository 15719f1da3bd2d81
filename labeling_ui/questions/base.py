"""What a question type is: how reviewers answer an item, how the answer is checked, stored and
exported. One file per type in this package (ranking.py, pairwise.py, rating.py); __init__.py
finds them, so a new type is one new file plus its tests.

Every answer comes with ranks over the item's answers (1 = best, ties allowed): a ranking is one,
a pairwise choice and a set of ratings imply one. Agreement, reviewer reliability and the
reward model read those ranks, so they work unchanged for every type; what a type says beyond
them (a strength, the scores) is its `response`, stored and exported beside the ranks.

Indices. The page shows each reviewer the answers in an order of their own, so what a page
sends is by *shown* index (A, B, ... on screen). `check` works in shown indices; the store maps
the ranks and the per-answer fields of the response (`per_answer`) to candidate positions.

The browser side: `js` registers `window.ranktune.questions[name]` for labeling_ui/widget.js,
an object with start(cfg) -> state, draw(area, cfg, state), key(key, cfg, state) and
act(action, data, cfg, state) -> false | "change" | "submit", check(cfg, state) -> {ok, why,
readout}, reply(cfg, state) -> what `check` below receives, and optionally badges() and drop().
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from labeling_ui.tasks import SubmitError


@dataclass(frozen=True)
class Reply:
    ranks: list[int]  # by shown index, dense, 1 = best
    response: dict | None = None  # the type's own answer (None: the ranks say it all)


class Question:
    name: str = ""
    title: str = ""  # the instruction above the answers
    submit_label: str = "Submit"
    min_answers: int = 2
    max_answers: int | None = None
    per_answer: tuple[str, ...] = ()  # response keys holding one value per answer (remapped shown <-> position)
    keys_help: str = ""  # the keys, for the hint under the answers (plain text)
    js: str = ""

    def check(self, reply: dict, k: int) -> Reply:
        """The page's reply (shown indices) checked; SubmitError, worded for the reviewer, if it is not valid."""
        raise NotImplementedError

    def prefill(self, ranks: Sequence[int] | None, response: dict | None) -> dict | None:
        """What the widget starts from when undo reopens an answer (shown indices), as `check` takes it."""
        return {"ranks": list(ranks)} if ranks else None

    def simulated_reply(self, utilities: Sequence[float], tie_margin: float) -> dict:
        """What a simulated reviewer with these utilities (shown order) would send."""
        raise NotImplementedError

    def export_fields(self, response: dict | None) -> dict:
        """Fields this type adds to an exported ranking (by candidate position)."""
        return dict(response or {})

    def pair_strength(self, response: dict | None) -> float | None:
        """How much better the better answer of a pair is, when the type asks (None: only the ranks say)."""
        return None

    def fits(self, k: int) -> str | None:
        """Why an item of k answers cannot be asked this question (None: it can)."""
        if k < self.min_answers or (self.max_answers is not None and k > self.max_answers):
            most = f"at most {self.max_answers}" if self.max_answers else "any number"
            return f"the {self.name} question needs {self.min_answers} to {most} answers per item, not {k}"
        return None


def ints(values, k: int, field: str, lo: int, hi: int) -> list[int]:
    """k whole numbers in lo..hi (SubmitError otherwise); floats like 2.0 pass, 1.6 does not."""
    if not isinstance(values, (list, tuple)) or len(values) != k:
        raise SubmitError(f"Give each of the {k} answers {field}.")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or not lo <= v <= hi:
            raise SubmitError(f"{field.capitalize()} must be whole numbers from {lo} to {hi}.")
        out.append(int(v))
    return out
