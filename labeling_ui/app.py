"""The reviewer's page (Gradio Blocks) and the admin tab.

A reviewer sees the guidelines, the prompt, and the K answers side by side with a rank box
under each; types ranks (Tab moves to the next box, Enter or Ctrl+Enter submits), may flag the
item, comment, or write a better answer; can skip, and undo their last submission.

The item on screen travels with the page: a hidden ticket (JSON: assignment id, submit token,
number of answers) that the browser sends with every submit and skip. It is never looked up in
server-side state, so a submit retried after its reply was lost (a network drop) carries the ticket
of the item it was meant for: the store, idempotent per token, answers "Already saved." and
nothing lands on the next item. A ticket is only a claim; the store refuses one whose assignment
is not this reviewer's, or whose token belongs to someone else's submission.

Security: model text is escaped here (it is shown through gr.HTML, which would otherwise render
it as markup), every handler looks the reviewer up from the login session (request.username),
and admin handlers refuse anyone who is not an admin - the admin tab being hidden is only
cosmetic. Login itself is enforced in front of Gradio (server.py).
"""

from __future__ import annotations

import html
import json
import secrets
from pathlib import Path

import gradio as gr

from labeling_ui import who
from labeling_ui.admin import build_admin
from labeling_ui.schema import FLAG_KINDS
from labeling_ui.store import LabelStore, Progress, SubmitError, Task, Turn, UnknownReviewer, answer_label
from labeling_ui.text import escape

GUIDELINES = Path(__file__).with_name("guidelines.md")
STYLE = Path(__file__).with_name("style.css")
# Ctrl/Cmd+Enter submits from anywhere on the page (Enter in a rank box does too).
HEAD = """<script>
document.addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
    e.preventDefault();
    document.querySelector('#submit-btn')?.click();
  }
});
</script>"""
FOCUS_FIRST_RANK = "() => { setTimeout(() => document.querySelector('#rank-0 input')?.focus(), 60); }"
LOST_TICKET = "⚠️ Nothing was saved: this page no longer knows which item it shows. Reload the page."


def prompt_html(task: Task | None) -> str:
    if task is None:
        return ('<div class="prompt-card done"><div class="card-label">All done</div><div class="prompt-text">'
                "Nothing is waiting for you right now. Thank you! New items appear here when the next round of "
                "answers is generated; reload the page later.</div></div>")
    return (f'<div class="prompt-card"><div class="card-label">Prompt · item #{task.item_id}</div>'
            f'<div class="prompt-text">{escape(task.prompt_text)}</div></div>')


def answer_html(task: Task, position: int) -> str:
    a = task.answers[position]
    words = len(a.text.split())
    badge = ('<span class="badge ok" title="The model finished this answer itself">complete</span>' if a.ended else
             '<span class="badge cut" title="The model hit the length limit mid-answer">cut off</span>')
    body = escape(a.text) if a.text.strip() else '<span class="empty">(empty answer)</span>'
    return (f'<div class="answer-card"><div class="answer-head"><span class="answer-label">{a.label}</span>'
            f'{badge}<span class="words">{words} word{"" if words == 1 else "s"}</span></div>'
            f'<div class="answer-text" tabindex="-1">{body}</div></div>')


def make_ticket(task: Task) -> str:
    """The ticket of a task on screen: what a submit or skip of it must send back."""
    return json.dumps({"assignment_id": task.assignment_id, "token": secrets.token_urlsafe(16),
                       "k": len(task.answers)}, separators=(",", ":"))


def read_ticket(raw, slots: int) -> dict | None:
    """The ticket a page sent, checked for shape only (the store checks it is this reviewer's); None if unusable."""
    if not isinstance(raw, str) or len(raw) > 500:
        return None
    try:
        ticket = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(ticket, dict):
        return None
    aid, token, k = ticket.get("assignment_id"), ticket.get("token"), ticket.get("k")
    if not (type(aid) is int and aid > 0 and isinstance(token, str) and type(k) is int and 2 <= k <= slots):
        return None
    return {"assignment_id": aid, "token": token, "k": k}


