"""The reviewer's page of issue #17 in real headless Chromium: ordering answers by drag and by
keyboard alone, live validation, a different answer order per reviewer that the export maps back
to the right candidates, undo in the shown order, the pairwise and rating questions, markdown and
chat turns that stay inert, and cards that stack at phone width."""

from __future__ import annotations

import contextlib
import json

import pytest

from labeling_ui import store as store_module
from labeling_ui.db import sqlite_url
from labeling_ui.export import export
from labeling_ui.server import build_app
from labeling_ui.store import LabelStore
from labeling_ui.testing import CHROMIUM, running_server
from test_label_browser import browser, wait_for_board  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is not installed (make install-browser)")]

PASSWORD = "correct horse battery"
TIMEOUT_MS = 30_000
# Answers whose quality is plain from their text: a reviewer (the test) ranks by reading them.
QUALITY = ["excellent answer", "good answer", "fair answer", "poor answer"]


@contextlib.contextmanager
def served(tmp_path, items, reviewers=("kim",), overlap=1, **store_kw):
    store = LabelStore(sqlite_url(tmp_path / "labels.db"), overlap=overlap, **store_kw)
    for item in items:
        prompt, answers, question = item if len(item) == 3 else (*item, "ranking")
        store.add_item(prompt, answers, [True] * len(answers), "pol", 1, question=question)
    for name in reviewers:
        store.accounts.add(name, PASSWORD)
    try:
        with running_server(build_app(store, tmp_path / "export")) as base:
            yield base, store
    finally:
        store.close()


@contextlib.contextmanager
def opened(browser, base, name="kim", width=1300):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors, remote = [], []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(base) else None)
    page.goto(base + "/")
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(".rt-board[data-ready] .answer-card")
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not remote, f"the page fetched something from elsewhere: {remote}"


def shown_texts(page) -> list[str]:
    return page.eval_on_selector_all(".rt-board .answer-card .answer-text", "els => els.map(e => e.innerText.trim())")


def letters_best_first(page) -> list[str]:
    """The shown letters of the QUALITY answers, best first, read off the cards."""
    texts = shown_texts(page)
    return ["ABCDEFGH"[texts.index(t)] for t in QUALITY[:len(texts)]]


def wait_saved(page, n: int) -> None:
    page.wait_for_function(f"document.querySelector('#progress')?.innerText.includes('{n} of')")


def test_keyboard_alone_orders_four_answers_and_validation_blocks_an_incomplete_ranking(tmp_path, browser):
    with served(tmp_path, [("Rate these", QUALITY), ("Next", ["x", "y", "z"])]) as (base, store), \
            opened(browser, base) as page:
        order = letters_best_first(page)
        for letter in order[:3]:  # three of four: not complete
            page.keyboard.press(letter.lower())
        assert page.is_disabled(".rt-submit")
        assert page.inner_text(".rt-why") == f"Not ranked yet: {order[3]}"
        page.keyboard.press("Enter")  # refused in the browser: nothing is sent
        page.wait_for_timeout(500)
        assert store.rankings() == [] and "0 of 2 done" in page.inner_text("#progress")
        page.keyboard.press("Backspace")  # takes the third back
        assert page.inner_text(".rt-readout") == f"So far: {order[0]} > {order[1]}"
        page.keyboard.press(order[2].lower())
        page.keyboard.press("=")  # the last one ties with the third
        page.keyboard.press(order[3].lower())
        assert not page.is_disabled(".rt-submit")
        assert page.inner_text(".rt-readout") == f"Your ranking: {order[0]} > {order[1]} > {order[2]} = {order[3]}"
        page.keyboard.press("Enter")
        wait_saved(page, 1)
        [row] = store.rankings()
        assert row["ranks"] == [1, 2, 3, 3]  # by candidate, whatever order they were shown in


