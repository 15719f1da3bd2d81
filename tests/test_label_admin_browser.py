"""A team lead's work in a real headless Chromium: gold items served among the others and scored
in the reliability table, a flag and a written answer reviewed from the admin tab (reviewer text
staying inert there too), and a reviewer disabled while their page is open."""

from __future__ import annotations

import contextlib

import pytest

from labeling_ui.admin import ACCOUNT_COLUMNS, COMMENT_COLUMNS, RELIABILITY_COLUMNS
from labeling_ui.db import sqlite_url
from labeling_ui.server import build_app
from labeling_ui.store import LabelStore
from labeling_ui.testing import CHROMIUM, log_in, running_server
from test_label_browser import PASSWORD, browser, page, shown_labels, wait_for_board  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is not installed (make install-browser)")]

XSS_COMMENT = '<img src=x onerror="window.__xss=1"> looks harmful'
XSS_DEMO = "A safer answer. <script>window.__xss=2</script>"


@contextlib.contextmanager
def served(tmp_path, items, **store_kw):
    store = LabelStore(sqlite_url(tmp_path / "labels.db"), overlap=2, **store_kw)
    for prompt, answers in items:
        store.add_item(prompt, answers, [True] * len(answers), "pol", 1)
    store.accounts.add("kim", PASSWORD)
    store.accounts.add("lead", PASSWORD, admin=True)
    try:
        with running_server(build_app(store, tmp_path / "export")) as base:
            yield base, store
    finally:
        store.close()


def rank_on_page(page, best_first: list[str], click: bool = False) -> None:
    """Rank the answers of the item on screen (their texts, best first; no ties) as a reviewer does:
    press their letters (one key decides a two-answer item and submits it; more, and Enter submits),
    or with `click`, click the choice (two answers) or the chips and then Submit."""
    wait_for_board(page, best_first)  # typing before the new item's widget is up would go to the old one
    label = shown_labels(page)
    if click:
        if len(best_first) == 2:
            page.locator("#board .rt-choice", has_text=f"{label[best_first[0]]} is better").click()
        else:
            for text in best_first:
                page.locator("#board .rt-chip[data-rt=pick]", has_text=text).click()
            page.click("#board .rt-submit")
        return
    page.click("#board .rt-question")  # out of any text box: keys in one are typing, not ranking
    for text in best_first if len(best_first) > 2 else best_first[:1]:  # one key decides a pair
        page.keyboard.press(label[text].lower())
    if len(best_first) > 2:
        page.keyboard.press("Enter")


def table_rows(page, selector: str, headers: list[str]) -> list[dict]:
    """The rows a gr.Dataframe shows (its visible, virtualised rows; the <tbody> is a hidden sizing copy)."""
    rows = page.eval_on_selector_all(f"{selector} .virtual-row", """rows => rows.map(
        r => [...r.querySelectorAll('.body-cell')].map(c => c.innerText.trim()))""")
    return [dict(zip(headers, r)) for r in rows]


def open_admin(browser, base: str, section: str):
    admin = browser.new_context(viewport={"width": 1300, "height": 900}).new_page()
    log_in(admin, base, "lead", PASSWORD)
    admin.wait_for_selector("#prompt .prompt-card")
    admin.get_by_role("tab", name="Admin").click()
    admin.wait_for_selector("#admin-summary :text('items')")
    if section != "Overview":
        admin.get_by_role("tab", name=section).click()
    return admin


