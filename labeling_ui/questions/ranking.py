"""Rank the answers: order them best first, ties allowed (InstructGPT's question).

On the page: press the answers' letters (or numbers) best first, `=` to tie the next one with
the previous, Backspace to take the last back, Esc to start over, Enter to submit; or drag the
chips into place (onto a place: tie; between places: a place of its own). With two answers one
key or click decides: A better, B better, or a tie.
"""

from __future__ import annotations

from typing import Sequence

from labeling_ui.questions.base import Question, Reply
from labeling_ui.tasks import check_ranks
from ranktune.ranks import dense_ranks

JS = r"""
(() => {
  const RT = window.ranktune;
  const flat = (s) => s.groups.flat();
  const ordinal = (n) => n + ({1: 'st', 2: 'nd', 3: 'rd'}[n % 100 > 10 && n % 100 < 14 ? 0 : n % 10] || 'th');
  function pick(s, i) {
    if (flat(s).includes(i)) return false;
    if (s.tie && s.groups.length) s.groups[s.groups.length - 1].push(i); else s.groups.push([i]);
    s.tie = false;
    return 'change';
  }
  function remove(s, i) { s.groups.forEach((g) => { const at = g.indexOf(i); if (at >= 0) g.splice(at, 1); }); }
  const prune = (s) => { s.groups = s.groups.filter((g) => g.length); };
  const decide = (s, groups) => { s.groups = groups; s.tie = false; return 'submit'; };
  function chip(cfg, i, action) {
    return `<button type="button" class="rt-chip" draggable="true" data-rt="${action}" data-i="${i}"
      title="${action === 'pick' ? 'Click to rank next, or drag' : 'Click to take back, or drag'}"><b>${cfg.labels[i]}</b>
      <span class="rt-snip">${RT.esc(cfg.snippets[i])}</span></button>`;
  }
  RT.questions.ranking = {
    start(cfg) {
      const s = {groups: [], tie: false};
      const p = cfg.prefill && cfg.prefill.ranks;
      if (p && p.length === cfg.k) {
        for (let r = 1; r <= Math.max(...p); r++) s.groups.push(p.map((v, i) => (v === r ? i : -1)).filter((i) => i >= 0));
        prune(s);
      }
      return s;
    },
    key(key, cfg, s) {
      const low = key.length === 1 ? key.toLowerCase() : key;
      let i = -1;
      if (low.length === 1 && low >= 'a' && low.charCodeAt(0) < 97 + cfg.k) i = low.charCodeAt(0) - 97;
      else if (/^[1-9]$/.test(key) && +key <= cfg.k) i = +key - 1;
      if (cfg.k === 2) {
        if (i === 0 || key === 'ArrowLeft') return decide(s, [[0], [1]]);
        if (i === 1 || key === 'ArrowRight') return decide(s, [[1], [0]]);
        if (key === '=' || low === 't') return decide(s, [[0, 1]]);
        return false;
      }
      if (i >= 0) return pick(s, i);
      if (key === '=' || low === 't') { if (!s.groups.length) return false; s.tie = !s.tie; return 'change'; }
      if (key === 'Backspace') {
        if (s.tie) { s.tie = false; return 'change'; }
        const last = s.groups[s.groups.length - 1];
        if (!last) return false;
        last.pop(); prune(s);
        return 'change';
      }
      if (key === 'Escape') { s.groups = []; s.tie = false; return 'change'; }
      return false;
    },
    act(action, data, cfg, s) {
      if (action === 'pick') return pick(s, +data.i);
      if (action === 'unpick') { remove(s, +data.i); prune(s); s.tie = false; return 'change'; }
      if (action === 'tie') return this.key('=', cfg, s);
      if (action === 'clear') return this.key('Escape', cfg, s);
      if (action === 'decide') return decide(s, JSON.parse(data.groups));
      return false;
    },
    drop(data, i, cfg, s) {
      // Indices in `data` refer to the groups as drawn: remove first without pruning, so they still hold.
      const into = data.group !== undefined ? s.groups[+data.group] : null;
      remove(s, i);
      if (into) into.push(i);
      else if (data.gap !== undefined) s.groups.splice(+data.gap, 0, [i]);
      prune(s); s.tie = false;
      return 'change';
    },
    check(cfg, s) {
      const done = flat(s), missing = cfg.labels.filter((_, i) => !done.includes(i));
      const readout = s.groups.map((g) => g.map((i) => cfg.labels[i]).join(' = ')).join(' > ');
      if (!missing.length) return {ok: true, why: '', readout: 'Your ranking: ' + readout};
      return {ok: false, why: `Not ranked yet: ${missing.join(', ')}`,
              readout: readout ? 'So far: ' + readout + (s.tie ? ' = ...' : '') : ''};
    },
    reply(cfg, s) {
      const ranks = new Array(cfg.k).fill(null);
      s.groups.forEach((g, r) => g.forEach((i) => { ranks[i] = r + 1; }));
      return {ranks};
    },
    badges(cfg, s) {
      const out = new Array(cfg.k).fill('');
      s.groups.forEach((g, r) => g.forEach((i) => { out[i] = (g.length > 1 ? 'tied ' : '') + ordinal(r + 1); }));
      return out;
    },
    draw(area, cfg, s) {
      if (cfg.k === 2) {
        const on = (g) => JSON.stringify(s.groups) === JSON.stringify(g) ? ' rt-on' : '';
        const b = (g, label, key) => `<button type="button" class="rt-choice${on(g)}" data-rt="decide"
          data-groups='${JSON.stringify(g)}'>${label} <kbd>${key}</kbd></button>`;
        area.innerHTML = `<div class="rt-choices">${b([[0], [1]], 'A is better', 'A')}${b([[0, 1]], 'Equally good', '=')}${b([[1], [0]], 'B is better', 'B')}</div>`;
        return;
      }
      const done = flat(s);
      let rows = `<li class="rt-gap" data-drop="1" data-gap="0"></li>`;
      s.groups.forEach((g, r) => {
        rows += `<li class="rt-group" data-drop="1" data-group="${r}"><span class="rt-pos">${r + 1}</span>
          ${g.map((i) => chip(cfg, i, 'unpick')).join('')}</li><li class="rt-gap" data-drop="1" data-gap="${r + 1}"></li>`;
      });
      const pool = cfg.labels.map((_, i) => i).filter((i) => !done.includes(i));
      area.innerHTML = `<div class="rt-rank">
        <div class="rt-side"><div class="rt-title">Your ranking, best first${s.tie ? ' <span class="rt-tie-on">next one ties with the last</span>' : ''}</div>
          <ol class="rt-ranked${s.groups.length ? '' : ' rt-none'}">${rows}</ol></div>
        <div class="rt-side"><div class="rt-title">Not ranked yet</div>
          <div class="rt-pool" data-drop="1" data-unranked="1">${pool.map((i) => chip(cfg, i, 'pick')).join('') || '<span class="rt-muted">all ranked</span>'}</div>
          <div class="rt-tools"><button type="button" data-rt="tie" ${s.groups.length ? '' : 'disabled'}>Tie next with last <kbd>=</kbd></button>
            <button type="button" data-rt="clear">Start over <kbd>Esc</kbd></button></div></div></div>`;
    },
  };
})();
"""


class Ranking(Question):
    name = "ranking"
    title = "Order the answers, best first (equally good answers may tie)"
    submit_label = "Submit ranking"
    keys_help = ("Keys: the answers' letters (or 1-9) best first · = ties the next with the last · Backspace takes "
                 "the last back · Esc starts over · Enter submits. Or drag the chips: onto a place to tie, "
                 "between places for a place of its own.")
    keys_help_two = "Keys: A (or ←) = A is better · B (or →) = B is better · = equally good. One key decides."
    js = JS

    def check(self, reply: dict, k: int) -> Reply:
        return Reply(check_ranks(reply.get("ranks"), k))

    def simulated_reply(self, utilities: Sequence[float], tie_margin: float) -> dict:
        return {"ranks": dense_ranks(list(utilities), tie_margin)}

    def export_fields(self, response: dict | None) -> dict:
        return {}


QUESTION = Ranking()
