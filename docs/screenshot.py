"""Takes docs/labeling.png (the ranking page, logged in, on an item with four answers) and
docs/admin.png (the admin tab's reliability table after a simulated panel with two bad reviewers).

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

from labeling_ui.server import build_app  # noqa: E402
from labeling_ui.testing import DEMO_ITEMS, chromium, log_in, running_server, seed_demo_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("labeling.png")))
    parser.add_argument("--admin_out", default=str(Path(__file__).with_name("admin.png")))
    parser.add_argument("--width", type=int, default=1440)
    args = parser.parse_args()
    ranking_page(args)
    admin_page(args)


def ranking_page(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = seed_demo_store(Path(tmp) / "labels.db", {"maria": False, "sam": False})
        # Someone else has been at work, so the progress line is not all zeros.
        other = store.next_task("sam")
        store.submit("sam", other.assignment_id, [1, 3, 2, 4], token="demo-token-1")
        with running_server(build_app(store, Path(tmp) / "export")) as base, chromium() as browser:
            page = browser.new_page(viewport={"width": args.width, "height": 900}, device_scale_factor=1)
            log_in(page, base, "maria", "correct horse")
            page.wait_for_selector("#answer-3 .answer-card", timeout=30_000)
            page.wait_for_function("document.activeElement?.matches('#rank-0 input')")
            page.keyboard.type("2")  # a ranking half typed in, as a reviewer would see it
            page.keyboard.press("Tab")
            page.keyboard.type("3")
            page.keyboard.press("Tab")
            page.mouse.move(0, 0)
            page.screenshot(path=args.out, full_page=True)
        store.close()
    print(f"wrote {args.out}")


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


if __name__ == "__main__":
    main()