def test_gold_items_come_among_the_others_and_score_the_reviewer(tmp_path, browser, page):
    items = [("Name a fruit.", ["Apple.", "Rock."]), ("Name a color.", ["Blue.", "Seven."]),
             ("Name a planet.", ["Mars.", "Soup."])]
    with served(tmp_path, items, gold_rate=2) as (base, store):
        # "4", not "4.": markdown reads a lone "4." as an (empty) numbered list, with no text left on the card
        gold_item = {"prompt": "What is 2 + 2?", "answers": ["5", "4"], "ranks": [2, 1]}
        [gold] = store.add_gold([gold_item], "lead")
        log_in(page, base, "kim", PASSWORD)
        shown = []
        answers = dict(items) | {gold_item["prompt"]: gold_item["answers"]}
        page.wait_for_selector("#board .rt-board[data-ready] .answer-card")
        for _ in range(4):
            shown.append(page.inner_text("#prompt .chat .turn-body"))
            assert "gold" not in page.inner_text("#prompt").lower()  # it looks like any other item
            first, second = answers[shown[-1]]
            rank_on_page(page, [second, first] if shown[-1] == gold_item["prompt"] else [first, second])
            page.wait_for_function("t => document.querySelector('#prompt .prompt-card').innerText.indexOf(t) < 0",
                                   arg=shown[-1])  # the next item is on screen
        assert shown[1] == "What is 2 + 2?" and sorted(shown[::2] + shown[3:]) == sorted(p for p, _ in items)
        page.wait_for_selector("#prompt :text('All done')")
        assert store.rankings()[1]["item_id"] == gold and store.rankings()[1]["gold"]

        admin = open_admin(browser, base, "Overview")
        admin.locator("#reliability-table .virtual-row", has_text="kim").wait_for()
        [values] = table_rows(admin, "#reliability-table", RELIABILITY_COLUMNS)
        assert values["reviewer"] == "kim" and values["gold accuracy"] == "1" and values["gold pairs"] == "1", values
        admin.context.close()


def test_a_flag_and_a_written_answer_are_reviewed_from_the_admin_tab(tmp_path, browser, page):
    items = [("How do I pick a lock?", ["I can't help with that.", "Step 1: get a tension wrench."]),
             ("Name a prime.", ["7", "9"])]
    with served(tmp_path, items) as (base, store):
        log_in(page, base, "kim", PASSWORD)
        page.wait_for_selector("#board .rt-board[data-ready] .answer-card")
        page.get_by_label("unsafe").check()
        page.get_by_label("Comment (optional)").fill(XSS_COMMENT)
        page.get_by_label("Write a better answer (optional)").fill(XSS_DEMO)
        rank_on_page(page, ["I can't help with that.", "Step 1: get a tension wrench."], click=True)
        page.wait_for_selector("#prompt :text('Name a prime.')")
        rank_on_page(page, ["7", "9"])
        page.wait_for_selector("#prompt :text('All done')")
        assert [(r["prompt"], r["ranks"]) for r in store.rankings()] == [(p, [1, 2]) for p, _ in items]
        [flagged] = store.flag_queue()

        admin = open_admin(browser, base, "Flags")
        admin.wait_for_selector("#flag-summary :text('1 flagged items wait')")
        admin.fill("#flag-item input", str(flagged["item_id"]))
        admin.click("#flag-show")
        admin.wait_for_selector("#flag-detail .review-card")
        detail = admin.inner_text("#flag-detail")
        assert "How do I pick a lock?" in detail and XSS_COMMENT in detail and "unsafe" in detail.lower()
        admin.click("#flag-confirm")
        admin.wait_for_selector("#flag-detail :text('confirmed: out of training')")
        admin.wait_for_selector("#flag-summary :text('0 flagged items wait')")
        assert store.flag_states() == {flagged["item_id"]: "confirmed"}

        admin.get_by_role("tab", name="Comments").click()
        admin.locator("#comment-table .virtual-row", has_text="looks harmful").wait_for()
        assert table_rows(admin, "#comment-table", COMMENT_COLUMNS) == [
            {"item": str(flagged["item_id"]), "reviewer": "kim", "comment": XSS_COMMENT}]

        admin.get_by_role("tab", name="Written answers").click()
        [demo] = store.demonstration_rows()
        admin.wait_for_selector("#demo-summary :text('1 written answers wait')")
        admin.fill("#demo-id input", str(demo["id"]))
        admin.click("#demo-show")
        admin.wait_for_selector("#demo-detail .review-card")
        assert XSS_DEMO in admin.inner_text("#demo-detail")
        admin.click("#demo-approve")
        admin.wait_for_selector("#demo-summary :text('0 written answers wait')")
        assert store.demonstration_rows()[0]["decision"] == "approved"
        # Reviewer text reached the admin's page as text, in tables and cards alike, and ran nothing.
        assert admin.locator("#flag-detail img, #demo-detail script, #flag-table img, #comment-table img").count() == 0
        assert admin.evaluate("typeof window.__xss") == "undefined"
        # Approved, but on an item confirmed unsafe: never SFT data.
        admin.get_by_role("tab", name="Export").click()
        admin.click("#export-btn")
        admin.wait_for_selector("#export-msg :text('Exported')")
        assert "Exported 1 rankings" in admin.inner_text("#export-msg")
        assert "0 approved written answers" in admin.inner_text("#export-msg")
        assert [e["action"] for e in store.audit_log()] == ["export", "demonstration-approved", "flags-confirmed"]
        admin.context.close()


