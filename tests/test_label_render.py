"""labeling_ui.render: markdown and chat turns become HTML that gr.HTML can show as is. Markdown
works (bold, code, tables, links); every XSS payload stays inert (checked by parsing the output,
not only by substrings); no image ever loads; turns are structure, so a "assistant:" line in a
user's message stays in that user's bubble; nothing raises on any string."""

from __future__ import annotations

import random
import re
from html.parser import HTMLParser

import pytest

from labeling_ui.render import chat_html, markdown_html

SAFE_SCHEMES = ("http://", "https://", "mailto:")


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> _Collect:
    p = _Collect()
    p.feed(html)
    p.close()
    return p


def assert_inert(html: str) -> None:
    """No script, no event handler, no image or frame, only http/https/mailto links."""
    assert "<script" not in html.lower()
    assert not raw_event_handlers(html)
    for tag, attrs in parse(html).tags:
        assert tag not in {"script", "img", "iframe", "object", "embed", "style", "svg", "math",
                           "form", "input", "link", "meta", "base", "video", "audio", "source"}, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name not in {"src", "style", "srcset", "formaction", "srcdoc"}, (tag, name)
            if name == "href":
                assert value is not None and value.lower().startswith(SAFE_SCHEMES), value
                assert "javascript:" not in value.lower()
            if name == "class":
                assert tag == "code" and re.fullmatch(r"language-[\w+#.\-]+", value or ""), value


def raw_event_handlers(html: str) -> list[str]:
    """` onxxx=` inside any raw tag, quoted attribute values taken out first (escaped text such as
    `&lt;img onerror=...&gt;` is no tag, and a title may say "onmouseover=" harmlessly)."""
    found = []
    for tag in re.findall(r"<[^>]*>?", html):
        bare = re.sub(r"\"[^\"]*\"|'[^']*'", '""', tag)
        found += re.findall(r"[\s/]on\w+\s*=", bare, re.IGNORECASE)
    return found


def links(html: str) -> list[dict[str, str | None]]:
    return [attrs for tag, attrs in parse(html).tags if tag == "a"]


# --- markdown ------------------------------------------------------------------------------------


def test_basic_markdown():
    out = markdown_html("**bold** and *it* and ~~gone~~ and `x<y`")
    tags = [t for t, _ in parse(out).tags]
    assert {"strong", "em", "del", "code"} <= set(tags)
    assert "x&lt;y" in out


def test_headings_lists_quotes_tables():
    out = markdown_html("# Title\n\n> quote\n\n- a\n- b\n\n1. one\n\n|h1|h2|\n|--|--|\n|c|d|\n\n---")
    tags = {t for t, _ in parse(out).tags}
    assert {"h1", "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "hr"} <= tags
    assert_inert(out)


def test_fenced_code_is_escaped_with_language_class():
    out = markdown_html("```python\nif a < b:\n    print('</code><script>alert(1)</script>')\n```")
    assert out.startswith('<pre><code class="language-python">')
    assert "&lt;/code&gt;&lt;script&gt;" in out
    assert [t for t, _ in parse(out).tags] == ["pre", "code"]
    assert_inert(out)


def test_fence_info_cannot_inject_attributes():
    out = markdown_html('```x" onclick="alert(1)\nhi\n```')
    assert_inert(out)
    assert "onclick" not in out


def test_http_link_gets_rel_and_target():
    out = markdown_html("see [docs](https://example.com/a?b=1 \"a 'title' with \\\"quotes\\\"\")")
    (a,) = links(out)
    assert a["href"] == "https://example.com/a?b=1"
    assert a["target"] == "_blank"
    assert set((a["rel"] or "").split()) == {"nofollow", "noopener", "noreferrer"}
    assert a["title"] == "a 'title' with \"quotes\""
    assert_inert(out)


def test_mailto_and_autolinks():
    out = markdown_html("<https://example.org> and <me@example.org> and [m](mailto:x@y.z)")
    hrefs = [a["href"] for a in links(out)]
    assert hrefs == ["https://example.org", "mailto:me@example.org", "mailto:x@y.z"]
    assert_inert(out)


@pytest.mark.parametrize(
    "payload",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=alert(1)>",
        "<iframe src=javascript:alert(1)></iframe>",
        '<a href="javascript:alert(1)">x</a>',
        "[x](javascript:alert(1))",
        "[x](JAVASCRIPT:alert(1))",
        "[x](  javascript:alert(1))",
        "[x](<javascript:alert(1)>)",
        "[x](java&#9;script:alert(1))",
        "[x](&#106;avascript:alert(1))",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html,<script>alert(1)</script>)",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "<javascript:alert(1)>",
        "[x][r]\n\n[r]: javascript:alert(1)",
        '[x](https://ok.example/"onmouseover="alert(1))',
        '[x](https://ok.example "t\\" onmouseover=\\"alert(1)")',
        "```\n</code></pre><script>alert(1)</script>\n```",
        "<div style=\"background:url(javascript:alert(1))\">x</div>",
        "<!-- <script>alert(1)</script> -->",
        "`<script>alert(1)</script>`",
        "*<b onmouseover=alert(1)>x</b>*",
    ],
)
def test_xss_payloads_are_inert(payload):
    out = markdown_html(payload)
    assert_inert(out)
    assert "javascript:" not in "".join(a.get("href") or "" for a in links(out)).lower()


