"""Who is calling an event handler: the reviewer of the login session (server.py puts it on the
request), checked against the store on every call, so a disabled account is refused at once."""

from __future__ import annotations

import gradio as gr

from labeling_ui.accounts import ReviewerInfo
from labeling_ui.store import LabelStore


def username(request: gr.Request) -> str:
    """The signed-in reviewer's name (from the login session); the store checks it is a live account."""
    name = getattr(request, "username", None)
    if not name:
        raise gr.Error("Not logged in.")
    return name


def reviewer(store: LabelStore, request: gr.Request) -> ReviewerInfo:
    user = store.accounts.get(username(request))
    if user is None:
        raise gr.Error("Not logged in.")
    return user


def admin(store: LabelStore, request: gr.Request) -> ReviewerInfo:
    """Admin handlers call this first: the admin tab being hidden from reviewers is only cosmetic."""
    user = reviewer(store, request)
    if not user.is_admin:
        raise gr.Error("Admins only.")
    return user
