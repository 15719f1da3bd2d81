"""The Arena tab: a reviewer chats with two anonymous models of the run side by side, votes on
each turn, and sees the names when they end the conversation; a leaderboard of every vote.

Same login, store and rules as the ranking page: every handler takes the reviewer from the login
session, the conversation id lives in server-side state and the store refuses anyone else's,
model and reviewer text goes through the sanitised renderer (render.py, page.inert). Generation
runs in the engine's one worker thread (models.ArenaEngine), never on the request thread; this
handler only streams what it has, so reviewers ranking on the other tab wait on nothing here.
"""

from __future__ import annotations

import html
import math

import gradio as gr

from labeling_ui import who
from labeling_ui.arena.leaderboard import leaderboard, to_elo
from labeling_ui.arena.models import ArenaEngine
from labeling_ui.arena.store import ArenaStore, Conversation
from labeling_ui.page import inert, status_html, unavailable_text
from labeling_ui.render import chat_html
from labeling_ui.tasks import StoreUnavailable, SubmitError

OUTCOME_WORDS = {"a": "A is better", "b": "B is better", "tie": "A tie", "both_bad": "Both are bad"}
STREAM_EVERY_S = 0.25


def side_html(conv: Conversation | None, side: str, message: str = "", partial: str | None = None) -> str:
    """One side's conversation: its own history (plus the turn being answered), and its name once revealed."""
    label = f"Model {side.upper()}"
    if conv is not None and conv.revealed:
        label += f": {getattr(conv, 'model_' + side)}"
    turns = conv.history(side) if conv is not None else []
    if message:
        turns = turns + [{"role": "user", "content": message}]
        turns += [{"role": "assistant", "content": partial if partial else "…"}]
    body = chat_html(turns) if turns else '<div class="arena-empty">Write a message below: both models answer it.</div>'
    return inert(f'<div class="arena-side arena-{side}"><div class="card-label">{html.escape(label)}</div>{body}</div>')


def board_html(arena: ArenaStore) -> str:
    votes = arena.votes()
    if not votes:
        return '<div class="arena-empty">No votes yet.</div>'
    board = leaderboard(votes)
    rows = []
    for rank, s in enumerate(board.standings, 1):
        ci = ("–" if not (math.isfinite(s.low) and math.isfinite(s.high))
              else f"{to_elo(s.low):.0f} – {to_elo(s.high):.0f}")
        rows.append(f"<tr><td>{rank}</td><td>{html.escape(s.model)}</td><td>{to_elo(s.strength):.0f}</td><td>{ci}</td>"
                    f"<td>{s.votes}</td><td>{s.wins} / {s.losses} / {s.ties}</td></tr>")
    return inert(f'<table class="arena-board"><thead><tr><th>#</th><th>model</th><th>rating</th><th>95% interval</th>'
                 f'<th>votes</th><th>won / lost / tied</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
                 f'<div class="arena-note">{len(votes)} votes. Bradley-Terry strengths on an Elo-like scale '
                 f'(anchor {html.escape(board.anchor or "-")} = 1000), bootstrap 95% intervals; both-bad votes count '
                 "as votes but not in the fit.</div>")


def mine_html(arena: ArenaStore, name: str) -> str:
    convs = arena.conversations(name, limit=10)
    if not convs:
        return '<div class="arena-empty">No conversations yet.</div>'
    items = []
    for c in convs:
        who_ = f"{html.escape(c.model_a)} vs {html.escape(c.model_b)}" if c.revealed else "names hidden until revealed"
        first = html.escape(c.turns[0].message[:80]) if c.turns else "(no message yet)"
        items.append(f"<li>#{c.id} · {len(c.turns)} turn{'' if len(c.turns) == 1 else 's'} · {who_} · {first}</li>")
    return inert(f'<ul class="arena-mine">{"".join(items)}</ul>')


