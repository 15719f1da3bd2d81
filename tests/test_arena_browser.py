"""The Arena tab in real headless Chromium: two turns with two anonymous models, a vote on each,
the names revealed, the leaderboard counting the votes; one reviewer's conversations are not
another's; markup in a prompt or an answer stays text; a full queue says so.

The models are scripted (ScriptedEngine: the real engine's queue and worker, answers written out
word by word), so the page is tested, not a random tiny model's text."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from labeling_ui.arena.models import ArenaEngine
from labeling_ui.arena.store import ArenaStore
from labeling_ui.server import build_app
from labeling_ui.testing import CHROMIUM, running_server, seed_demo_store
from test_label_browser import browser  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is not installed (make install-browser)")]

PASSWORD = "correct horse"
XSS = '<img src=x onerror="window.__xss=1"> <script>window.__xss=2</script> [x](javascript:window.__xss=3) ${window.__xss=4}'


class ScriptedEngine(ArenaEngine):
    """The engine with `answer(model, messages)` in place of a model; `gate` (when set) holds every answer."""

    def __init__(self, answer, gate: threading.Event | None = None, **kw):
        super().__init__(**kw)
        self.answer, self.gate = answer, gate

    def _answer(self, job, side: str) -> None:
        if self.gate is not None:
            self.gate.wait(30)
        words = self.answer(job.models[side], job.messages[side]).split(" ")
        for n in range(1, len(words) + 1):
            with self._cv:
                job._side(side, text=" ".join(words[:n]), num_tokens=n, ttft_s=0.01)
            time.sleep(0.02)
        with self._cv:
            job._side(side, done=True, ended=True, tokens_per_s=50.0)


def plain(model, messages):
    turn = sum(m["role"] == "user" for m in messages)
    return f"answer {turn} from the {model} model"


@contextlib.contextmanager
def served(tmp_path, answer=plain, gate=None, max_queue=8):
    store = seed_demo_store(tmp_path / "labels.db", {"kim": False, "lee": False}, password=PASSWORD)
    arena = ArenaStore(store, rate_limit_per_minute=None)
    arena.add_model("sft", "smollm2-135m", "test")  # never loaded: the scripted engine answers
    arena.add_model("rlhf", "smollm2-135m", "test")
    engine = ScriptedEngine(answer, gate, model_path=arena.model_path, max_queue=max_queue)
    try:
        with running_server(build_app(store, tmp_path / "export", arena=(arena, engine, ["Say hello"]))) as base:
            yield base, arena, engine
    finally:
        if gate is not None:
            gate.set()
        engine.close()
        store.close()


@contextlib.contextmanager
def arena_page(browser, base, name):
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(base + "/")
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(".rt-board[data-ready] .answer-card")
    page.get_by_role("tab", name="Arena").click()
    page.wait_for_selector("#arena-send")
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def chat(page, text: str) -> None:
    page.fill("#arena-message textarea", text)
    page.click("#arena-send")
    page.wait_for_selector("#arena-vote-a:not([disabled])")


def test_two_turns_two_votes_then_the_names_and_the_leaderboard(tmp_path, browser):
    with served(tmp_path) as (base, arena, _), arena_page(browser, base, "kim") as page:
        chat(page, "Hello, who are you?")
        a, b = page.inner_text("#arena-a"), page.inner_text("#arena-b")
        assert "answer 1 from the" in a and "answer 1 from the" in b
        assert "sft" not in page.inner_text("#arena-a .card-label") + page.inner_text("#arena-b .card-label")
        model_a = "sft" if "the sft model" in a else "rlhf"
        page.click("#arena-vote-a")
        page.wait_for_selector("#arena-status :text('Vote saved')")
        chat(page, "And a second question?")
        assert "answer 2 from the" in page.inner_text("#arena-a") and "Hello, who are you?" in page.inner_text("#arena-a")
        page.click("#arena-vote-tie")
        page.wait_for_selector("#arena-status :text('Vote saved')")
        page.click("#arena-reveal")
        page.wait_for_selector("#arena-status :text('A was')")
        assert page.inner_text("#arena-a .card-label").lower() == f"model a: {model_a}"
        page.wait_for_selector("#arena-leaderboard :text('2 votes')")
        [conv] = arena.conversations("kim")
        assert [t.vote for t in conv.turns] == ["a", "tie"] and conv.revealed
        row = page.locator("#arena-leaderboard tr", has_text=model_a).inner_text()
        assert "1 / 0 / 1" in row  # won one, tied one


def test_one_reviewers_conversations_are_not_another_s(tmp_path, browser):
    with served(tmp_path) as (base, arena, _):
        with arena_page(browser, base, "kim") as page:
            chat(page, "kim's private question")
            page.click("#arena-vote-b")
            page.wait_for_selector("#arena-status :text('Vote saved')")
        with arena_page(browser, base, "lee") as page:
            page.get_by_text("Your conversations").click()
            page.wait_for_selector("#arena-mine :text('No conversations yet')")
            assert "kim's private question" not in page.content()
            chat(page, "lee's own question")
            assert "kim's private question" not in page.inner_text("#arena-a")
        [kims] = arena.conversations("kim")
        with pytest.raises(Exception, match="not one of yours"):
            arena.conversation(kims.id, "lee")


def test_markup_in_a_message_and_in_an_answer_stays_text(tmp_path, browser):
    with served(tmp_path, answer=lambda model, messages: f"**fine** {XSS}") as (base, _, _e), \
            arena_page(browser, base, "kim") as page:
        chat(page, f"tell me {XSS}")
        for side in ("#arena-a", "#arena-b"):
            assert page.locator(f"{side} img, {side} script").count() == 0
            assert "<img src=x" in page.inner_text(side) and "${window.__xss=4}" in page.inner_text(side)
            for link in page.locator(f"{side} a").all():
                assert link.get_attribute("href").startswith(("http://", "https://"))
        assert page.locator("#arena-a strong", has_text="fine").count() == 1  # markdown still renders
        assert page.evaluate("window.__xss") is None


def test_a_full_queue_says_so(tmp_path, browser):
    gate = threading.Event()
    with served(tmp_path, gate=gate, max_queue=1) as (base, _, engine), arena_page(browser, base, "kim") as page:
        hi = [{"role": "user", "content": "hi"}]
        engine.submit(hi, hi, "sft", "rlhf")  # taken by the worker, held at the gate
        deadline = time.monotonic() + 10
        while engine.stats()["queued"] and time.monotonic() < deadline:
            time.sleep(0.05)  # wait until the worker holds it, so the next one waits in the queue
        engine.submit(hi, hi, "sft", "rlhf")  # fills the queue
        page.fill("#arena-message textarea", "Anyone there?")
        page.click("#arena-send")
        page.wait_for_selector("#arena-status :text('The arena is busy')")
        gate.set()


def test_sending_again_after_a_full_queue_reuses_the_conversation(tmp_path, browser):
    gate = threading.Event()
    with served(tmp_path, gate=gate, max_queue=1) as (base, arena, engine), arena_page(browser, base, "kim") as page:
        hi = [{"role": "user", "content": "hi"}]
        engine.submit(hi, hi, "sft", "rlhf")
        deadline = time.monotonic() + 10
        while engine.stats()["queued"] and time.monotonic() < deadline:
            time.sleep(0.05)
        blocker = engine.submit(hi, hi, "sft", "rlhf")
        page.fill("#arena-message textarea", "Anyone there?")
        page.click("#arena-send")
        page.wait_for_selector("#arena-status :text('The arena is busy')")
        page.click("#arena-send")  # refused again: the same words, so nothing on the page changes
        page.wait_for_timeout(2000)
        assert len(arena.conversations("kim")) == 1
        gate.set()
        blocker.wait(30)
        page.click("#arena-send")
        page.wait_for_selector("#arena-vote-a:not([disabled])")
        assert len(arena.conversations("kim")) == 1  # one conversation, not one per refused send
