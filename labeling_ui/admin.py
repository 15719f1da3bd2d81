"""The admin tab: progress, reviewer reliability, the flag and written-answer review queues,
reviewer accounts, the audit log, and the export.

Every handler starts with `who.admin` (the tab being hidden from reviewers is cosmetic), and
every text a reviewer or a model wrote reaches the page escaped (`escape`) or as a table cell,
which Gradio renders as text.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from labeling_ui import stats, who
from labeling_ui.api.admin_tab import build_tokens_admin
from labeling_ui.export import export
from labeling_ui.reliability import assess
from labeling_ui.schema import APPROVED, CLEARED, CONFIRMED, REJECTED
from labeling_ui.store import LabelStore, answer_label
from labeling_ui.text import escape
from ranktune.errors import InputError

RELIABILITY_COLUMNS = ["reviewer", "rankings", "reliability", "weight", "gold accuracy", "gold pairs",
                       "agreement (kappa)", "median s / item", "ties", "shown order", "warnings"]
FLAG_COLUMNS = ["item", "flags", "flagged by", "comments", "prompt"]
DEMO_COLUMNS = ["id", "item", "reviewer", "prompt", "written answer"]
ACCOUNT_COLUMNS = ["reviewer", "role", "status"]
AUDIT_COLUMNS = ["when (UTC)", "who", "action", "target"]
COMMENT_COLUMNS = ["item", "reviewer", "comment"]
PRIVATE = {"api_visibility": "private"}


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def _cut(text: str, n: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 1] + "…"


def reliability_rows(store: LabelStore, rankings: list[dict]) -> list[list]:
    """The reliability table's rows for `rankings` (store.rankings(), gold items' among them)."""
    assessment = assess([r for r in rankings if not r["gold"]], [r for r in rankings if r["gold"]], store.gold())
    disabled = {name for name, _, off in store.reviewer_names() if off}
    return [[x.reviewer + (" (disabled)" if x.reviewer in disabled else ""), x.rankings, _r(x.reliability),
             _r(x.weight), _r(x.gold_accuracy), x.gold_pairs, _r(x.agreement), _r(x.median_seconds, 1),
             _r(x.tie_share, 2), _r(x.shown_order_share, 2), "; ".join(x.warnings)] for x in assessment.reviewers]


def item_html(title: str, prompt: str, answers: list[str], comments: list[dict], extra: str = "") -> str:
    parts = [f'<div class="review-card"><div class="card-label">{escape(title)}</div>',
             f'<div class="prompt-text">{escape(prompt)}</div>']
    for i, text in enumerate(answers):
        parts.append(f'<div class="review-answer"><span class="answer-label">{answer_label(i)}</span>'
                     f'<div class="answer-text">{escape(text)}</div></div>')
    if extra:
        parts.append(extra)
    if comments:
        parts.append('<div class="card-label">Comments</div><ul class="review-comments">'
                     + "".join(f"<li><b>{escape(c['reviewer'])}</b>: {escape(c['text'])}</li>" for c in comments)
                     + "</ul>")
    return "".join(parts) + "</div>"


def build_admin(store: LabelStore, export_dir: Path, arena=None):
    """The tab's components, inside the caller's `gr.Tab`. Returns (refresh function, its outputs)
    for the caller to run when the tab is opened. `arena` (an ArenaStore) adds the Arena sub-tab
    (labeling_ui/arena/admin.py), refreshed by the same button and when it is opened."""
    refresh = gr.Button("Refresh", size="sm", elem_id="admin-refresh")
    with gr.Tabs():
        with gr.Tab("Overview", id="admin-overview"):
            summary = gr.Markdown("", elem_id="admin-summary")
            table = gr.Dataframe(headers=stats.REVIEWER_COLUMNS, interactive=False, elem_id="admin-table")
            gr.Markdown("#### Reviewer reliability\nReliability: how often a reviewer's comparisons follow the "
                        "panel's consensus (Crowd-BT: 1 = always, 0.5 = a coin, below = reversed); weight = "
                        "max(0, 2 × reliability − 1), what `--label_weighting reliability` trains with. Gold "
                        "accuracy counts a tie as half. Agreement: Cohen's kappa with the other reviewers' "
                        "consensus (0 = chance). Click a column to sort.", elem_id="reliability-help")
            reliability = gr.Dataframe(headers=RELIABILITY_COLUMNS, interactive=False, elem_id="reliability-table", wrap=True,
                                       datatype=["str", "number", "number", "number", "number", "number", "number",
                                                 "number", "number", "number", "str"],
                                       column_widths=["11%", "7%", "8%", "7%", "8%", "7%", "9%", "8%", "6%", "8%",
                                                      "21%"])
            chart = gr.Plot(label="Throughput", elem_id="admin-plot")
        with gr.Tab("Flags", id="admin-flags"):
            flag_note = gr.Markdown("", elem_id="flag-summary")
            flag_table = gr.Dataframe(headers=FLAG_COLUMNS, interactive=False, elem_id="flag-table")
            with gr.Row():
                flag_item = gr.Number(label="Item", precision=0, elem_id="flag-item", scale=0, min_width=120)
                flag_reason = gr.Textbox(label="Note (optional)", elem_id="flag-note", scale=2)
                show_flag = gr.Button("Show", elem_id="flag-show", scale=0)
                confirm = gr.Button("Confirm: out of training", variant="stop", elem_id="flag-confirm", scale=1)
                clear = gr.Button("Clear: count it again", elem_id="flag-clear", scale=1)
            flag_detail = gr.HTML("", elem_id="flag-detail")
        with gr.Tab("Written answers", id="admin-demos"):
            demo_note = gr.Markdown("", elem_id="demo-summary")
            demo_table = gr.Dataframe(headers=DEMO_COLUMNS, interactive=False, elem_id="demo-table")
            with gr.Row():
                demo_id = gr.Number(label="Written answer id", precision=0, elem_id="demo-id", scale=0, min_width=160)
                show_demo = gr.Button("Show", elem_id="demo-show", scale=0)
                approve = gr.Button("Approve as training data", variant="primary", elem_id="demo-approve", scale=1)
                reject = gr.Button("Reject", elem_id="demo-reject", scale=1)
            demo_detail = gr.HTML("", elem_id="demo-detail")
        with gr.Tab("Comments", id="admin-comments"):
            gr.Markdown("What reviewers wrote about items (exported in `comments.jsonl`). Flags → Show gives an "
                        "item with its answers.")
            comment_table = gr.Dataframe(headers=COMMENT_COLUMNS, interactive=False, elem_id="comment-table", wrap=True,
                                         column_widths=["8%", "14%", "78%"])
        with gr.Tab("Reviewers", id="admin-reviewers"):
            accounts = gr.Dataframe(headers=ACCOUNT_COLUMNS, interactive=False, elem_id="account-table")
            with gr.Row():
                account = gr.Textbox(label="Reviewer name", elem_id="account-name", scale=2)
                disable = gr.Button("Disable (ends their sessions)", variant="stop", elem_id="account-disable", scale=1)
                enable = gr.Button("Enable", elem_id="account-enable", scale=1)
            account_msg = gr.Markdown("", elem_id="account-msg")
            audit = gr.Dataframe(headers=AUDIT_COLUMNS, interactive=False, elem_id="audit-table", label="Audit log")
        with gr.Tab("Export", id="admin-export"):
            with gr.Row():
                include_flagged = gr.Checkbox(label="Include items waiting for a flag review", value=False)
                exclude_disabled = gr.Checkbox(label="Leave out disabled reviewers", value=False)
                min_reliability = gr.Number(label="Leave out reviewers with reliability under (empty = keep all)",
                                            value=None, elem_id="export-min-reliability")
            export_btn = gr.Button("Export rankings", variant="primary", elem_id="export-btn")
            export_msg = gr.Markdown("", elem_id="export-msg")
            export_files = gr.File(label="Exported files", file_count="multiple", interactive=False)
        with gr.Tab("API tokens", id="admin-tokens") as tokens_tab:
            tokens_view, tokens_outputs = build_tokens_admin(store)
        if arena is not None:
            from labeling_ui.arena.admin import build_arena_admin

            with gr.Tab("Arena", id="admin-arena") as arena_tab:
                arena_view, arena_outputs = build_arena_admin(store, arena)

    def flag_rows():
        queue = store.flag_queue()
        return ([[q["item_id"], ", ".join(q["flags"]), ", ".join(q["flagged_by"]), len(q["comments"]),
                  _cut(q["prompt"])] for q in queue],
                f"**{len(queue)} flagged items wait for a decision.** Until then they are served to nobody and "
                "left out of the export. Confirm takes an item out of training for good; clear lets its rankings "
                "count again and serves it again.")

    def demo_rows():
        rows = [d for d in store.demonstration_rows() if d["decision"] is None]
        return ([[d["id"], d["item_id"], d["reviewer"], _cut(d["prompt_text"], 80), _cut(d["completion"])]
                 for d in rows],
                f"**{len(rows)} written answers wait for approval.** Only approved ones are exported as SFT data "
                "(with a pseudonymous author id); none from an item flagged unsafe.")

    def account_rows():
        return [[name, "admin" if is_admin else "reviewer", "disabled" if off else "active"]
                for name, is_admin, off in store.reviewer_names()]

    def audit_rows():
        return [[e["at"].strftime("%Y-%m-%d %H:%M:%S"), e["actor"], e["action"], e["target"]]
                for e in store.audit_log()]

    def overview(request: gr.Request):
        who.admin(store, request)
        rankings, subs, now = store.rankings(), store.submissions(), store.clock()
        agree = stats.agreement([r for r in rankings if not r["gold"]])
        remaining = {r.name: store.progress(r.name).remaining for r in store.accounts.all()}
        rows = stats.reviewer_table(subs, remaining, agree["per_reviewer"], now)
        tp, counts = stats.throughput(subs, now), store.counts()
        fmt = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
        ranked_by = sum(1 for row in rows if row[1])  # the table also lists reviewers yet to rank anything
        text = (f"**{counts['items']} items**, {counts['rankings']} rankings by {ranked_by} reviewers, "
                f"overlap {store.overlap}; {counts['open_claims']} items on someone's screen now; "
                f"{len(store.gold())} gold items (one claim in {store.gold_rate or '–'}).  \n"
                f"Throughput: {tp['last_hour']} in the last hour, {tp['last_day']} in the last day, "
                f"{tp['per_hour_overall'] or 0} per hour overall.  \n"
                f"Agreement on {agree['items_compared']} items ranked by 2+ reviewers "
                f"({agree['reviewer_pairs']} reviewer pairs): pairwise **{fmt(agree['pairwise_agreement'])}**, "
                f"Kendall's tau-b **{fmt(agree['kendall_tau'])}**, Krippendorff's alpha (ordinal) "
                f"**{fmt(agree['krippendorff_alpha'])}**.")
        flags, flag_text = flag_rows()
        demos, demo_text = demo_rows()
        comments = [[c["item_id"], c["reviewer"], c["text"]] for c in store.comments()]
        return (text, rows, reliability_rows(store, rankings), stats.progress_figure(subs), flags, flag_text, demos,
                demo_text, comments, account_rows(), audit_rows())

    def show_flagged(request: gr.Request, item):
        who.admin(store, request)
        found = [q for q in store.flag_queue() if q["item_id"] == item]
        if not found:
            return "<p class='muted'>That item is not waiting for a flag review.</p>"
        q = found[0]
        extra = (f'<div class="card-label">Flags: {escape(", ".join(q["flags"]))} · by '
                 f'{escape(", ".join(q["flagged_by"]))}</div>')
        return item_html(f"Item #{q['item_id']} · round {q['round']}", q["prompt"], q["answers"], q["comments"], extra)

    def decision(name: str, apply, queue, missing: str, said: str):
        """A handler for an admin's decision on one queued thing (its number typed in): apply it, show the
        queue again. `apply(admin, number, *inputs)`; `queue()` -> (rows, text); `said` has {} for the number."""

        def handler(request: gr.Request, number, *inputs):
            user = who.admin(store, request)
            if number is None:
                return gr.skip(), gr.skip(), f"<p class='muted'>{missing}</p>"
            try:
                apply(user.name, int(number), *inputs)
            except InputError as err:  # no such item or written answer, nothing flagged
                return gr.skip(), gr.skip(), f"<p class='error'>{escape(str(err))}</p>"
            rows, text = queue()
            return rows, text, f"<p class='ok'>{said.format(int(number))}</p>"

        handler.__name__ = name
        return handler

    def show_demo_row(request: gr.Request, demo):
        who.admin(store, request)
        found = [d for d in store.demonstration_rows() if d["id"] == demo]
        if not found:
            return "<p class='muted'>No written answer with that id.</p>"
        d = found[0]
        extra = (f'<div class="card-label">Written by {escape(d["reviewer"])} · '
                 f'{escape(d["decision"] or "waiting for review")}</div>'
                 f'<div class="answer-text written">{escape(d["completion"])}</div>')
        return item_html(f"Item #{d['item_id']}", d["prompt_text"], [], [], extra)

    def set_disabled(disabled: bool):
        def handler(request: gr.Request, name):
            user = who.admin(store, request)
            name = (name or "").strip()
            if disabled and name == user.name:
                return gr.skip(), gr.skip(), "⚠️ You cannot disable your own account here."
            try:
                store.set_disabled(user.name, name, disabled)
            except InputError as err:  # no such reviewer
                return gr.skip(), gr.skip(), f"⚠️ {escape(str(err))}"
            said = "disabled: their sessions are ended" if disabled else "enabled"
            return account_rows(), audit_rows(), f"**{escape(name)}** {said}."

        handler.__name__ = f"admin_{'disable' if disabled else 'enable'}_reviewer"
        return handler

    def do_export(request: gr.Request, flagged: bool, without_disabled: bool, threshold):
        user = who.admin(store, request)
        try:
            s = export(store, export_dir, include_flagged=flagged, exclude_disabled=without_disabled,
                       min_reliability=threshold, actor=user.name)
        except Exception as err:  # InputError (nothing to export) or a disk problem: show it
            return f"⚠️ {err}", None
        held = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in s["rankings_held_out"].items() if n)
        files = [str(export_dir / f) for f in ("rankings.jsonl", "pairs.jsonl", "consensus.jsonl",
                                                "ratings.jsonl", "demonstrations.jsonl", "comments.jsonl",
                                                "summary.json")]
        notes = "".join(f"  \n{escape(n)}" for n in s["notes"])
        return (f"Exported {s['rankings']} rankings, {s['pairs']} pairs, {s['consensus_rankings']} consensus rankings "
                f"and {s['demonstrations']} approved written answers to `{export_dir}`. Held out: {held or 'nothing'}."
                + notes), files

    outputs = [summary, table, reliability, chart, flag_table, flag_note, demo_table, demo_note, comment_table, accounts,
               audit]
    refresh.click(overview, None, outputs, api_name="admin_view", api_visibility="undocumented")
    show_flag.click(show_flagged, [flag_item], [flag_detail], api_name="admin_show_flag", **PRIVATE)
    for button, verdict, said in ((confirm, CONFIRMED, "Item #{} confirmed: out of training."),
                                  (clear, CLEARED, "Item #{} cleared: counts again.")):
        fn = decision(f"admin_flags_{verdict}", lambda admin, item, note, verdict=verdict: store.review_flags(
            admin, item, verdict, note or ""), flag_rows, "Type the item number first.", said)
        button.click(fn, [flag_item, flag_reason], [flag_table, flag_note, flag_detail], api_name=fn.__name__, **PRIVATE)
    show_demo.click(show_demo_row, [demo_id], [demo_detail], api_name="admin_show_demonstration", **PRIVATE)
    for button, verdict in ((approve, APPROVED), (reject, REJECTED)):
        fn = decision(f"admin_demonstration_{verdict}", lambda admin, demo, verdict=verdict: store.review_demonstration(
            admin, demo, verdict), demo_rows, "Type the written answer's id first.", f"Written answer {{}} {verdict}.")
        button.click(fn, [demo_id], [demo_table, demo_note, demo_detail], api_name=fn.__name__, **PRIVATE)
    for button, off in ((disable, True), (enable, False)):
        fn = set_disabled(off)
        button.click(fn, [account], [accounts, audit, account_msg], api_name=fn.__name__, **PRIVATE)
    export_btn.click(do_export, [include_flagged, exclude_disabled, min_reliability], [export_msg, export_files],
                     api_name="admin_export", api_visibility="undocumented")
    refresh.click(tokens_view, None, tokens_outputs, api_name="admin_tokens_view", **PRIVATE)
    tokens_tab.select(tokens_view, None, tokens_outputs, **PRIVATE)
    if arena is not None:
        refresh.click(arena_view, None, arena_outputs, api_name="admin_arena_view", **PRIVATE)
        arena_tab.select(arena_view, None, arena_outputs, **PRIVATE)
    return overview, outputs