def build_arena_tab(arena: ArenaStore, engine: ArenaEngine, suggestions: list[str]):
    """The tab's components, inside an open gr.Tab; returns (on_select, outputs) for the tab's select event."""
    conv_id, turn_id = gr.State(None), gr.State(None)  # server-side, per page
    gr.Markdown("Chat with two anonymous models of this run. Both answer every message; vote on each turn, "
                "then reveal who they were (that ends the conversation). Your votes train the next reward model.",
                elem_id="arena-intro")
    with gr.Row(equal_height=True):
        side_a = gr.HTML(side_html(None, "a"), elem_id="arena-a")
        side_b = gr.HTML(side_html(None, "b"), elem_id="arena-b")
    with gr.Row():
        message = gr.Textbox(label="Your message", lines=2, max_lines=8, scale=4, elem_id="arena-message")
        suggestion = gr.Dropdown(suggestions, value=None, label="…or a suggested prompt", scale=2,
                                 elem_id="arena-suggestion")
    send = gr.Button("Send to both models", variant="primary", elem_id="arena-send")
    with gr.Row():
        votes = {o: gr.Button(w, interactive=False, elem_id=f"arena-vote-{o.replace('_', '-')}") for o, w in
                 OUTCOME_WORDS.items()}
    reason = gr.Textbox(label="Why? (optional)", max_lines=3, elem_id="arena-reason")
    with gr.Row():
        reveal = gr.Button("Reveal the models (ends this conversation)", interactive=False, elem_id="arena-reveal")
        new = gr.Button("New conversation", elem_id="arena-new")
    status = gr.HTML("", elem_id="arena-status")
    with gr.Accordion("Leaderboard", open=True):
        board = gr.HTML("", elem_id="arena-leaderboard")
    with gr.Accordion("Your conversations", open=False):
        mine = gr.HTML("", elem_id="arena-mine")

    vote_buttons = list(votes.values())
    chat_outputs = [conv_id, turn_id, side_a, side_b, message, send, *vote_buttons, reveal, status]

    def chat_view(conv, tid, a, b, msg=gr.skip(), sending=True, voting=False, revealing=False, note=""):
        return [conv.id if conv else None, tid, a, b, msg, gr.update(interactive=sending),
                *[gr.update(interactive=voting)] * len(vote_buttons), gr.update(interactive=revealing), note]

    def on_send(request: gr.Request, cid, tid, text):
        name = who.username(request)
        text = (text or "").strip()
        if not text:
            yield [gr.skip()] * (len(chat_outputs) - 1) + [status_html("warn", "Write a message first.")]
            return
        if tid is not None:
            yield [gr.skip()] * (len(chat_outputs) - 1) + [status_html("warn", "Vote on these answers first.")]
            return
        conv = None
        try:
            conv = arena.conversation(cid, name) if cid is not None else None
            if conv is None or conv.revealed or len(conv.turns) >= arena.max_turns:
                conv = arena.start(name)
            conv, msgs_a, msgs_b = arena.prepare_turn(conv.id, name, text)
            job = engine.submit(msgs_a, msgs_b, conv.model_a, conv.model_b)
        except (SubmitError, StoreUnavailable) as err:  # ArenaError, QueueFull: their messages are for the reviewer
            # A conversation started here stays the page's: sending again reuses it, not a new empty one.
            yield [conv.id if conv is not None else gr.skip()] + [gr.skip()] * (len(chat_outputs) - 2) \
                + [status_html("warn", str(err))]
            return
        waiting = "Both models are writing…"
        for state in job.stream(timeout=600, min_interval_s=STREAM_EVERY_S):
            note = f"Waiting for the models: {state.position} ahead of you." if state.position else waiting
            yield chat_view(conv, None, side_html(conv, "a", text, state.a.text), side_html(conv, "b", text, state.b.text),
                            "", sending=False, note=status_html("info", note))
        try:
            done = job.result(timeout=5)
            turn = arena.add_turn(conv.id, name, text, state=done,
                                  generation={"max_new_tokens": engine.max_new_tokens,
                                              "temperature": engine.temperature, "top_p": engine.top_p})
        except SubmitError as err:
            yield chat_view(conv, None, side_html(conv, "a"), side_html(conv, "b"), text,
                            note=status_html("warn", f"Nothing was saved: {err}"))
            return
        except StoreUnavailable as err:  # the message stays in its box, to send again
            yield chat_view(conv, None, side_html(conv, "a"), side_html(conv, "b"), text,
                            note=status_html("warn", unavailable_text(err, "answers", again_is_safe=False)))
            return
        try:
            conv = arena.conversation(conv.id, name)
        except StoreUnavailable as err:  # the turn is stored: its answers stay on screen, to vote on
            a, b = side_html(conv, "a", text, done.a.text), side_html(conv, "b", text, done.b.text)
            yield chat_view(conv, turn.id, a, b, "", sending=False, voting=True,
                            note=status_html("warn", f"The answers are saved. {err}"))
            return
        yield chat_view(conv, turn.id, side_html(conv, "a"), side_html(conv, "b"), "", sending=False, voting=True,
                        note=status_html("info", "Which answer is better? Vote, then write again or reveal the models."))

    def voter(outcome: str):
        def on_vote(request: gr.Request, cid, tid, why):
            name = who.username(request)
            if tid is None:
                return [gr.skip()] * (len(chat_outputs) - 1) + [status_html("warn", "Nothing to vote on yet.")]
            try:
                arena.vote(tid, name, outcome, why or "")
                conv = arena.conversation(cid, name)
            except SubmitError as err:
                return [gr.skip()] * (len(chat_outputs) - 1) + [status_html("warn", f"Nothing was saved: {err}")]
            except StoreUnavailable as err:  # one vote per turn: voting again never counts twice
                return [gr.skip()] * (len(chat_outputs) - 1) + [status_html("warn", unavailable_text(err, "vote"))]
            more = len(conv.turns) < arena.max_turns
            note = f"Vote saved ({OUTCOME_WORDS[outcome]}). " + (
                "Write another message to both, or reveal the models." if more else "That was the last turn: reveal "
                                                                                    "the models.")
            return chat_view(conv, None, side_html(conv, "a"), side_html(conv, "b"), sending=more, revealing=True,
                             note=status_html("ok", note))
        on_vote.__name__ = f"on_arena_vote_{outcome}"
        return on_vote

    def on_reveal(request: gr.Request, cid, tid):
        name = who.username(request)
        if cid is None or tid is not None:
            return [gr.skip()] * (len(chat_outputs) - 1) + [status_html("warn", "Vote on the last answers first.")]
        try:
            conv = arena.reveal(cid, name)
        except (SubmitError, StoreUnavailable) as err:
            return [gr.skip()] * (len(chat_outputs) - 1) + [status_html("warn", str(err))]
        return chat_view(conv, None, side_html(conv, "a"), side_html(conv, "b"), note=status_html(
            "ok", f"A was {conv.model_a}, B was {conv.model_b}. Send a message to start a new conversation."))

    def on_new(request: gr.Request):
        who.username(request)
        return chat_view(None, None, side_html(None, "a"), side_html(None, "b"), "", note="")

    def on_select(request: gr.Request):
        name = who.username(request)
        try:
            return board_html(arena), mine_html(arena, name)
        except StoreUnavailable as err:
            return f'<div class="arena-empty">{html.escape(str(err))}</div>', gr.skip()

    opts = {"api_visibility": "private"}
    suggestion.change(lambda s: s or gr.skip(), suggestion, message, **opts)
    sent = send.click(on_send, [conv_id, turn_id, message], chat_outputs, concurrency_limit=16, **opts)
    sent.then(on_select, None, [board, mine], **opts)
    for outcome, button in votes.items():
        button.click(voter(outcome), [conv_id, turn_id, reason], chat_outputs, **opts) \
            .then(on_select, None, [board, mine], **opts).then(lambda: "", None, reason, **opts)
    reveal.click(on_reveal, [conv_id, turn_id], chat_outputs, **opts).then(on_select, None, [board, mine], **opts)
    new.click(on_new, None, chat_outputs, **opts)
    return on_select, [board, mine]
