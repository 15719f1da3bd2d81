"""Rate every answer from 1 (very poor) to 7 (excellent), each on its own (a Likert question).

Keys: type the ratings in the order the answers are shown (A's, then B's, ...), Backspace takes
the last back; or click a rating under each answer. The scores are stored by answer, and ranks
follow from them (a higher score ranks better, equal scores tie), so agreement, reliability and
the reward model's pairs work as for rankings; the export keeps the raw scores too.
"""

from __future__ import annotations

from typing import Sequence

from labeling_ui.questions.base import Question, Reply, ints
from ranktune.ranks import dense_ranks

LOW, HIGH = 1, 7
# A simulated reviewer's utility (the gold score, about -2 for an empty cut-off answer to +3 for a
# complete on-topic one, plus taste and noise) mapped to a score: 4 at 0.5, a step per 0.75, within 1..7.
SIM_CENTER, SIM_AT, SIM_STEP = 4, 0.5, 0.75

JS = r"""
(() => {
  const RT = window.ranktune;
  RT.questions.rating = {
    start(cfg) {
      const p = cfg.prefill && cfg.prefill.scores;
      return {scores: p && p.length === cfg.k ? p.slice() : new Array(cfg.k).fill(null), order: []};
    },
    key(key, cfg, s) {
      if (/^[1-7]$/.test(key)) {
        const i = s.scores.indexOf(null);
        if (i < 0) return false;
        s.scores[i] = +key; s.order.push(i);
        return 'change';
      }
      if (key === 'Backspace') {
        const i = s.order.length ? s.order.pop() : s.scores.map((v, j) => (v === null ? -1 : j)).filter((j) => j >= 0).pop();
        if (i === undefined) return false;
        s.scores[i] = null;
        return 'change';
      }
      if (key === 'Escape') { s.scores.fill(null); s.order = []; return 'change'; }
      return false;
    },
    act(action, data, cfg, s) {
      if (action !== 'rate') return false;
      const i = +data.i;
      s.scores[i] = +data.v; s.order = s.order.filter((j) => j !== i); s.order.push(i);
      return 'change';
    },
    check(cfg, s) {
      const missing = cfg.labels.filter((_, i) => s.scores[i] === null);
      const readout = cfg.labels.map((l, i) => `${l} ${s.scores[i] === null ? '-' : s.scores[i]}`).join(' · ');
      return missing.length ? {ok: false, why: `Not rated yet: ${missing.join(', ')}`, readout}
                            : {ok: true, why: '', readout: 'Your ratings: ' + readout};
    },
    reply(cfg, s) { return {scores: s.scores.slice()}; },
    badges(cfg, s) { return s.scores.map((v) => (v === null ? '' : `${v} / 7`)); },
    draw(area, cfg, s) {
      const row = (l, i) => `<div class="rt-rate-row"><b>${l}</b>${[1, 2, 3, 4, 5, 6, 7].map((v) =>
        `<button type="button" class="rt-rate${s.scores[i] === v ? ' rt-on' : ''}" data-rt="rate" data-i="${i}"
          data-v="${v}" aria-label="${l}: ${v} of 7">${v}</button>`).join('')}</div>`;
      area.innerHTML = `<div class="rt-rating"><div class="rt-title">1 = very poor · 4 = acceptable · 7 = excellent</div>
        ${cfg.labels.map(row).join('')}</div>`;
    },
  };
})();
"""


class Rating(Question):
    name = "rating"
    title = "Rate each answer on its own, from 1 (very poor) to 7 (excellent)"
    submit_label = "Submit ratings"
    per_answer = ("scores",)
    keys_help = ("Keys: type each answer's rating 1-7 in the order shown (A first) · Backspace takes the last "
                 "back · Esc clears · Enter submits. Or click the ratings.")
    js = JS

    def check(self, reply: dict, k: int) -> Reply:
        scores = ints(reply.get("scores"), k, "a rating", LOW, HIGH)
        return Reply(dense_ranks(scores), {"scores": scores})

    def prefill(self, ranks: Sequence[int] | None, response: dict | None) -> dict | None:
        scores = (response or {}).get("scores")
        return {"scores": list(scores)} if scores else None

    def simulated_reply(self, utilities: Sequence[float], tie_margin: float) -> dict:
        return {"scores": [min(HIGH, max(LOW, SIM_CENTER + round((u - SIM_AT) / SIM_STEP))) for u in utilities]}


QUESTION = Rating()
