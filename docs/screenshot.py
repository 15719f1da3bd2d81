"""Takes docs/labeling.png: the ranking page, logged in, on an item with four answers.

    .venv/bin/python docs/screenshot.py [--out docs/labeling.png]

Seeds a throwaway store with a few prompts and answers (labeling_ui.testing.DEMO_ITEMS), serves
the real app on a free loopback port and photographs it in headless Debian Chromium.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labeling_ui.server import build_app  # noqa: E402
from labeling_ui.testing import chromium, log_in, running_server, seed_demo_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("labeling.png")))
    parser.add_argument("--width", type=int, default=1440)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
