"""The reviewer's page (Gradio Blocks) and the admin tab.

A reviewer sees the guidelines, the conversation (chat turns), and the K answers as cards, in an
order drawn for them (the store's `shown`), and answers the item's question (labeling_ui/questions/:
order them, pick the better of two and by how much, or rate each) by keyboard, click or drag in
the widget (widget.js, page.py); may flag the item, comment, or write a better answer; can skip,
and undo their last submission.

The item on screen travels with the page: a hidden ticket (JSON: assignment id, submit token,
number of answers) that the browser sends with every submit and skip. It is never looked up in
server-side state, so a submit retried after its reply was lost (a network drop) carries the ticket
of the item it was meant for: the store, idempotent per token, answers "Already saved." and
nothing lands on the next item. A ticket is only a claim; the store refuses one whose assignment
is not this reviewer's, or whose token belongs to someone else's submission.

Security: model text is rendered as sanitised markdown or escaped (page.py, render.py: gr.HTML
would otherwise render it as markup), every handler looks the reviewer up from the login session (request.username),
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
from labeling_ui.page import board_html, prompt_html, status_html, unavailable_text
from labeling_ui.questions import page_js
from labeling_ui.store import LabelStore, Progress, SubmitError, Task, Turn, UnknownReviewer
from labeling_ui.tasks import StoreUnavailable

GUIDELINES = Path(__file__).with_name("guidelines.md")
STYLES = [Path(__file__).with_name("style.css"), Path(__file__).with_name("render.css")]
WIDGET = Path(__file__).with_name("widget.js")
# The submit event takes the answer from the widget (widget.js) in place of the hidden reply box.
READ_REPLY = "(ticket, reply, ...rest) => [ticket, window.ranktune ? window.ranktune.reply() : '', ...rest]"
BLUR = "() => { document.activeElement?.blur?.(); }"  # keys go to the widget again after a click
LOST_TICKET = "Nothing was saved: this page no longer knows which item it shows. Reload the page."
STALE_REPLY = "Nothing was saved: the answer on this page belongs to another item. Reload the page."
NO_REPLY = "Nothing was saved: the answer is not complete yet."


def make_ticket(task: Task) -> str:
    """The ticket of a task on screen: what a submit or skip of it must send back."""
    return json.dumps({"assignment_id": task.assignment_id, "token": secrets.token_urlsafe(16),
                       "k": len(task.answers)}, separators=(",", ":"))


def read_ticket(raw, slots: int = 26) -> dict | None:
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


def read_reply(raw, ticket: dict) -> tuple[dict | None, str]:
    """The widget's answer (JSON) for the item of `ticket`: (reply, "") or (None, why nothing is saved)."""
    if not isinstance(raw, str) or not raw.strip():
        return None, NO_REPLY
    if len(raw) > 5000:
        return None, NO_REPLY
    try:
        reply = json.loads(raw)
    except ValueError:
        return None, NO_REPLY
    if not isinstance(reply, dict):
        return None, NO_REPLY
    if reply.pop("assignment_id", None) != ticket["assignment_id"]:
        return None, STALE_REPLY
    return reply, ""