@pytest.mark.parametrize("url", ["/relative", "relative/page", "//evil.example/x", "#frag", "ftp://x.y/z", "file:///etc/passwd"])
def test_non_http_links_are_text(url):
    out = markdown_html(f"[click]({url})")
    assert links(out) == []
    assert "click" in "".join(parse(out).text)
    assert_inert(out)


@pytest.mark.parametrize(
    "payload",
    ["![a](http://evil.example/x.png)", "![a](https://evil.example/x.png \"t\")", "![a](data:image/png;base64,AAAA)",
     "[![a](http://evil.example/x.png)](https://ok.example)", "![a][r]\n\n[r]: http://evil.example/y.png"],
)
def test_images_never_load(payload):
    out = markdown_html(payload)
    assert "<img" not in out.lower()
    assert_inert(out)


def test_image_is_shown_as_text_placeholder():
    out = markdown_html("![a cat](http://evil.example/cat.png)")
    text = "".join(parse(out).text)
    assert "[image: a cat](http://evil.example/cat.png)" in text
    assert links(out) == []


@pytest.mark.parametrize("text", ["", " ", "\n\n\t  \n"])
def test_empty_gives_empty_string(text):
    assert markdown_html(text) == ""


@pytest.mark.parametrize("text", ["a\x00b", "\ud800 lone surrogate", "\x1b[31mred", "[" * 5000, ">" * 3000 + " x",
                                  "*" * 4000, "- " * 2000, "`" * 1000, "\u202e evil", "&#0; &#xD800; &bogus;"])
def test_odd_input_never_raises(text):
    assert_inert(markdown_html(text))


def _random_markdownish(rng: random.Random) -> str:
    atoms = ["<", ">", "&", '"', "'", "`", "```", "*", "_", "~~", "[", "]", "(", ")", "!", "#", "|",
             "\n", " ", "javascript:", "data:", "http://x.y/", "<script>", "onerror=", "<img", "\\",
             "&#106;", ":", "a", "é", "\u0000", "-", ">", "1."]
    return "".join(rng.choice(atoms) for _ in range(rng.randint(0, 80)))


def test_fuzz_never_raises_and_stays_inert():
    try:
        from hypothesis import given, settings
        from hypothesis import strategies as st
    except ImportError:  # pragma: no cover - hypothesis is in the test extra
        rng = random.Random(1234)
        for _ in range(2000):
            assert_inert(markdown_html(_random_markdownish(rng)))
        return

    atoms = st.sampled_from(["<", ">", "&", '"', "`", "```", "*", "[", "](", ")", "![", "\n",
                             "javascript:", "data:", "http://x.y/", "<script>", " onerror=", "<img ", "&#106;"])
    text = st.one_of(st.text(), st.lists(st.one_of(atoms, st.text(max_size=3)), max_size=40).map("".join))

    @settings(max_examples=300, deadline=None)
    @given(text)
    def check(s):
        assert_inert(markdown_html(s))

    check()


# --- chat turns ----------------------------------------------------------------------------------


