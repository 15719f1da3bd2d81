"""Helpers for tests, demos and screenshots: a controllable clock, a server on a free loopback
port in a background thread, and a headless Debian Chromium."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


class FakeClock:
    """A clock that moves only when told to (claim expiry without sleeping)."""

    def __init__(self, start: datetime = datetime(2026, 1, 1, 9, 0, 0)):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs) -> None:
        self.now += timedelta(**kwargs)


@contextlib.contextmanager
def running_server(app, host: str = "127.0.0.1", timeout_s: float = 30) -> Iterator[str]:
    """Serve an ASGI app on a free port of `host`; yields its base URL; stops it on exit."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))  # the OS picks a free port; handing uvicorn the bound socket leaves no race
    port = sock.getsockname()[1]
    # A page left open holds Gradio's event stream; waiting for it to end would stall every stop.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Debian Chromium through Playwright (never a downloaded browser build)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def log_in(page, base: str, name: str, password: str) -> None:
    page.goto(base + "/")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("button[type=submit]")


def http_login(client, name: str, password: str):
    """Sign in through the real login form (CSRF cookie and field included); returns the response."""
    import re

    page = client.get("/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    if not found:
        raise AssertionError(f"no CSRF field on the login page (HTTP {page.status_code})")
    return client.post("/login", data={"username": name, "password": password, "csrf": found.group(1)})


# The page keeps the item on screen in a hidden ticket (app.make_ticket), the first of the task
# outputs (on_load puts "who" and the admin tab before them). The page sends it back verbatim as the
# first input of a submit or skip.
TICKET_OUTPUT = {"on_load": 2, "on_submit": 0, "on_skip": 0, "on_undo": 0}


def ticket_in(msg: dict, name: str) -> str | None:
    """The ticket that handler `name`'s reply puts on the page; None if the reply leaves it as it was."""
    if not msg.get("success") or name not in TICKET_OUTPUT:
        return None
    value = msg["output"]["data"][TICKET_OUTPUT[name]]
    return value if isinstance(value, str) else None  # {"__type__": "update"} (gr.skip) keeps the old one


def submit_inputs(ticket: str | None, ranks: list | None = None, flags=(), comment: str = "", better: str = "",
                  reply: dict | None = None) -> list:
    """on_submit's inputs as the page sends them: the ticket, the widget's answer (JSON, by shown
    index, naming the item's assignment as widget.js does: {"ranks": ...} or `reply`), the flags,
    the comment and the written answer."""
    import json

    try:
        aid = json.loads(ticket)["assignment_id"] if ticket else None
    except (ValueError, TypeError, KeyError):
        aid = None
    answer = dict(reply) if reply is not None else {"ranks": list(ranks or [])}
    return [ticket, json.dumps({"assignment_id": aid, **answer}), list(flags), comment, better]


class GradioSession:
    """Drives the app's event handlers over HTTP the way the page does: join the queue, read the
    result from the event stream. Handlers are looked up by function name in /config, so the
    tests need no hard-coded indices. Like the page, it keeps the ticket of the item on screen
    from each reply (`ticket`), and `submit`/`skip` send it back."""

    def __init__(self, client, session_hash: str | None = None, timeout_s: float = 30):
        import secrets

        self.client, self.timeout_s = client, timeout_s
        self.session_hash = session_hash or secrets.token_hex(8)
        self._fns: dict[str, int] | None = None
        self._inputs: dict[str, int] = {}
        self.ticket: str | None = None

    def fn_index(self, name: str) -> int:
        if self._fns is None:
            config = self.client.get("/config")
            config.raise_for_status()
            self._fns = {}
            for dep in config.json()["dependencies"]:
                if dep.get("backend_fn") and dep.get("api_name"):
                    self._fns.setdefault(dep["api_name"], dep["id"])
                    self._inputs.setdefault(dep["api_name"], len(dep.get("inputs") or []))
        return self._fns[name]

    def names(self) -> list[str]:
        self.fn_index("on_load")
        return sorted(self._fns)

    def submit(self, ranks: list | None = None, flags=(), comment: str = "", better: str = "",
               reply: dict | None = None) -> dict:
        """Submit an answer (ranks by shown index, or a question's `reply`) for the item on screen, as
        the page does (its ticket included)."""
        return self.call("on_submit", submit_inputs(self.ticket, ranks, flags, comment, better, reply))

    def skip(self, flags=(), comment: str = "", better: str = "") -> dict:
        return self.call("on_skip", [self.ticket, list(flags), comment, better])

    def call(self, name: str, data: list | None = None) -> dict:
        """The `process_completed` message: `success`, and `output` ({"data": [...]} or {"error": ...}).
        A reply that puts a new ticket on the page updates `ticket`."""
        msg = self._call(name, data)
        ticket = ticket_in(msg, name)
        if ticket is not None:  # "" too: nothing is on screen
            self.ticket = ticket
        return msg

    def _call(self, name: str, data: list | None) -> dict:
        import json

        join = self.client.post("/gradio_api/queue/join", json={
            "data": data or [], "fn_index": self.fn_index(name), "session_hash": self.session_hash,
            "event_data": None, "trigger_id": None})
        if join.status_code != 200:
            return {"success": False, "status": join.status_code, "output": {"error": join.text}}
        event_id = join.json()["event_id"]
        deadline = time.monotonic() + self.timeout_s
        with self.client.stream("GET", "/gradio_api/queue/data", params={"session_hash": self.session_hash},
                                timeout=self.timeout_s) as stream:
            if stream.status_code != 200:
                return {"success": False, "status": stream.status_code, "output": {"error": stream.read().decode()}}
            for line in stream.iter_lines():
                if time.monotonic() > deadline:
                    break
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") == event_id and msg.get("msg") == "process_completed":
                    return msg
        raise AssertionError(f"{name}: no result within {self.timeout_s} s")


DEMO_ITEMS = [
    ("How do I keep basil fresh after buying it?",
     ["Trim the stems and stand the bunch in a glass of water on the counter, loosely covered with a bag. "
      "Keep it out of the fridge: cold turns the leaves black within a day or two.",
      "Put it in the fridge.",
      "Basil stays fresh longest like cut flowers: a jar of water at room temperature, away from direct sun. "
      "Change the water every couple of days and pinch off leaves as you need them.",
      "Fresh basil can be kept fresh by keeping it fresh. To keep basil fresh you should keep it in a place "
      "where it stays fresh, for example a"],
     [True, True, True, False]),
    ("Explain in one sentence why the sky is blue.",
     ["Air molecules scatter short (blue) wavelengths of sunlight much more than long (red) ones, so blue "
      "light reaches our eyes from every direction of the sky.",
      "Because it reflects the ocean.",
      "Rayleigh scattering.",
      "The sky is blue because of the way sunlight interacts with the atmosphere."],
     [True, True, True, True]),
    ("Write a haiku about Mondays.",
     ["Alarm cuts the dark\ncoffee steam and unread mail\nthe week clears its throat",
      "Monday again, sigh.",
      "Gray light on the desk\nfive days stacked like folded shirts\nI start with the first"],
     [True, True, True]),
]


def seed_demo_store(path: Path, reviewers: dict[str, bool] | None = None, password: str = "correct horse",
                    overlap: int = 2):
    """A small store to look at: three prompts with 3-4 answers each, and reviewers (name -> admin)."""
    from labeling_ui.db import sqlite_url
    from labeling_ui.store import LabelStore

    store = LabelStore(sqlite_url(Path(path)), overlap=overlap)
    for prompt, answers, ended in DEMO_ITEMS:
        store.add_item(prompt, answers, ended, "demo-policy", 1)
    for name, admin in (reviewers or {"alice": True}).items():
        store.accounts.add(name, password, admin=admin)
    return store
