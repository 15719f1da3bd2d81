"""Two answers: which is better, and by how much (Llama 2's question).

Seven choices, from "A is much better" through "about the same" to "B is much better", keys 1-7,
one click or key decides. Stored as ranks ([1, 2], [2, 1], or [1, 1] for "about the same") and
a strength: 3 much better, 2 better, 1 slightly better, 0 about the same. The export carries the
strength on every pair; the reward stage uses it as the pair's margin when asked (margin_scale).
"""

from __future__ import annotations

from typing import Sequence

from labeling_ui.questions.base import Question, Reply
from labeling_ui.tasks import SubmitError

STRENGTHS = {3: "much better", 2: "better", 1: "slightly better"}
# Utility gaps a simulated reviewer maps to strengths 1, 2, 3 (the gold score's units; its noise std is ~0.3).
SIM_STEPS = (0.25, 0.75)

JS = r"""
(() => {
  const RT = window.ranktune;
  const SCALE = [[[1, 2], 3, 'A is much better'], [[1, 2], 2, 'A is better'], [[1, 2], 1, 'A is slightly better'],
                 [[1, 1], 0, 'About the same'], [[2, 1], 1, 'B is slightly better'], [[2, 1], 2, 'B is better'],
                 [[2, 1], 3, 'B is much better']];
  const find = (p) => SCALE.findIndex(([r, st]) => p && JSON.stringify(r) === JSON.stringify(p.ranks) && st === p.strength);
  RT.questions.pairwise = {
    start(cfg) { const c = find(cfg.prefill); return {choice: c >= 0 ? c : null}; },
    key(key, cfg, s) { if (/^[1-7]$/.test(key)) { s.choice = +key - 1; return 'submit'; } return false; },
    act(action, data, cfg, s) { if (action === 'choose') { s.choice = +data.c; return 'submit'; } return false; },
    check(cfg, s) {
      if (s.choice === null) return {ok: false, why: 'Choose one of the seven', readout: ''};
      return {ok: true, why: '', readout: 'Your answer: ' + SCALE[s.choice][2]};
    },
    reply(cfg, s) { const [ranks, strength] = SCALE[s.choice]; return {ranks, strength}; },
    badges(cfg, s) {
      if (s.choice === null) return ['', ''];
      const [ranks, strength] = SCALE[s.choice];
      return strength === 0 ? ['same', 'same'] : ranks.map((r) => (r === 1 ? 'better' : ''));
    },
    draw(area, cfg, s) {
      area.innerHTML = `<div class="rt-scale">${SCALE.map(([, , label], c) =>
        `<button type="button" class="rt-choice${s.choice === c ? ' rt-on' : ''}${c === 3 ? ' rt-mid' : ''}"
          data-rt="choose" data-c="${c}">${label} <kbd>${c + 1}</kbd></button>`).join('')}</div>`;
    },
  };
})();
"""


class Pairwise(Question):
    name = "pairwise"
    title = "Which answer is better, and by how much?"
    submit_label = "Submit choice"
    min_answers = max_answers = 2
    keys_help = "Keys: 1-7 choose from 'A is much better' to 'B is much better' (4: about the same). One key decides."
    js = JS

    def check(self, reply: dict, k: int) -> Reply:
        if k != 2:
            raise SubmitError("This item does not have two answers to compare.")
        ranks, strength = reply.get("ranks"), reply.get("strength")
        if ranks not in ([1, 2], [2, 1], [1, 1]) or isinstance(strength, bool) or strength not in (0, 1, 2, 3):
            raise SubmitError("Choose one of the seven: which answer is better, and by how much.")
        if (ranks == [1, 1]) != (strength == 0):
            raise SubmitError("'About the same' is the only choice without a better answer.")
        return Reply(list(ranks), {"strength": int(strength)})

    def prefill(self, ranks: Sequence[int] | None, response: dict | None) -> dict | None:
        return {"ranks": list(ranks), "strength": (response or {}).get("strength")} if ranks else None

    def simulated_reply(self, utilities: Sequence[float], tie_margin: float) -> dict:
        gap = utilities[0] - utilities[1]
        if abs(gap) <= tie_margin:
            return {"ranks": [1, 1], "strength": 0}
        strength = 1 + sum(abs(gap) > step for step in SIM_STEPS)
        return {"ranks": [1, 2] if gap > 0 else [2, 1], "strength": strength}

    def pair_strength(self, response: dict | None) -> float | None:
        return (response or {}).get("strength")


QUESTION = Pairwise()
