"""Model and reviewer text as safe HTML for the ranking page.

Why this is careful: gr.HTML puts what it is given into the page as is, and the text comes from
models and crowd workers. Two layers: markdown-it with raw HTML off, images as text and links only
for http/https/mailto; then nh3 (ammonia) with an explicit allow-list, in case the first one slips.
Chat turns are built as structure (one bubble per message), never parsed out of the text.
"""

from __future__ import annotations

import html
import re
from typing import Any

import nh3
from markdown_it import MarkdownIt

__all__ = ["markdown_html", "chat_html"]

# Absolute links only; relative, protocol-relative and every other scheme are left as text.
_LINK_OK = re.compile(r"(?:https?://|mailto:)", re.IGNORECASE)
_LANG_CLASS = re.compile(r"language-[A-Za-z0-9_+#.\-]{1,40}")
_LINK_REL = "nofollow noopener noreferrer"

_TAGS = {
    "p", "br", "pre", "code", "em", "strong", "del", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
    "a", "hr", "span",
}
# `rel` is not listed: nh3 sets it itself from link_rel (and refuses both at once).
# `start`: an answer "4." or "2024. A good year" is an ordered list in markdown; without its start it
# would read "1." (and two such answers would look alike).
_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "ol": {"start"}}
_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if attr == "class":
        return value if tag == "code" and _LANG_CLASS.fullmatch(value) else None
    if attr == "start":
        return value if value.isdigit() and len(value) <= 9 else None
    return value


_CLEANER = nh3.Cleaner(
    tags=_TAGS,
    clean_content_tags={"script", "style"},
    attributes=_ATTRIBUTES,
    attribute_filter=_attribute_filter,
    link_rel=_LINK_REL,
    tag_attribute_values={"a": {"target": {"_blank"}}},
    set_tag_attribute_values={"a": {"target": "_blank"}},
    url_schemes={"http", "https", "mailto"},
    url_relative="deny",
    strip_comments=True,
)


def _render_image(self, tokens, idx, options, env) -> str:
    # Never an <img>: no remote image may load on the reviewer's page. Shown as escaped text.
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env)
    src = token.attrGet("src") or ""
    return "<span>" + html.escape(f"[image: {alt}]({src})") + "</span>"


def _render_link_open(self, tokens, idx, options, env) -> str:
    token = tokens[idx]
    token.attrSet("rel", _LINK_REL)
    token.attrSet("target", "_blank")
    return self.renderToken(tokens, idx, options, env)


def _make_md() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = lambda url: bool(_LINK_OK.match(url.strip()))
    md.add_render_rule("image", _render_image)
    md.add_render_rule("link_open", _render_link_open)
    md.add_render_rule("s_open", lambda self, tokens, idx, options, env: "<del>")
    md.add_render_rule("s_close", lambda self, tokens, idx, options, env: "</del>")
    return md


_MD = _make_md()


def _plain_html(text: str) -> str:
    return "<p>" + html.escape(text).replace("\n", "<br>\n") + "</p>"


def markdown_html(text: str) -> str:
    """Markdown to sanitised HTML; "" for empty or blank text. Never raises."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    # Lone surrogates cannot cross into nh3 (Rust strings): replace them first.
    text = text.encode("utf-8", "replace").decode("utf-8")
    if not text.strip():
        return ""
    try:
        rendered = _MD.render(text)
    except Exception:  # noqa: BLE001 - a rendering bug must not take the page down
        rendered = _plain_html(text)
    try:
        return _CLEANER.clean(rendered)
    except Exception:  # noqa: BLE001
        return _plain_html(text)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, (list, tuple)):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                if part.get("type", "text") == "text":
                    texts.append(str(part.get("text") or ""))
                else:  # e.g. an image part: say it is there, never load it
                    texts.append(f"[{part.get('type')} part]")
        return "\n\n".join(t for t in texts if t)
    return str(content)


def _turn_html(role: Any, content: Any) -> str:
    key = role.lower() if isinstance(role, str) else ""
    if key in _ROLES:
        cls, label = f"turn-{key}", _ROLES[key]
    else:  # the role name is text only: it never reaches a class attribute
        cls, label = "turn-other", html.escape(str(role if role is not None else "unknown"))
    body = markdown_html(_content_text(content)) or '<span class="empty">(empty)</span>'
    return (
        f'<div class="turn {cls}"><div class="turn-role">{label}</div>'
        f'<div class="turn-body md">{body}</div></div>'
    )


def chat_html(prompt: str | list) -> str:
    """A prompt (a plain string, or a list of chat messages) as one bubble per turn. Never raises."""
    if isinstance(prompt, (list, tuple)):
        turns = []
        for message in prompt:
            if isinstance(message, dict):
                turns.append(_turn_html(message.get("role"), message.get("content")))
            else:
                turns.append(_turn_html("user", message))
    else:
        turns = [_turn_html("user", prompt)]
    return '<div class="chat">' + "".join(turns) + "</div>"
