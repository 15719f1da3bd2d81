"""The admin tab's "API tokens" sub-tab: every token (account, label, created, last used,
revoked), make one for an account (shown once, here only), revoke one by id. The same store
calls as `python -m labeling_ui create-token / list-tokens / revoke-token`; every handler
checks the caller is an admin first (who.admin).

A new token goes into a read-only textbox with a copy button, never into the table or the audit
log, and is gone from the page at the next refresh: only its hash is kept.
"""

from __future__ import annotations

import gradio as gr

from labeling_ui import who
from labeling_ui.text import escape
from ranktune.errors import InputError

TOKEN_COLUMNS = ["id", "account", "role", "label", "token starts", "created (UTC)", "by", "last used", "state"]
PRIVATE = {"api_visibility": "private"}


def _when(t) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if t else ""


def build_tokens_admin(store):
    """The sub-tab's components, inside the caller's `gr.Tab`; returns (refresh function, its outputs)."""
    gr.Markdown("Programs (a generation job, a notebook, your own front end) call the JSON API at `/api/v1` with "
                "`Authorization: Bearer <token>`; a token acts with its account's role. The API's OpenAPI page is "
                "[/api/v1/docs](/api/v1/docs). See docs/api.md.", elem_id="token-help")
    table = gr.Dataframe(headers=TOKEN_COLUMNS, interactive=False, elem_id="token-table")
    with gr.Row():
        account = gr.Textbox(label="Account", elem_id="token-account", scale=2)
        label = gr.Textbox(label="What it is for", placeholder="generation job", elem_id="token-label", scale=2)
        create = gr.Button("Create token", variant="primary", elem_id="token-create", scale=1)
    new_token = gr.Textbox(label="New token (shown only now: copy it)", interactive=False, buttons=["copy"],
                           elem_id="token-new", visible=False)
    with gr.Row():
        token_id = gr.Number(label="Token id", precision=0, elem_id="token-id", scale=0, min_width=120)
        revoke = gr.Button("Revoke (stops at once)", variant="stop", elem_id="token-revoke", scale=1)
    message = gr.Markdown("", elem_id="token-msg")

    def rows():
        return [[t.id, t.reviewer, "admin" if t.is_admin else "reviewer", t.label, t.shown + "…", _when(t.created_at),
                 t.created_by, _when(t.last_used_at) or "never", "revoked " + _when(t.revoked_at) if t.revoked_at
                 else "live"] for t in store.tokens.all()]

    def view(request: gr.Request):
        who.admin(store, request)
        return rows(), gr.update(value="", visible=False)

    def on_create(request: gr.Request, name, what):
        user = who.admin(store, request)
        try:
            info, token = store.tokens.create((name or "").strip(), what or "", user.name)
        except InputError as err:
            return gr.skip(), gr.update(value="", visible=False), f"⚠️ {escape(str(err))}"
        return rows(), gr.update(value=token, visible=True), (
            f"Token {info.id} made for **{escape(info.reviewer)}** ({'admin' if info.is_admin else 'reviewer'}). "
            "Copy it now: it is not stored and will not be shown again.")

    def on_revoke(request: gr.Request, number):
        user = who.admin(store, request)
        if number is None:
            return gr.skip(), "⚠️ Type the token's id first."
        try:
            info = store.tokens.revoke(int(number), user.name)
        except InputError as err:
            return gr.skip(), f"⚠️ {escape(str(err))}"
        return rows(), f"Token {info.id} of **{escape(info.reviewer)}** revoked: it stops working at once."

    create.click(on_create, [account, label], [table, new_token, message], api_name="admin_create_token", **PRIVATE)
    revoke.click(on_revoke, [token_id], [table, message], api_name="admin_revoke_token", **PRIVATE)
    return view, [table, new_token]
