"""Reviewer and model text on the page: always as text, never as markup."""

from __future__ import annotations

import html


def escape(text: str) -> str:
    """Model text as inert HTML text: tags, and the template syntax gr.HTML fills in, neutralised."""
    out = html.escape(text, quote=True)
    for ch, entity in (("$", "&#36;"), ("{", "&#123;"), ("}", "&#125;"), ("`", "&#96;")):
        out = out.replace(ch, entity)
    return out
