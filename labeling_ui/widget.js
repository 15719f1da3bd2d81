// The reviewer's answer widget: one per item on screen (the board app.py renders), driven by the
// question type's part (labeling_ui/questions/*.py register window.ranktune.questions[type]).
// It keeps the answer in the browser while the reviewer works, shows it live, keeps Submit
// disabled (saying why) until the answer is complete, and on submit hands it to the page's
// hidden Gradio button, whose event reads it through window.ranktune.reply().
// Shipped in the package and inlined into the page head: no CDN, works offline.
(() => {
  const RT = (window.ranktune = window.ranktune || {questions: {}});
  const TYPING = /^(INPUT|TEXTAREA|SELECT)$/;
  let cur = null;  // {board, cfg, q, state, since}
  // A key or click this soon after an item appears is not a judgement of it: it is the tail of a
  // double press meant for the item before (one key decides a pair), and it would rank an item
  // nobody read. The board says data-ready once it takes answers.
  RT.SETTLE_MS = 300;

  RT.esc = (text) => String(text).replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));

  function live() { return cur && cur.board.isConnected ? cur : null; }

  function mount(board) {
    board.dataset.mounted = '1';
    let cfg;
    try { cfg = JSON.parse(board.dataset.config); } catch (e) { return; }
    const q = RT.questions[cfg.type];
    if (!q) return;
    cur = {board, cfg, q, state: q.start(cfg), since: Date.now()};
    draw();
    tick();
    // Gradio may reuse the board's element for the next item: only this mount's timer marks it.
    const mine = cur;
    delete board.dataset.ready;
    setTimeout(() => { if (cur === mine) board.dataset.ready = '1'; }, RT.SETTLE_MS);
  }

  // Whether the widget takes this key or click: not in the item's first moments, nor a held key's repeat.
  function taking(c, e) { return !e.repeat && Date.now() - c.since >= RT.SETTLE_MS; }

  function draw() {
    const c = live();
    if (!c) return;
    const {board, cfg, q, state} = c;
    q.draw(board.querySelector('.rt-control'), cfg, state);
    const v = q.check(cfg, state);
    const submit = board.querySelector('.rt-submit');
    submit.disabled = !v.ok;
    submit.title = v.ok ? 'Enter submits' : v.why;
    board.querySelector('.rt-why').textContent = v.ok ? '' : v.why;
    board.querySelector('.rt-readout').textContent = v.readout || '';
    const badges = q.badges ? q.badges(cfg, state) : [];
    board.querySelectorAll('.answer-card').forEach((card) => {
      const b = card.querySelector('.rt-place');
      const text = badges[+card.dataset.i] || '';
      b.textContent = text;
      b.hidden = !text;
      card.classList.toggle('rt-done', !!text);
    });
  }

  function changed(result) {
    draw();
    if (result === 'submit') RT.submit();
  }

  function tick() {
    const c = live();
    if (!c) return;
    const el = c.board.querySelector('.rt-clock');
    if (!el) return;
    const left = Math.max(0, +el.dataset.left - (Date.now() - c.since) / 1000);
    const min = Math.floor(left / 60);
    el.textContent = left <= 0 ? 'Your hold on this item has run out: submit soon, or it may go to someone else too.'
      : `Held for you for another ${min ? min + ' min' : Math.ceil(left) + ' s'}`;
    el.classList.toggle('rt-late', left < 300);
  }
  setInterval(tick, 10000);

  // The answer as the page's submit event sends it ("" when there is none: the server says so).
  RT.reply = () => {
    const c = live();
    if (!c || !c.q.check(c.cfg, c.state).ok) return '';
    return JSON.stringify({assignment_id: c.cfg.aid, ...c.q.reply(c.cfg, c.state)});
  };
  RT.submit = () => {
    const c = live();
    if (!c || !c.q.check(c.cfg, c.state).ok) return false;
    document.querySelector('#submit-btn')?.click();
    return true;
  };

  new MutationObserver(() => {
    const board = document.querySelector('.rt-board');
    if (!board) { cur = null; return; }
    if (!board.dataset.mounted) mount(board);
  }).observe(document.documentElement, {childList: true, subtree: true});

  document.addEventListener('keydown', (e) => {
    const c = live();
    if (c && (e.ctrlKey || e.metaKey) && e.key === 'Enter') {
      e.preventDefault();
      if (taking(c, e)) RT.submit();
      return;
    }
    const t = e.target;
    if (!c || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    if (t && (TYPING.test(t.tagName) || t.isContentEditable)) return;
    if (t && t.tagName === 'BUTTON' && !c.board.contains(t) && (e.key === 'Enter' || e.key === ' ')) return;
    if (!taking(c, e)) { if (e.key === 'Enter') e.preventDefault(); return; }
    if (e.key === 'Enter') { e.preventDefault(); RT.submit(); return; }
    const result = c.q.key(e.key, c.cfg, c.state);
    if (result) { e.preventDefault(); changed(result); }
  });

  document.addEventListener('click', (e) => {
    const c = live();
    const el = e.target.closest && e.target.closest('[data-rt]');
    if (!c || !el || !c.board.contains(el) || el.disabled || !taking(c, e)) return;
    if (el.dataset.rt === 'submit') { RT.submit(); return; }
    const result = c.q.act(el.dataset.rt, el.dataset, c.cfg, c.state);
    if (result) changed(result);
  });

  // Drag and drop (HTML5): chips carry their answer index; drop targets say what a drop means.
  document.addEventListener('dragstart', (e) => {
    const c = live();
    const el = e.target.closest && e.target.closest('.rt-chip');
    if (!c || !el || !c.board.contains(el)) return;
    e.dataTransfer.setData('text/plain', el.dataset.i);
    e.dataTransfer.effectAllowed = 'move';
    c.board.classList.add('rt-dragging');
  });
  document.addEventListener('dragend', () => { const c = live(); if (c) c.board.classList.remove('rt-dragging'); });
  document.addEventListener('dragover', (e) => {
    const c = live();
    const zone = e.target.closest && e.target.closest('[data-drop]');
    if (!c || !zone || !c.board.contains(zone)) return;
    e.preventDefault();
    c.board.querySelectorAll('.rt-over').forEach((z) => z !== zone && z.classList.remove('rt-over'));
    zone.classList.add('rt-over');
  });
  document.addEventListener('drop', (e) => {
    const c = live();
    const zone = e.target.closest && e.target.closest('[data-drop]');
    if (!c || !zone || !c.board.contains(zone) || !c.q.drop) return;
    e.preventDefault();
    c.board.classList.remove('rt-dragging');
    const i = parseInt(e.dataTransfer.getData('text/plain'), 10);
    if (Number.isInteger(i) && i >= 0 && i < c.cfg.k) changed(c.q.drop(zone.dataset, i, c.cfg, c.state));
  });
})();