def build_blocks(store: LabelStore, export_dir: Path, guidelines: str | None = None, slots: int = 8,
                 arena=None) -> gr.Blocks:
    """The page; `arena`: (ArenaStore, ArenaEngine, suggested prompts) adds the Arena tab (labeling_ui/arena/tab.py)."""
    slots = max(slots, store.max_answers(), 2)
    guidelines_md = Path(guidelines).read_text(encoding="utf-8") if guidelines else GUIDELINES.read_text("utf-8")

    with gr.Blocks(title="ranktune · review answers", analytics_enabled=False) as demo:
        # The ticket of the item on screen (make_ticket): kept in the browser, sent with each submit and
        # skip. Not rendered (visible=False), yet Gradio 6 still sends its value (test_label_browser.py).
        ticket = gr.Textbox("", visible=False, elem_id="ticket")
        # The answer: filled by READ_REPLY from the widget as the submit event starts.
        reply = gr.Textbox("", visible=False, elem_id="reply")
        with gr.Row(elem_id="topbar"):
            gr.Markdown("### ranktune · review the answers", elem_id="title")
            signed_in = gr.Markdown("", elem_id="who")
            gr.Button("Log out", link="/logout", size="sm", variant="secondary", scale=0, min_width=90)
        with gr.Tabs():
            with gr.Tab("Review", id="rank"):
                progress = gr.Markdown("", elem_id="progress")
                with gr.Accordion("Guidelines", open=False, elem_id="guidelines"):
                    gr.Markdown(guidelines_md)
                prompt = gr.HTML(prompt_html(None), elem_id="prompt")
                board = gr.HTML("", elem_id="board")
                with gr.Row():
                    flags = gr.CheckboxGroup(list(FLAG_KINDS), label="Flag this item (optional)", scale=1)
                    comment = gr.Textbox(label="Comment (optional)", lines=2, max_lines=6, scale=2)
                # On the page from the start, not in a closed accordion: Gradio mounts an accordion's box
                # only when it opens, and text typed into it at once was lost (CI, stops 30 and 31).
                better = gr.Textbox(label="Write a better answer (optional): it becomes training data for the "
                                    "model once an admin approves it", lines=2, max_lines=20, elem_id="better")
                with gr.Row():
                    # Clicked by the widget's own Submit (widget.js), which knows when the answer is complete.
                    submit = gr.Button("Submit", elem_id="submit-btn", elem_classes=["rt-hidden"])
                    skip = gr.Button("Skip this item", elem_id="skip-btn", scale=1)
                    undo = gr.Button("Undo my last submission", elem_id="undo-btn", scale=1)
                status = gr.HTML("", elem_id="status")
            if arena is not None:
                from labeling_ui.arena.tab import build_arena_tab

                with gr.Tab("Arena", id="arena") as arena_tab:
                    arena_view, arena_outputs = build_arena_tab(*arena)
                arena_tab.select(arena_view, None, arena_outputs, api_visibility="private")
            with gr.Tab("Admin", id="admin", visible=False) as admin_tab:
                admin_view, admin_outputs = build_admin(store, export_dir, arena[0] if arena else None)

        task_outputs = [ticket, progress, prompt, board, flags, comment, better, skip, status]
        submit_inputs, skip_inputs = [ticket, reply, flags, comment, better], [ticket, flags, comment, better]

        def view(task: Task | None, p: Progress, message: str = "", kind: str = "ok") -> list:
            """The page's outputs for `task` (None: nothing left for this reviewer)."""
            line = (f"**{p.done} done** · {p.remaining}+ left" if p.more else f"**{p.done} of {p.total} done**") \
                + f" · {p.today} today" + (f" · {p.skipped} skipped" if p.skipped else "")
            if task is None:
                return ["", line, prompt_html(None), "", [], "", "", gr.update(interactive=False),
                        status_html(kind, message)]
            if task.round > 1:
                line += f" · round {task.round}"
            prev, new_ticket = task.previous, make_ticket(task)
            return [new_ticket, line, prompt_html(task), board_html(task, json.loads(new_ticket)["token"], store.clock()),
                    prev.flags if prev else [], prev.comment if prev else "", prev.demonstration if prev else "",
                    gr.update(interactive=True), status_html(kind, message)]

        def unchanged(message: str) -> list:
            return [gr.skip()] * (len(task_outputs) - 1) + [status_html("warn", message)]

        def on_load(request: gr.Request):
            try:
                user = who.reviewer(store, request)
                turn = store.turn(user.name)
            except StoreUnavailable as err:
                return [gr.skip(), gr.skip(), *unchanged(f"{unavailable_text(err)} To try again, reload the page.")]
            role = " (admin)" if user.is_admin else ""
            return [f"Signed in as **{html.escape(user.name)}**{role}", gr.update(visible=user.is_admin),
                    *view(turn.task, turn.progress)]

        def send(name: str, current: dict, answer: dict | None, flag_values, comment_text, better_text) -> Turn:
            """Record the submission (or skip, `answer` None), claim the next item, count progress: one transaction."""
            try:
                return store.submit_and_next(name, current["assignment_id"], token=current["token"],
                                             skip=answer is None, reply=answer, flags=flag_values or [],
                                             comment=comment_text, demonstration=better_text)
            except UnknownReviewer:  # the account was disabled after this page signed in
                raise gr.Error("Not logged in.") from None

        # Submit and skip run with Gradio's pre- and postprocessing off, and call the very same
        # component methods here instead: Gradio runs each input's and output's in a worker thread of
        # its own (thread hops per click), which under load cost more than the work itself.
        def preprocessed(inputs: list, values) -> list:
            return [block.preprocess(v) for block, v in zip(inputs, values)]

        def postprocessed(values: list) -> list:
            return [v if isinstance(v, dict) or not hasattr(block, "postprocess") else block.postprocess(v)
                    for block, v in zip(task_outputs, values)]  # dicts: updates, which Gradio applies itself

        def on_submit(request: gr.Request, *values):
            # Gradio passes the request first, then the inputs: ticket, reply, flags, comment, written answer.
            name = who.username(request)
            sent_ticket, sent_reply, flag_values, comment_text, better_text = preprocessed(submit_inputs, values)
            current = read_ticket(sent_ticket, slots)
            if current is None:
                return postprocessed(unchanged(LOST_TICKET))
            answer, why = read_reply(sent_reply, current)
            if answer is None:
                return postprocessed(unchanged(why))
            try:
                turn = send(name, current, answer, flag_values, comment_text, better_text)
            except SubmitError as err:
                return postprocessed(unchanged(f"Nothing was saved: {err}"))
            except StoreUnavailable as err:  # the page keeps its ticket: submitting again is safe
                return postprocessed(unchanged(unavailable_text(err, "answer")))
            note = "Already saved." if turn.submitted.duplicate else "Saved."
            return postprocessed(view(turn.task, turn.progress, f"{note} Here is the next item."))

        def on_skip(request: gr.Request, *values):
            name = who.username(request)
            sent_ticket, flag_values, comment_text, better_text = preprocessed(skip_inputs, values)
            current = read_ticket(sent_ticket, slots)
            if current is None:
                return postprocessed(unchanged(LOST_TICKET))
            try:
                turn = send(name, current, None, flag_values, comment_text, better_text)
            except SubmitError as err:
                return postprocessed(unchanged(f"Nothing was saved: {err}"))
            except StoreUnavailable as err:
                return postprocessed(unchanged(unavailable_text(err, "skip")))
            note = "Already skipped." if turn.submitted.duplicate else "Skipped."
            return postprocessed(view(turn.task, turn.progress, f"{note} Here is the next item.", kind="info"))

        def on_undo(request: gr.Request):
            try:
                user = who.reviewer(store, request)
                task = store.undo_last(user.name)
                if task is None:
                    return unchanged("Nothing to undo: you can undo only your latest submission, once.")
                progress_now = store.progress(user.name)
            except StoreUnavailable as err:
                # An undo that may have landed reopens its item: the next page load shows it.
                return unchanged(unavailable_text(err, "undo", again_is_safe=False))
            return view(task, progress_now, "Your last submission is reopened: change it and submit again.",
                        kind="info")

        opts = {"api_visibility": "private"}
        demo.load(on_load, None, [signed_in, admin_tab, *task_outputs], **opts)
        raw = {"preprocess": False, "postprocess": False}  # done in the handlers: see preprocessed()
        submit.click(on_submit, submit_inputs, task_outputs, js=READ_REPLY, **opts, **raw).then(None, js=BLUR)
        skip.click(on_skip, skip_inputs, task_outputs, **opts, **raw).then(None, js=BLUR)
        undo.click(on_undo, None, task_outputs, **opts).then(None, js=BLUR)
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
    # Inlined, not fetched: the page must work offline, and "</" cannot occur in our own scripts.
    script = WIDGET.read_text(encoding="utf-8") + "\n" + page_js()
    assert "</script" not in script.lower()
    return f"<script>\n{script}\n</script>"


def page_css() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in STYLES)