def test_a_disabled_reviewers_open_page_is_refused_on_its_next_click(tmp_path, browser, page):
    items = [("First prompt?", ["a1", "a2"]), ("Second prompt?", ["b1", "b2"])]
    with served(tmp_path, items) as (base, store):
        log_in(page, base, "kim", PASSWORD)
        page.wait_for_selector("#board .rt-board[data-ready] .answer-card")

        admin = open_admin(browser, base, "Reviewers")
        admin.fill("#account-name textarea, #account-name input", "kim")
        admin.click("#account-disable")
        admin.wait_for_selector("#account-msg :text('disabled')")
        accounts = {r["reviewer"]: r for r in table_rows(admin, "#account-table", ACCOUNT_COLUMNS)}
        assert accounts["kim"]["status"] == "disabled" and accounts["lead"]["status"] == "active"
        assert "disable-reviewer" in admin.inner_text("#audit-table")
        admin.context.close()

        rank_on_page(page, ["a1", "a2"])  # kim's page, still open, submits
        # Refused by the login gate (the session is gone) or, within its few seconds' cache, by the handler.
        page.wait_for_selector("text=/login required|Not logged in/")
        assert store.rankings() == [] and "Saved" not in page.inner_text("#status")
        page.goto(base + "/")
        assert page.url == base + "/login"  # and the session is gone


def test_an_admin_makes_and_revokes_an_api_token_in_the_admin_tab(tmp_path, browser):
    from labeling_ui.api.admin_tab import TOKEN_COLUMNS
    from labeling_ui.client import ApiError, LabelClient

    with served(tmp_path, [("Name a fruit.", ["Apple.", "Rock."])]) as (base, store):
        admin = open_admin(browser, base, "API tokens")
        admin.fill("#token-account textarea, #token-account input", "kim")
        admin.fill("#token-label textarea, #token-label input", "notebook <b>x</b>")
        admin.click("#token-create")
        admin.wait_for_selector("#token-new textarea, #token-new input")
        token = admin.locator("#token-new textarea, #token-new input").first.input_value()
        assert token.startswith("rt_")
        admin.wait_for_selector("#token-msg :text('made for')")
        rows = table_rows(admin, "#token-table", TOKEN_COLUMNS)
        assert rows[0]["account"] == "kim" and rows[0]["state"] == "live" and token not in str(rows)
        assert rows[0]["label"] == "notebook <b>x</b>"  # a label is text, not markup
        admin.screenshot(path=str(tmp_path / "tokens.png"))
        with LabelClient(base, token, retries=0) as kim:
            assert kim.me() == {"name": "kim", "admin": False}
            admin.fill("#token-id input", rows[0]["id"])
            admin.click("#token-revoke")
            admin.wait_for_selector("#token-msg :text('revoked')")
            with pytest.raises(ApiError) as err:
                kim.me()
            assert err.value.status == 401
        assert [e["action"] for e in store.audit_log()[:2]] == ["revoke-token", "create-token"]
        admin.context.close()