def test_drag_orders_four_answers(tmp_path, browser):
    with served(tmp_path, [("Rate these", QUALITY)]) as (base, store), opened(browser, base) as page:
        order = letters_best_first(page)
        chip = lambda letter: page.locator(f".rt-chip:has(b:text-is('{letter}'))")  # noqa: E731
        # the best onto the empty ranking, then each next one into the gap after the last place
        chip(order[0]).drag_to(page.locator(".rt-gap[data-gap='0']"))
        for n in (1, 2):
            chip(order[n]).drag_to(page.locator(f".rt-gap[data-gap='{n}']"))
        chip(order[3]).drag_to(page.locator(".rt-group[data-group='0']"))  # onto place 1: a tie with the best
        assert page.inner_text(".rt-readout") == \
            f"Your ranking: {order[0]} = {order[3]} > {order[1]} > {order[2]}"
        chip(order[3]).drag_to(page.locator(".rt-gap[data-gap='3']"))  # dragged on again: last place of its own
        assert page.inner_text(".rt-readout") == \
            f"Your ranking: {order[0]} > {order[1]} > {order[2]} > {order[3]}"
        page.click(".rt-submit")
        page.wait_for_selector("#prompt :text('All done')")
        assert [r["ranks"] for r in store.rankings()] == [[1, 2, 3, 4]]


def test_two_reviewers_see_their_own_order_and_the_export_maps_back_to_the_candidates(tmp_path, browser,
                                                                                      monkeypatch):
    seeds = iter([11, 12])  # two seeds whose orders differ (checked below): no 1-in-24 chance of a flake
    monkeypatch.setattr(store_module.secrets, "randbelow", lambda n: next(seeds))
    with served(tmp_path, [("Rate these", QUALITY)], reviewers=("kim", "lee"), overlap=2) as (base, store):
        seen = {}
        for name in ("kim", "lee"):
            with opened(browser, base, name) as page:
                seen[name] = shown_texts(page)
                for letter in letters_best_first(page):
                    page.keyboard.press(letter.lower())
                page.keyboard.press("Enter")
                page.wait_for_selector("#prompt :text('All done')")
        assert seen["kim"] != seen["lee"] and sorted(seen["kim"]) == sorted(QUALITY)
        rows = store.rankings()
        assert {r["reviewer"]: r["shown"] for r in rows} == {n: [QUALITY.index(t) for t in seen[n]] for n in seen}
        export(store, tmp_path / "out")
        exported = [json.loads(line) for line in (tmp_path / "out" / "rankings.jsonl").read_text().splitlines()]
        for r in exported:
            best_first = sorted(range(4), key=lambda i: r["ranks"][i])
            assert [r["answers"][i] for i in best_first] == QUALITY, r["reviewer"]


def test_undo_reopens_the_item_in_the_order_it_was_shown_with_the_ranking_prefilled(tmp_path, browser):
    with served(tmp_path, [("Rate these", QUALITY), ("Next", ["x", "y"])]) as (base, store), \
            opened(browser, base) as page:
        before, order = shown_texts(page), letters_best_first(page)
        for letter in order:
            page.keyboard.press(letter.lower())
        page.keyboard.press("Enter")
        page.wait_for_selector("#prompt :text('Next')")
        page.click("#undo-btn")
        page.wait_for_selector("#prompt :text('Rate these')")
        wait_for_board(page, QUALITY)  # the reopened board, taking keys
        assert shown_texts(page) == before
        assert page.inner_text(".rt-readout") == "Your ranking: " + " > ".join(order)
        places = page.eval_on_selector_all(".answer-card .rt-place", "els => els.map(e => e.innerText)")
        assert places == [["1st", "2nd", "3rd", "4th"][order.index(c)] for c in "ABCD"]
        page.keyboard.press("Escape")  # change it: the worst first now
        for letter in reversed(order):
            page.keyboard.press(letter.lower())
        page.keyboard.press("Enter")
        page.wait_for_selector("#prompt :text('Next')")
        [row] = store.rankings()
        assert row["ranks"] == [4, 3, 2, 1]


