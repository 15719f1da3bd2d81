"""Takes docs/labeling.png (the reviewer's page, logged in, a ranking half done on a four-answer
item), docs/labeling-pairwise.png and docs/labeling-rating.png (the other question types),
docs/labeling-phone.png (the ranking page at phone width) and docs/admin.png (the admin tab's
reliability table after a simulated panel with two bad reviewers).

    .venv/bin/python docs/screenshot.py [--out docs/labeling.png] [--admin_out docs/admin.png]

Seeds throwaway stores with a few prompts and answers (labeling_ui.testing.DEMO_ITEMS), serves
the real app on a free loopback port and photographs it in headless Debian Chromium.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labeling_ui.db import sqlite_url  # noqa: E402
from labeling_ui.server import build_app  # noqa: E402
from labeling_ui.store import LabelStore  # noqa: E402
from labeling_ui.testing import DEMO_ITEMS, chromium, log_in, running_server, seed_demo_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("labeling.png")))
    parser.add_argument("--admin_out", default=str(Path(__file__).with_name("admin.png")))
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--only", choices=("ranking", "admin", "arena"), default=None)
    args = parser.parse_args()
    for name, take in (("ranking", ranking_page), ("admin", admin_page), ("arena", arena_page)):
        if args.only in (None, name):
            take(args)


CONVERSATION = [{"role": "system", "content": "You are a concise cooking assistant."},
                {"role": "user", "content": "I bought basil yesterday and it is already wilting."},
                {"role": "assistant", "content": "Sorry to hear that! Was it in the fridge?"},
                {"role": "user", "content": "Yes. How do I keep it fresh **next time**?"}]
PAIR = ("Explain in one sentence why the sky is blue.",
        ["Air molecules scatter short (blue) wavelengths of sunlight much more than long (red) ones, so blue "
         "light reaches us from every direction of the sky.", "Because it reflects the ocean."])
CODE = ("How do I reverse a list in Python?",
        ["Use slicing:\n\n```python\nitems = [1, 2, 3]\nprint(items[::-1])\n```\n\nor `items.reverse()` in place.",
         "Call `reversed(items)`; wrap it in `list()` if you need a list.", "Lists cannot be reversed."])


def ranking_page(args) -> None:
    """The ranking question on a multi-turn conversation, two answers placed by keyboard."""
    pages = [(args.out, args.width, "ranking"), (str(Path(args.out).with_name("labeling-phone.png")), 390, "ranking"),
             (str(Path(args.out).with_name("labeling-pairwise.png")), args.width, "pairwise"),
             (str(Path(args.out).with_name("labeling-rating.png")), args.width, "rating")]
    for path, width, question in pages:
        with tempfile.TemporaryDirectory() as tmp:
            store = seed_demo_store(Path(tmp) / "labels.db", {"maria": False, "sam": False})
            other = store.next_task("sam")  # someone else has been at work: the progress line is not all zeros
            store.submit("sam", other.assignment_id, [1, 3, 2, 4], token="demo-token-1")
            first = {"ranking": (CONVERSATION, DEMO_ITEMS[0][1]), "pairwise": PAIR, "rating": CODE}[question]
            for n in range(3):  # round 2: this question, first; the store below serves only round 2
                store.add_item(first[0] if n == 0 else f"{first[0]} ({n})", first[1], [True] * len(first[1]),
                               "demo-policy", 2, question=question)
            store.close()
            store = LabelStore(sqlite_url(Path(tmp) / "labels.db"), overlap=2, round=2)
            with running_server(build_app(store, Path(tmp) / "export")) as base, chromium() as browser:
                page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
                log_in(page, base, "maria", "correct horse")
                page.wait_for_selector(".rt-board[data-ready] .answer-card", timeout=30_000)  # taking keys
                keys = {"ranking": ["c", "a"], "pairwise": [], "rating": ["6", "4"]}[question]
                for key in keys:  # half done, as a reviewer would see it mid-way
                    page.keyboard.press(key)
                page.mouse.move(0, 0)
                page.screenshot(path=path, full_page=True)
            store.close()
        print(f"wrote {path}")


def admin_page(args) -> None:
    """Three honest simulated reviewers, one who reverses the gold order and one who always submits
    the order shown, on 24 items and two gold items; the lead looks at the reliability table."""
    from labeling_ui.simulate import bad_panel, simulate_reviews
    from ranktune.gold import simulated_panel

    with tempfile.TemporaryDirectory() as tmp:
        store = seed_demo_store(Path(tmp) / "labels.db", {"lead": True}, overlap=3)
        store.gold_rate = 6
        for prompt, answers, ended in DEMO_ITEMS:
            for n in range(8):
                store.add_item(f"{prompt} ({n + 1})", answers, ended, "demo-policy", 1)
        store.add_gold([{"item_id": 1, "ranks": [1, 3, 2, 4]}, {"item_id": 2, "worst": 2}], "lead")
        simulate_reviews(store, simulated_panel(3, seed=2) + bad_panel("adversarial,lazy", seed=2))
        with running_server(build_app(store, Path(tmp) / "export")) as base, chromium() as browser:
            page = browser.new_page(viewport={"width": args.width, "height": 900}, device_scale_factor=1)
            log_in(page, base, "lead", "correct horse")
            page.wait_for_selector("#prompt .prompt-card", timeout=30_000)
            page.get_by_role("tab", name="Admin").click()
            page.locator("#reliability-table .virtual-row", has_text="sim-bad-1").wait_for(timeout=30_000)
            page.mouse.move(0, 0)
            page.locator("#reliability-table").scroll_into_view_if_needed()
            box = page.locator("#reliability-help").bounding_box()
            table = page.locator("#reliability-table").bounding_box()
            page.screenshot(path=args.admin_out, clip={"x": 0, "y": box["y"] - 10, "width": args.width,
                                                       "height": table["y"] + table["height"] - box["y"] + 20})
        store.close()
    print(f"wrote {args.admin_out}")


def arena_page(args) -> None:
    """docs/arena.png (two turns with two anonymous models, the second voted, then revealed) and
    docs/arena-leaderboard.png (after a few simulated votes). The bundled model plays both sides,
    under two names: real text, and nothing to download; a run's SFT and PPO policies are what
    the Arena serves in practice."""
    from labeling_ui.arena.models import ArenaEngine
    from labeling_ui.arena.store import ArenaStore

    with tempfile.TemporaryDirectory() as tmp:
        store = seed_demo_store(Path(tmp) / "labels.db", {"maria": False})
        arena = ArenaStore(store, rate_limit_per_minute=None)
        arena.add_model("sft", "smollm2-135m", "docs")
        arena.add_model("rlhf-round-1", "smollm2-135m", "docs")
        with ArenaEngine(arena.model_path, max_new_tokens=40, max_resident=1, seed=0) as engine, \
                running_server(build_app(store, Path(tmp) / "export",
                                         arena=(arena, engine, ["How do I keep basil fresh?"]))) as base, \
                chromium() as browser:
            page = browser.new_page(viewport={"width": args.width, "height": 900}, device_scale_factor=1)
            log_in(page, base, "maria", "correct horse")
            page.wait_for_selector(".rt-board .answer-card", timeout=30_000)
            page.get_by_role("tab", name="Arena").click()
            for text, vote in (("How do I keep basil fresh after buying it?", "#arena-vote-a"),
                               ("And in winter, when it is cold?", "#arena-vote-b")):
                page.fill("#arena-message textarea", text)
                page.click("#arena-send")
                page.wait_for_selector("#arena-vote-a:not([disabled])", timeout=300_000)
                page.click(vote)
                page.wait_for_selector("#arena-status :text('Vote saved')", timeout=30_000)
            page.click("#arena-reveal")
            page.wait_for_selector("#arena-status :text('A was')", timeout=30_000)
            page.wait_for_selector("#arena-leaderboard :text('2 votes')", timeout=30_000)
            page.wait_for_timeout(1500)  # the leaderboard's refresh (chained after the reveal) has ended
            page.mouse.move(0, 0)
            path = Path(args.out).with_name("arena.png")
            page.screenshot(path=str(path), full_page=True)
            print(f"wrote {path}")
            board = page.locator("#arena-leaderboard")
            board.scroll_into_view_if_needed()
            path = Path(args.out).with_name("arena-leaderboard.png")
            board.screenshot(path=str(path))
            print(f"wrote {path}")
        store.close()


if __name__ == "__main__":
    main()