def build_blocks(store: LabelStore, export_dir: Path, guidelines: str | None = None, slots: int = 8) -> gr.Blocks:
    slots = max(slots, store.max_answers(), 2)
    guidelines_md = Path(guidelines).read_text(encoding="utf-8") if guidelines else GUIDELINES.read_text("utf-8")

    with gr.Blocks(title="ranktune · rank answers", analytics_enabled=False) as demo:
        # The ticket of the item on screen (make_ticket): kept in the browser, sent with each submit and
        # skip. Not rendered (visible=False), yet Gradio 6 still sends its value (test_label_browser.py).
        ticket = gr.Textbox("", visible=False, elem_id="ticket")
        with gr.Row(elem_id="topbar"):
            gr.Markdown("### ranktune · rank the answers", elem_id="title")
            signed_in = gr.Markdown("", elem_id="who")
            gr.Button("Log out", link="/logout", size="sm", variant="secondary", scale=0, min_width=90)
        with gr.Tabs():
            with gr.Tab("Rank", id="rank"):
                progress = gr.Markdown("", elem_id="progress")
                with gr.Accordion("Guidelines", open=False, elem_id="guidelines"):
                    gr.Markdown(guidelines_md)
                prompt = gr.HTML(prompt_html(None), elem_id="prompt")
                columns, cards, ranks = [], [], []
                with gr.Row(equal_height=True, elem_id="answers"):
                    for i in range(slots):
                        with gr.Column(visible=False, min_width=220, elem_classes=["answer-col"]) as col:
                            cards.append(gr.HTML("", elem_id=f"answer-{i}"))
                            ranks.append(gr.Number(label=f"Rank of {answer_label(i)}", precision=0,
                                                   elem_id=f"rank-{i}", placeholder="1 = best"))
                        columns.append(col)
                gr.Markdown("Type a rank under each answer: **1 = best**; equally good answers share a rank, and "
                            "ranks skip no number (1, 1, 2, 3 is fine; 1, 1, 3, 4 is not). **Tab** moves to the "
                            "next box; **Enter** submits.", elem_id="hint")
                with gr.Row():
                    flags = gr.CheckboxGroup(list(FLAG_KINDS), label="Flag this item (optional)", scale=1)
                    comment = gr.Textbox(label="Comment (optional)", lines=2, max_lines=6, scale=2)
                with gr.Accordion("Write a better answer (optional)", open=False):
                    better = gr.Textbox(label="Your answer to the prompt: it becomes training data for the model",
                                        lines=5, max_lines=20)
                with gr.Row():
                    submit = gr.Button("Submit ranking", variant="primary", elem_id="submit-btn", scale=2)
                    skip = gr.Button("Skip this item", elem_id="skip-btn", scale=1)
                    undo = gr.Button("Undo my last submission", elem_id="undo-btn", scale=1)
                status = gr.Markdown("", elem_id="status")
            with gr.Tab("Admin", id="admin", visible=False) as admin_tab:
                admin_view, admin_outputs = build_admin(store, export_dir)

        task_outputs = [ticket, progress, prompt, *columns, *cards, *ranks, flags, comment, better, submit, skip,
                        status]
        submit_inputs, skip_inputs = [ticket, *ranks, flags, comment, better], [ticket, flags, comment, better]

        def view(task: Task | None, p: Progress, message: str = "", shown_k: int | None = None) -> list:
            """The page's outputs for `task`. `shown_k`: the number of answers of the item the page showed
            (from its ticket), when known; with the same number the rank boxes get plain values, not
            gr.update(): Gradio builds a new component for every update (~1 ms each, 8 per click)."""
            line = f"**{p.done} of {p.total} done**" + (f" · {p.skipped} skipped" if p.skipped else "")
            if task is None:
                return ["", line, prompt_html(None), *[gr.update(visible=False)] * slots, *[""] * slots,
                        *[None] * slots, [], "", "", gr.update(interactive=False), gr.update(interactive=False),
                        message]
            k, prev = len(task.answers), task.previous
            if task.round > 1:
                line += f" · round {task.round}"
            values = [*(prev.ranks if prev and prev.ranks else [None] * k), *[None] * (slots - k)]
            boxes = values if shown_k == k else [gr.update(value=v, placeholder=f"1-{k}") for v in values]
            return [make_ticket(task), line, prompt_html(task), *[gr.update(visible=i < k) for i in range(slots)],
                    *[answer_html(task, i) if i < k else "" for i in range(slots)], *boxes,
                    prev.flags if prev else [], prev.comment if prev else "", prev.demonstration if prev else "",
                    gr.update(interactive=True), gr.update(interactive=True), message]

        def unchanged(message: str) -> list:
            return [gr.skip()] * (len(task_outputs) - 1) + [message]

        def on_load(request: gr.Request):
            user = who.reviewer(store, request)
            role = " (admin)" if user.is_admin else ""
            turn = store.turn(user.name)
            return [f"Signed in as **{html.escape(user.name)}**{role}", gr.update(visible=user.is_admin),
                    *view(turn.task, turn.progress)]

        def send(name: str, current: dict, ranks: list | None, flag_values, comment_text, better_text) -> Turn:
            """Record the submission (or skip, `ranks` None), claim the next item, count progress: one transaction."""
            try:
                return store.submit_and_next(name, current["assignment_id"], ranks, token=current["token"],
                                             skip=ranks is None, flags=flag_values or [], comment=comment_text,
                                             demonstration=better_text)
            except UnknownReviewer:  # the account was disabled after this page signed in
                raise gr.Error("Not logged in.") from None

        # Submit and skip run with Gradio's pre- and postprocessing off, and call the very same
        # component methods here instead: Gradio runs each input's and output's in a worker thread of
        # its own (12 + 33 thread hops per click), which under load cost more than the work itself.
        def preprocessed(inputs: list, values) -> list:
            return [block.preprocess(v) for block, v in zip(inputs, values)]

        def postprocessed(values: list) -> list:
            return [v if isinstance(v, dict) or not hasattr(block, "postprocess") else block.postprocess(v)
                    for block, v in zip(task_outputs, values)]  # dicts: updates, which Gradio applies itself

        def on_submit(request: gr.Request, *values):
            # Gradio passes the request first, then the inputs: ticket, the rank boxes, flags, comment, answer.
            name = who.username(request)
            sent_ticket, *rank_values, flag_values, comment_text, better_text = preprocessed(submit_inputs, values)
            current = read_ticket(sent_ticket, slots)
            if current is None:
                return postprocessed(unchanged(LOST_TICKET))
            try:
                turn = send(name, current, list(rank_values[:current["k"]]), flag_values, comment_text, better_text)
            except SubmitError as err:
                return postprocessed(unchanged(f"⚠️ {err}"))
            note = "Already saved." if turn.submitted.duplicate else "Saved."
            return postprocessed(view(turn.task, turn.progress, f"✅ {note} Here is the next item.",
                                      shown_k=current["k"]))

        def on_skip(request: gr.Request, *values):
            name = who.username(request)
            sent_ticket, flag_values, comment_text, better_text = preprocessed(skip_inputs, values)
            current = read_ticket(sent_ticket, slots)
            if current is None:
                return postprocessed(unchanged(LOST_TICKET))
            try:
                turn = send(name, current, None, flag_values, comment_text, better_text)
            except SubmitError as err:
                return postprocessed(unchanged(f"⚠️ {err}"))
            note = "Already skipped." if turn.submitted.duplicate else "Skipped."
            return postprocessed(view(turn.task, turn.progress, f"{note} Here is the next item.",
                                      shown_k=current["k"]))

        def on_undo(request: gr.Request):
            user = who.reviewer(store, request)
            task = store.undo_last(user.name)
            if task is None:
                return unchanged("Nothing to undo: you can undo only your latest submission, once.")
            return view(task, store.progress(user.name), "↩️ Your last submission is reopened: change it and submit "
                        "again.")

        opts = {"api_visibility": "private"}
        demo.load(on_load, None, [signed_in, admin_tab, *task_outputs], **opts).then(None, js=FOCUS_FIRST_RANK)
        raw = {"preprocess": False, "postprocess": False}  # done in the handlers: see preprocessed()
        for trigger in [submit.click, *[r.submit for r in ranks]]:
            trigger(on_submit, submit_inputs, task_outputs, **opts, **raw).then(None, js=FOCUS_FIRST_RANK)
        skip.click(on_skip, skip_inputs, task_outputs, **opts, **raw).then(None, js=FOCUS_FIRST_RANK)
        undo.click(on_undo, None, task_outputs, **opts).then(None, js=FOCUS_FIRST_RANK)
        admin_tab.select(admin_view, None, admin_outputs, api_visibility="private")
    demo.queue(default_concurrency_limit=8)
    # Gradio recomputes the summary of its monitoring page (a pandas frame of up to 10,000 recent
    # events) after every event, by default: 3-10 ms of the interpreter per click, growing with the
    # events seen. Nobody reads it here (/monitoring is refused to reviewers; admins have their tab),
    # so it is refreshed every 1,000 events instead.
    if hasattr(demo._queue, "ANAYLTICS_CACHE_FREQUENCY"):
        demo._queue.ANAYLTICS_CACHE_FREQUENCY = 1000
    return demo


def page_head() -> str:
    return HEAD


def page_css() -> str:
    return STYLE.read_text(encoding="utf-8")