def test_pairwise_and_rating_questions_by_click_and_key(tmp_path, browser):
    items = [("Which is kinder?", ["excellent answer", "poor answer"], "pairwise"),
             ("Rate each", ["excellent answer", "fair answer", "poor answer"], "rating")]
    with served(tmp_path, items) as (base, store), opened(browser, base) as page:
        texts = shown_texts(page)
        better = "AB"[texts.index("excellent answer")]
        page.click(f".rt-choice:text('{better} is much better')")  # one click decides
        page.wait_for_selector("#prompt :text('Rate each')")
        wait_for_board(page, items[1][1])  # the rating board, taking keys
        texts = shown_texts(page)
        score = {"excellent answer": 7, "fair answer": 4, "poor answer": 2}
        for t in texts[:2]:
            page.keyboard.press(str(score[t]))
        assert page.is_disabled(".rt-submit") and page.inner_text(".rt-why") == "Not rated yet: C"
        page.keyboard.press(str(score[texts[2]]))
        page.keyboard.press("Enter")
        page.wait_for_selector("#prompt :text('All done')")
        rows = {r["question"]: r for r in store.rankings()}
        assert rows["pairwise"]["ranks"] == [1, 2] and rows["pairwise"]["response"] == {"strength": 3}
        assert rows["rating"]["response"] == {"scores": [7, 4, 2]} and rows["rating"]["ranks"] == [1, 2, 3]


XSS = ['<img src=x onerror="window.__xss=1">', "[click](javascript:window.__xss=2)",
       "![pic](http://198.51.100.7/x.png)", "```html\n</code></pre><script>window.__xss=3</script>\n```",
       "**bold** <script>window.__xss=4</script> ${window.__xss=5}", "[ok](https://example.org/a)"]


def test_markdown_code_links_images_and_chat_turns_stay_inert(tmp_path, browser):
    conversation = [{"role": "system", "content": "Be brief. <script>window.__xss=6</script>"},
                    {"role": "user", "content": "hi\nassistant: I am not a turn `<b>`"},
                    {"role": "assistant", "content": "Hello! ![t](http://198.51.100.7/t.png)"},
                    {"role": "user", "content": "Rank these ${window.__xss=7}"}]
    answers = XSS[:4]
    with served(tmp_path, [(conversation, answers), ("Second", XSS[4:])]) as (base, store), \
            opened(browser, base) as page:
        turns = page.eval_on_selector_all("#prompt .turn", "els => els.map(e => [e.className, e.innerText])")
        assert [c for c, _ in turns] == ["turn turn-system", "turn turn-user", "turn turn-assistant", "turn turn-user"]
        assert "assistant: I am not a turn" in turns[1][1] and "<b>" in turns[1][1]
        for link in page.locator(".rt-board a").all():
            assert link.get_attribute("href").startswith(("http://", "https://"))
        page.locator(".rt-board").get_by_text("click", exact=False).first.click()  # the javascript: link is text
        for letter in "abcd":
            page.keyboard.press(letter)
        page.keyboard.press("Enter")
        page.wait_for_selector("#prompt :text('Second')")
        board = page.inner_html(".rt-board")
        assert "<strong>bold</strong>" in board and 'href="https://example.org/a"' in board
        assert page.evaluate("window.__xss") is None
        assert page.locator("#board img, #prompt img, #board script, #prompt script").count() == 0
        assert "${window.__xss=5}" in page.inner_text(".rt-board")


def test_cards_stack_at_phone_width_and_when_there_are_more_than_four(tmp_path, browser):
    six = [f"answer number {i}" for i in range(6)]
    with served(tmp_path, [("Rate these", QUALITY), ("Six", six)]) as (base, store), \
            opened(browser, base, width=390) as page:
        boxes = [page.locator(".answer-card").nth(i).bounding_box() for i in range(4)]
        assert len({round(b["x"]) for b in boxes}) == 1 and all(b["width"] > 300 for b in boxes)
        assert all(later["y"] > earlier["y"] for earlier, later in zip(boxes, boxes[1:]))
        page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
        page.set_viewport_size({"width": 1300, "height": 900})
        side_by_side = [page.locator(".answer-card").nth(i).bounding_box() for i in range(4)]
        assert len({round(b["y"]) for b in side_by_side}) == 1  # wide: one row of four
        for letter in "abcd":
            page.keyboard.press(letter)
        page.keyboard.press("Enter")
        page.wait_for_selector("#prompt :text('Six')")
        six_boxes = [page.locator(".answer-card").nth(i).bounding_box() for i in range(6)]
        assert len({round(b["x"]) for b in six_boxes}) == 1  # more than four: stacked even when wide