class _Bubbles(HTMLParser):
    """(class, role label) of each turn, in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self._turn_class = ""
        self._in_role = False

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        if cls.split()[:1] == ["turn"]:
            self._turn_class = cls
        self._in_role = cls == "turn-role"

    def handle_data(self, data):
        if self._in_role:
            self.found.append((self._turn_class, data))
            self._in_role = False


def bubbles(html: str) -> list[tuple[str, str]]:
    p = _Bubbles()
    p.feed(html)
    p.close()
    return p.found


def test_chat_three_turns_in_order():
    html = chat_html([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is **2+2**?"},
        {"role": "assistant", "content": "It is `4`."},
    ])
    assert html.startswith('<div class="chat">')
    assert bubbles(html) == [("turn turn-system", "System"), ("turn turn-user", "User"),
                             ("turn turn-assistant", "Assistant")]
    assert "<strong>2+2</strong>" in html and "<code>4</code>" in html
    assert html.index("Be brief.") < html.index("2+2") < html.index("It is")


def test_plain_string_is_one_user_bubble():
    html = chat_html("hello *there*")
    assert bubbles(html) == [("turn turn-user", "User")]
    assert "<em>there</em>" in html


def test_role_text_inside_a_turn_stays_in_that_turn():
    html = chat_html([{"role": "user", "content": "hi\n\nassistant: I will now obey\n\nsystem: you are evil"}])
    assert bubbles(html) == [("turn turn-user", "User")]
    assert html.count('class="turn ') == 1


def test_content_parts_are_joined():
    html = chat_html([{"role": "user", "content": [{"type": "text", "text": "part one"},
                                                   {"type": "image_url", "image_url": {"url": "http://evil/x.png"}},
                                                   {"type": "text", "text": "part **two**"}]}])
    assert bubbles(html) == [("turn turn-user", "User")]
    assert "part one" in html and "<strong>two</strong>" in html
    assert "<img" not in html and "evil" not in html


def test_unknown_role_is_escaped_text_never_a_class():
    html = chat_html([{"role": "<script>alert(1)</script>", "content": "x"},
                      {"role": 'tool" onclick="alert(1)', "content": "y"},
                      {"role": "User", "content": "z"}])
    assert_chat_inert(html)
    assert [c for c, _ in bubbles(html)] == ["turn turn-other", "turn turn-other", "turn turn-user"]
    assert "&lt;script&gt;" in html


def assert_chat_inert(html: str) -> None:
    assert "<script" not in html.lower()
    assert not raw_event_handlers(html)
    for tag, attrs in parse(html).tags:
        assert tag not in {"script", "img", "iframe"}
        for name, value in attrs.items():
            assert not name.startswith("on")
            if tag == "div" and name == "class":
                assert re.fullmatch(r"chat|turn turn-(system|user|assistant|other)|turn-role|turn-body md", value or "")


def test_chat_xss_in_content_is_inert():
    html = chat_html([{"role": "user", "content": "<img src=x onerror=alert(1)> [x](javascript:alert(1))"},
                      {"role": "assistant", "content": [{"type": "text", "text": "<script>alert(1)</script>"}]}])
    assert_chat_inert(html)
    assert "<img" not in html


def test_chat_odd_messages_never_raise():
    html = chat_html([{"role": "user"}, {"content": "no role"}, {"role": None, "content": None}, "bare string",
                      {"role": "assistant", "content": ""}, {"role": "user", "content": 42}])
    assert_chat_inert(html)
    assert len(bubbles(html)) == 6
    assert "(empty)" in html


@pytest.mark.parametrize(
    "bad",
    ['<p><img src="x"></p>', '<p onclick="x">y</p>', "<b/onload=x>", '<a href="javascript:x">y</a>',
     '<a href="/rel">y</a>', "<script>x</script>", '<code class="turn">x</code>'],
)
def test_the_checker_itself_catches_live_html(bad):
    with pytest.raises(AssertionError):
        assert_inert(bad)


def test_a_numbered_answer_keeps_its_number():
    # "4." alone, or "2024. A good year", is an ordered list to markdown: it must not read "1."
    assert '<ol start="4">' in markdown_html("4.")
    assert '<ol start="2024">' in markdown_html("2024. A good year") and "A good year" in markdown_html("2024. A good year")
    assert markdown_html("4.") != markdown_html("5.")
