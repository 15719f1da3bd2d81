"""The HTML of the reviewer's page parts: the prompt as chat turns, the board (the answers as
cards plus the question's widget), and status lines. Everything from models and reviewers goes
through labeling_ui/render.py (markdown, sanitised) or is escaped; the widget's settings travel
as one escaped JSON attribute that labeling_ui/widget.js reads (never as markup).
"""

from __future__ import annotations

import html
import json
from datetime import datetime

from labeling_ui.questions import question as question_type
from labeling_ui.render import chat_html, markdown_html
from labeling_ui.tasks import StoreUnavailable, Task

SNIPPET_CHARS = 70
# gr.HTML treats its value as a template and fills in ${...}: these never reach it as themselves
# (entities read the same to people, and to JSON.parse of an attribute, once the browser decodes them).
TEMPLATE_CHARS = str.maketrans({"$": "&#36;", "{": "&#123;", "}": "&#125;", "`": "&#96;"})


def inert(markup: str) -> str:
    return markup.translate(TEMPLATE_CHARS)
# Inline SVG, not emoji: a reviewer's machine may have no emoji font.
ICONS = {
    "ok": '<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true"><path d="M3 8.5l3 3 7-7" '
          'fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round" stroke-linejoin="round"/></svg>',
    "warn": '<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true"><path d="M8 1.5l7 13H1z" '
            'fill="none" stroke="currentColor" stroke-width="1.6" stroke-linejoin="round"/><path d="M8 6v4M8 12v.5" '
            'stroke="currentColor" stroke-width="1.8" stroke-linecap="round"/></svg>',
    "info": '<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true"><circle cx="8" cy="8" r="6.5" '
            'fill="none" stroke="currentColor" stroke-width="1.6"/><path d="M8 7v4.5M8 4.5v.5" stroke="currentColor" '
            'stroke-width="1.8" stroke-linecap="round"/></svg>',
}


def status_html(kind: str, text: str) -> str:
    """A status line: kind "ok" (saved), "warn" (nothing saved) or "info"; "" text clears it."""
    if not text:
        return ""
    return inert(f'<div class="rt-status rt-{kind}" role="status">{ICONS[kind]}<span>{html.escape(text)}</span></div>')


def unavailable_text(err: StoreUnavailable, saving: str = "", again_is_safe: bool = True) -> str:
    """A status line's words for a click the store could not take (its database is down): `saving`,
    what the click was to store ("answer"), "" for a read. `again_is_safe`: sending it again
    cannot store it twice (a submit token, one vote per turn)."""
    if not saving:
        return str(err)
    if not err.maybe_saved:
        return f"Nothing was saved: {err}"
    again = " Sending it again never saves it twice." if again_is_safe else ""
    return f"Your {saving} may not have been saved: {err}{again}"


def prompt_html(task: Task | None) -> str:
    if task is None:
        return ('<div class="prompt-card done"><div class="card-label">All done</div><div class="done-text">'
                f'{ICONS["ok"]} Nothing is waiting for you right now: thank you! New items appear here when the next '
                "round of answers is generated; reload the page later.</div></div>")
    return inert(f'<div class="prompt-card"><div class="card-label">The conversation so far · item #{task.item_id}'
                 f'</div>{chat_html(task.prompt)}</div>')


def _card(task: Task, i: int) -> str:
    a = task.answers[i]
    words = len(a.text.split())
    badge = ('<span class="badge ok" title="The model finished this answer itself">complete</span>' if a.ended else
             '<span class="badge cut" title="The model hit the length limit mid-answer">cut off</span>')
    body = markdown_html(a.text) or '<span class="empty">(empty answer)</span>'
    return (f'<div class="answer-card" data-i="{i}"><div class="answer-head"><span class="answer-label">{a.label}</span>'
            f'<span class="rt-place" hidden></span>{badge}<span class="words">{words} word{"" if words == 1 else "s"}'
            f'</span></div><div class="answer-text md" tabindex="-1">{body}</div></div>')


def _snippet(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= SNIPPET_CHARS else one_line[:SNIPPET_CHARS - 1] + "…"


def board_html(task: Task | None, nonce: str, now: datetime) -> str:
    """The answers and the widget for `task` (shown order); `nonce` makes every new board a new widget."""
    if task is None:
        return ""
    q, k = question_type(task.question), len(task.answers)
    prefill = None
    prev = task.previous
    if prev is not None and prev.ranks:
        response = dict(prev.response or {})
        for key in q.per_answer:
            if isinstance(response.get(key), list) and len(response[key]) == k:
                response[key] = task.by_shown(response[key])
        prefill = q.prefill(task.by_shown(prev.ranks), response)
    config = {"type": q.name, "k": k, "aid": task.assignment_id, "nonce": nonce,
              "labels": [a.label for a in task.answers], "snippets": [_snippet(a.text) for a in task.answers],
              "prefill": prefill}
    keys = getattr(q, "keys_help_two", q.keys_help) if k == 2 else q.keys_help
    left = max(0, int((task.expires_at - now).total_seconds()))
    layout = "stack" if k > 4 else f"cols-{k}"
    return inert(f'<div class="rt-board" data-config="{html.escape(json.dumps(config), quote=True)}">'
            f'<div class="rt-question">{html.escape(q.title)}</div>'
            f'<div class="rt-answers {layout}">{"".join(_card(task, i) for i in range(k))}</div>'
            '<div class="rt-control"><noscript>This page needs JavaScript to record answers.</noscript></div>'
            f'<div class="rt-submit-row"><button type="button" class="rt-submit" data-rt="submit" disabled>'
            f'{html.escape(q.submit_label)} <kbd>Enter</kbd></button><span class="rt-why"></span>'
            '<span class="rt-readout"></span></div>'
            f'<div class="rt-keys">{html.escape(keys)}</div>'
            f'<div class="rt-clock" data-left="{left}"></div></div>')
