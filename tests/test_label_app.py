"""The labeling app over real HTTP on 127.0.0.1: every route refuses a request without a login
and gives away no data; reviewers cannot reach the admin handlers, the export or each other's
labels; logins are rate-limited; passwords are stored only as scrypt hashes; binding off
loopback without TLS warns. The item on screen travels with the page as its ticket: a retried
submit lands on its own item, never the next; a bad or foreign ticket saves nothing."""

from __future__ import annotations

import contextlib
import html
import json
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIWebSocketRoute
from starlette.routing import Mount, Route, WebSocketRoute

from labeling_ui import cli
from labeling_ui.accounts import SCRYPT_N, SCRYPT_R, hash_password, verify_password
from labeling_ui.config import ReviewerArguments, ServeArguments, StoreArguments
from labeling_ui.api.gate import is_api, is_docs
from labeling_ui.db import sqlite_url
from labeling_ui.server import PUBLIC_PATHS, SESSION_COOKIE, build_app
from labeling_ui.store import LabelStore
from labeling_ui.testing import FakeClock, GradioSession, http_login, running_server, submit_inputs

PASSWORD = "correct horse battery"
# Markers that must never appear in an answer to someone who is not allowed to see them.
SECRET_PROMPT = "PROMPT-zx81-what do okapis eat"
SECRET_ANSWERS = ["ANSWER-zx81-a leaves", "ANSWER-zx81-b fruit", "ANSWER-zx81-c fungi", "ANSWER-zx81-d clay"]
BEN_COMMENT, BEN_DEMO = "COMMENT-ben-only-4471", "DEMO-ben-only-4472"
SECRETS = [SECRET_PROMPT, *SECRET_ANSWERS, BEN_COMMENT, BEN_DEMO, "zx81"]


@dataclass
class Site:
    base: str
    app: object
    store: LabelStore
    export_dir: Path
    db_path: Path

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30, **kw)

    def login(self, name: str) -> httpx.Client:
        c = self.client()
        r = http_login(c, name, PASSWORD)
        assert r.status_code == 303 and r.headers["location"] == "/", r.text
        return c


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("label_app")
    store = LabelStore(sqlite_url(folder / "labels.db"), overlap=3)
    store.add_item(SECRET_PROMPT, SECRET_ANSWERS, [True] * 4, "pol", 1)
    store.add_item("second prompt", ["one", "two", "three"], [True] * 3, "pol", 1)
    for name, admin in (("ann", False), ("ben", False), ("boss", True)):
        store.accounts.add(name, PASSWORD, admin=admin)
    app = build_app(store, folder / "export")
    with running_server(app) as base:
        yield Site(base, app, store, folder / "export", folder / "labels.db")
    store.close()


# ---- every route, unauthenticated --------------------------------------------------------------

def app_routes(app) -> list[tuple[str, str, tuple[str, ...]]]:
    """(kind, path, methods) of every route in the app, through mounts and included routers.

    An unknown kind of route fails the walk, so a future FastAPI/Gradio cannot add routes that
    this test silently skips.
    """
    found = []

    def walk(routes, prefix: str):
        for r in routes:
            if isinstance(r, Mount):
                walk(r.routes, prefix + r.path)
            elif hasattr(r, "original_router"):  # FastAPI's lazily included router
                walk(r.original_router.routes, prefix + r.include_context.prefix)
            elif isinstance(r, (WebSocketRoute, APIWebSocketRoute)):
                found.append(("websocket", prefix + r.path, ()))
            elif isinstance(r, Route):  # APIRoute too
                found.append(("http", prefix + r.path, tuple(sorted(r.methods or ("GET",)))))
            else:
                raise AssertionError(f"unknown route type {type(r).__name__} at {prefix}: teach app_routes about it")

    walk(app.routes, "")
    return found


def concrete(path: str, db_path: Path) -> str:
    # Path parameters get values a real attack would use: the store's file for path-like ones.
    path = re.sub(r"=\{[^}:]+:path\}", "=" + str(db_path), path)
    path = re.sub(r"\{[^}:]+:path\}", str(db_path).lstrip("/"), path)
    return re.sub(r"\{[^}]+\}", "x1", path)


def assert_refused(r: httpx.Response, what: str, api: bool = False) -> None:
    """`api`: a JSON API route (/api/v1, tests/test_api.py), which wants a token and never redirects."""
    assert r.status_code in ((401,) if api else (401, 303)), f"{what}: HTTP {r.status_code}: {r.text[:200]}"
    if api:
        assert "API token required" in r.json()["error"], what
    elif r.status_code == 303:
        assert r.headers["location"] == "/login", what
        assert r.content == b"", what
    else:
        assert r.json() == {"error": "login required"}, what
    assert r.headers.get("x-frame-options") == "DENY", what
    for marker in SECRETS:
        assert marker not in r.text, f"{what} leaked {marker!r}"


def test_route_walk_finds_the_real_routes(site):
    routes = app_routes(site.app)
    paths = {p for _, p, _ in routes}
    assert len(routes) > 50
    assert {"/", "/config", "/gradio_api/queue/join", "/gradio_api/queue/data", "/login",
            "/gradio_api/file={path_or_url:path}", "/gradio_api/upload", "/api/v1/tasks/next",
            "/api/v1/docs", "/api/v1/openapi.json"} <= paths


def logged_out_cookie(site) -> str:
    c = site.login("ann")
    token = c.cookies[SESSION_COOKIE]
    assert c.get("/config").status_code == 200
    c.get("/logout")
    c.close()
    return token


@pytest.mark.parametrize("cookie", ["none", "garbage", "logged_out"])
def test_every_route_refuses_requests_without_a_valid_login(site, cookie):
    claims_before = site.store.counts()
    cookies = {}
    if cookie == "garbage":
        cookies = {SESSION_COOKIE: "x" * 43}
    elif cookie == "logged_out":
        cookies = {SESSION_COOKIE: logged_out_cookie(site)}
    probe = {"session_hash": "probe123", "fn_index": "0"}
    body = {"data": [], "fn_index": 0, "session_hash": "probe123", "event_data": None}
    checked = 0
    with site.client(cookies=cookies) as c:
        for kind, path, methods in app_routes(site.app):
            url = concrete(path, site.db_path)
            if path in PUBLIC_PATHS:
                continue  # checked below
            if kind == "websocket":
                r = c.get(url, headers={"connection": "upgrade", "upgrade": "websocket",
                                        "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="})
                assert r.status_code != 101, f"websocket {path} accepted without a login"
                checked += 1
                continue
            api = is_api(path) and not is_docs(path)
            for method in methods:
                kw = {"json": body} if method in ("POST", "PUT", "PATCH") else {}
                r = c.request(method, url, params=probe, headers={"accept": "application/json"}, **kw)
                if method == "HEAD":
                    assert r.status_code == 401, f"HEAD {path}: HTTP {r.status_code}"
                else:
                    assert_refused(r, f"{method} {path}", api)
                checked += 1
                if method == "GET" and api:
                    assert_refused(c.get(url, params=probe, headers={"accept": "text/html"}), f"GET {path}", api)
                elif method == "GET":  # a browser's page load is sent to the login page, with nothing else
                    r = c.get(url, params=probe, headers={"accept": "text/html"})
                    assert r.status_code == 303 and r.headers["location"] == "/login", f"GET {path} (html)"
                    assert_refused(r, f"GET {path} (html)")
        # Paths that are no route at all are refused the same way, before any 404 says what exists.
        for url in ("/nope", "/gradio_api/file=/etc/passwd", "/file=" + str(site.db_path), "/../labels.db"):
            assert_refused(c.get(url, headers={"accept": "application/json"}), url)
    assert checked > 50
    assert site.store.counts() == claims_before  # nothing was claimed or written on anyone's behalf


def test_login_and_logout_pages_show_no_data(site):
    with site.client() as c:
        page = c.get("/login")
        assert page.status_code == 200 and 'name="password"' in page.text
        assert not any(marker in page.text for marker in SECRETS)
        out = c.get("/logout")
        assert out.status_code == 303 and out.headers["location"] == "/login"


def test_login_gives_access_and_the_leak_markers_are_detectable(site):
    """The positive control for the sweep above: logged in, the same routes do answer."""
    ann = site.login("ann")
    assert ann.get("/config").status_code == 200
    loaded = GradioSession(ann).call("on_load")
    assert loaded["success"] and SECRET_PROMPT in json.dumps(loaded)
    ann.close()


def test_login_form_needs_its_csrf_token(site):
    with site.client() as c:
        r = c.post("/login", data={"username": "ann", "password": PASSWORD, "csrf": "forged"})
        assert r.status_code == 400 and SESSION_COOKIE not in r.cookies


# ---- what a reviewer who is not an admin can reach ----------------------------------------------

def test_reviewer_cannot_use_admin_handlers_export_or_files(site):
    ann, boss = site.login("ann"), site.login("boss")
    session = GradioSession(ann)
    loaded = session.call("on_load")
    assert loaded["output"]["data"][1] == {"visible": False, "__type__": "update"}  # no admin tab shown
    assert GradioSession(boss).call("on_load")["output"]["data"][1]["visible"] is True

    admin_fns = [n for n in session.names() if n.startswith("admin")]
    assert len(admin_fns) >= 10  # the view, the export, flag and written-answer reviews, disable/enable
    for name in admin_fns:
        result = session.call(name, [None] * session._inputs[name])
        assert result["success"] is False and result["output"]["error"] == "Admins only.", name
        assert "rankings by" not in json.dumps(result)
    for api_name in ("admin_view", "admin_export"):  # the REST form of the same handlers
        event = ann.post(f"/gradio_api/call/{api_name}", json={"data": [False, False, None] if "export" in api_name else []})
        stream = ann.get(f"/gradio_api/call/{api_name}/{event.json()['event_id']}")
        assert "event: error" in stream.text and "Admins only." in stream.text and "rankings by" not in stream.text
    assert not site.export_dir.exists()

    # An admin can see the tab and export; the files are then served to the admin and refused to the reviewer.
    assert "Saved." in json.dumps(session.submit([1, 2, 3, 4]))
    view = GradioSession(boss).call("admin_view")
    assert view["success"] and "1 rankings by 1 reviewers" in view["output"]["data"][0], view
    summary, _ = (r := GradioSession(boss).call("admin_export", [False, False, None]))["output"]["data"]
    assert r["success"] and "Exported 1 rankings" in summary, summary
    pairs = site.export_dir.resolve() / "pairs.jsonl"
    assert pairs.is_file()
    assert boss.get(f"/gradio_api/file={pairs}").status_code == 200
    assert boss.get(f"/gradio_api/file={site.db_path}").status_code in (403, 404)  # only the export is served
    refused = ann.get(f"/gradio_api/file={pairs}")
    assert refused.status_code == 403 and "chosen" not in refused.text
    assert ann.post("/gradio_api/upload", files={"files": ("x.txt", b"hi")}).status_code == 403
    ann.close(), boss.close()


def test_reviewer_cannot_see_another_reviewers_labels(site):
    ben, ann = site.login("ben"), site.login("ann")
    ben_session = GradioSession(ben)
    first = ben_session.call("on_load")
    assert first["success"]
    saved = ben_session.submit([4, 3, 2, 1], flags=["broken"], comment=BEN_COMMENT, better=BEN_DEMO)
    assert saved["success"] and "Saved" in json.dumps(saved)
    assert len([r for r in site.store.rankings() if r["reviewer"] == "ben"]) == 1

    ann_session = GradioSession(ann)
    seen = [ann_session.call(name) for name in ("on_load", "on_undo", "admin_view")]
    text = json.dumps(seen)
    assert BEN_COMMENT not in text and BEN_DEMO not in text
    assert "Nothing to undo" in text or "reopened" in text  # ann's own undo, never ben's
    # ann presenting ben's page session gets neither his screen nor a way to act in it.
    spy = GradioSession(ann, session_hash=ben_session.session_hash)
    for name in ("on_load", "on_undo"):
        result = spy.call(name)
        assert result["success"] is False and result.get("status") == 403, name
        assert BEN_COMMENT not in json.dumps(result)
    sneaky = ann.post("/gradio_api/queue/join", headers={"content-type": "Application/JSON; charset=utf-8"},
                      content=json.dumps({"data": [], "fn_index": spy.fn_index("on_undo"),
                                          "session_hash": ben_session.session_hash}))
    assert sneaky.status_code == 403
    # ben's own undo gives him back his comment and written answer: the markers do travel to their owner.
    assert BEN_COMMENT in json.dumps(ben_session.call("on_undo"))
    ben.close(), ann.close()


# ---- the item on screen travels with the page (its ticket), not in server state ------------------

@contextlib.contextmanager
def two_items(tmp_path, reviewers=("ann",), overlap=1):
    """A fresh store with items "first prompt" and "second prompt" (4 answers each), served; yields (base, store)."""
    store = LabelStore(sqlite_url(tmp_path / "labels.db"), overlap=overlap, shuffle=False)
    for prompt in ("first prompt", "second prompt"):
        store.add_item(prompt, [f"{prompt} answer {j}" for j in range(4)], [True] * 4, "pol", 1)
    for name in reviewers:
        store.accounts.add(name, PASSWORD)
    try:
        with running_server(build_app(store, tmp_path / "export")) as base:
            yield base, store
    finally:
        store.close()


def ranked(store) -> dict[str, list]:
    """prompt -> the ranks of each active ranking of it; and the item ids of skips, under "skipped"."""
    out: dict[str, list] = {}
    for r in store.rankings():
        out.setdefault(r["prompt"], []).append(r["ranks"])
    out["skipped"] = [s["item_id"] for s in store.submissions() if s["skipped"]]
    return out


def status_of(msg: dict) -> str:
    """The status line's text (it is HTML: an icon and the words)."""
    assert msg["success"], msg
    return html.unescape(re.sub(r"<[^>]+>", "", msg["output"]["data"][-1] or ""))


def prompt_of(msg: dict, name: str) -> str:
    return msg["output"]["data"][4 if name == "on_load" else 2]


@pytest.mark.parametrize("action", ["submit", "skip"])
def test_a_retry_after_a_lost_reply_never_lands_on_the_next_item(tmp_path, action):
    """The reply to a submit is lost (a network drop), the page still shows the first item and its
    ticket, and the reviewer clicks again: the very same request reaches the server twice."""
    with two_items(tmp_path) as (base, store), httpx.Client(base_url=base, timeout=30) as c:
        assert http_login(c, "ann", PASSWORD).status_code == 303
        page = GradioSession(c)
        assert "first prompt" in prompt_of(page.call("on_load"), "on_load")
        if action == "submit":
            name, data = "on_submit", submit_inputs(page.ticket, [2, 1, 4, 3])
        else:
            name, data = "on_skip", [page.ticket, [], "", ""]
        first = page.call(name, data)
        assert status_of(first).startswith("Saved." if action == "submit" else "Skipped.")
        assert "second prompt" in prompt_of(first, name)
        retry = page.call(name, data)  # the same ticket and ranks, as the page sends them again
        assert status_of(retry).startswith("Already saved." if action == "submit" else "Already skipped.")
        assert "second prompt" in prompt_of(retry, name)  # the retry's reply shows the next item...
        if action == "submit":  # ...and nothing landed on it
            assert ranked(store) == {"first prompt": [[2, 1, 4, 3]], "skipped": []}
        else:
            assert ranked(store) == {"skipped": [1]}
        progress = store.progress("ann")
        assert progress.done + progress.skipped == 1
        # The page goes on with the second item's ticket (from the retry's reply).
        assert "Saved." in status_of(page.submit([1, 1, 2, 3]))
        assert ranked(store)["second prompt"] == [[1, 1, 2, 3]]


@pytest.mark.parametrize("ticket", [None, "", "not json", "[1, 2]", '{"assignment_id": "1", "token": "abcdefgh1"}',
                                    '{"assignment_id": 1, "token": "abcdefgh1", "k": 99}', "{" * 600])
def test_a_missing_or_malformed_ticket_saves_nothing_and_says_so(tmp_path, ticket):
    with two_items(tmp_path) as (base, store), httpx.Client(base_url=base, timeout=30) as c:
        assert http_login(c, "ann", PASSWORD).status_code == 303
        page = GradioSession(c)
        page.call("on_load")
        for name, data in (("on_submit", submit_inputs(ticket, [1, 2, 3, 4])),
                           ("on_skip", [ticket, [], "", ""])):
            msg = page.call(name, data)
            assert "Nothing was saved" in status_of(msg) and "Reload the page" in status_of(msg), name
            assert msg["output"]["data"][0] == {"__type__": "update"}  # the page keeps its ticket
        assert ranked(store) == {"skipped": []}
        assert "Saved." in status_of(page.submit([1, 2, 3, 4]))  # the page's own ticket still works


def test_a_ticket_for_another_reviewers_item_is_refused(tmp_path):
    with two_items(tmp_path, reviewers=("ann", "ben"), overlap=2) as (base, store), \
            httpx.Client(base_url=base, timeout=30) as a, httpx.Client(base_url=base, timeout=30) as b:
        for client, name in ((a, "ann"), (b, "ben")):
            assert http_login(client, name, PASSWORD).status_code == 303
        ann, ben = GradioSession(a), GradioSession(b)
        ann.call("on_load"), ben.call("on_load")  # both are shown the first item, each with their own claim
        bens_ticket, anns_ticket = ben.ticket, ann.ticket
        refused = ann.call("on_submit", submit_inputs(bens_ticket, [1, 2, 3, 4]))
        assert status_of(refused) == "Nothing was saved: This item is not assigned to you."
        assert "Saved." in status_of(ann.submit([1, 2, 3, 4]))
        # ben sends ann's ticket (her token, now used) with his own item: refused too.
        forged = json.dumps({**json.loads(bens_ticket), "token": json.loads(anns_ticket)["token"]})
        refused = ben.call("on_submit", submit_inputs(forged, [4, 3, 2, 1]))
        assert status_of(refused) == "Nothing was saved: This submit token belongs to another submission."
        assert [(r["reviewer"], r["ranks"]) for r in store.rankings()] == [("ann", [1, 2, 3, 4])]


def test_admin_agreement_alpha_matches_krippendorffs_worked_example():
    """The admin tab's Krippendorff's alpha (ordinal), on the example in Krippendorff (2011),
    "Computing Krippendorff's alpha-reliability": 4 coders, 12 units, published alpha 0.815."""
    import numpy as np

    from labeling_ui.stats import _ordinal_alpha

    n = np.nan
    data = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
                     [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
                     [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
                     [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]])
    assert _ordinal_alpha(data) == pytest.approx(0.815, abs=5e-4)
    assert _ordinal_alpha(np.array([[1.0, 2.0], [1.0, 2.0]])) == pytest.approx(1.0)


# ---- logins and passwords ----------------------------------------------------------------------

def test_login_attempts_are_rate_limited(tmp_path):
    clock = FakeClock()
    store = LabelStore(sqlite_url(tmp_path / "labels.db"), clock=clock, max_failures=3,
                       max_failures_per_client=6, window_s=600)
    store.add_item("p", ["a", "b"], [True, True], "pol", 1)
    for name in ("ann", "ben"):
        store.accounts.add(name, PASSWORD)
    with running_server(build_app(store, tmp_path / "export")) as base, httpx.Client(base_url=base) as c:
        for _ in range(3):
            r = http_login(c, "ann", "wrong password")
            assert r.status_code == 401 and "Wrong name or password" in r.text
        locked = http_login(c, "ann", PASSWORD)  # the right password no longer helps
        assert locked.status_code == 429 and "Too many failed logins" in locked.text
        assert SESSION_COOKIE not in c.cookies and c.get("/config").status_code == 401

        assert http_login(c, "ben", PASSWORD).status_code == 303  # a name's lock is that name's
        c.get("/logout")
        for name in ("x1", "x2", "x3"):  # 6 failures from this address in all
            assert http_login(c, name, "wrong password").status_code == 401
        assert http_login(c, "ben", PASSWORD).status_code == 429  # the address is locked out too

        clock.advance(seconds=601)  # the window passes
        assert http_login(c, "ann", PASSWORD).status_code == 303
        assert c.get("/config").status_code == 200
    store.close()


def test_passwords_are_stored_as_scrypt_hashes_never_in_clear(tmp_path, site, capfd, caplog):
    caplog.set_level("DEBUG")
    secret = "Tr0ub4dor&3-never-in-clear"
    pw_file = tmp_path / "pw.txt"
    pw_file.write_text(secret + "\n")
    runs = tmp_path / "runs"
    for name, admin in (("zed", True), ("yan", False)):  # the add-reviewer command, minus argument parsing
        cli.cmd_add_reviewer(StoreArguments(runs_dir=str(runs)),
                             ReviewerArguments(name=name, admin=admin, password_file=str(pw_file)))
    db = runs / "default" / "labels.db"
    store = LabelStore(sqlite_url(db))
    assert store.accounts.login("zed", secret, "test").is_admin
    store.close()

    with sqlite3.connect(db) as conn:
        hashes = dict(conn.execute("SELECT name, password_hash FROM reviewers"))
    for stored in hashes.values():
        scheme, n, r, p, salt, digest = stored.split("$")
        assert scheme == "scrypt" and int(n) >= 2**14 and int(r) >= 8 and len(bytes.fromhex(digest)) >= 32
        assert verify_password(secret, stored) and not verify_password(secret + "x", stored)
    assert hashes["zed"] != hashes["yan"]  # per-user salt: equal passwords, different hashes
    raw = b"".join(f.read_bytes() for f in db.parent.glob("labels.db*"))
    assert secret.encode() not in raw

    # The slow part is real: one hash costs scrypt's N * r * 128 bytes and measurable time.
    assert SCRYPT_N * SCRYPT_R * 128 >= 16 * 1024**2
    start = time.perf_counter()
    hash_password(secret)
    assert time.perf_counter() - start > 0.005

    # Signing in over HTTP logs neither the password nor the session token; the store keeps only its hash.
    with site.client() as c:
        assert http_login(c, "ann", PASSWORD).status_code == 303
        with site.client() as other:
            assert http_login(other, "ann", "a wrong one").status_code == 401
        token = c.cookies[SESSION_COOKIE]
    out, err = capfd.readouterr()
    # The test's own HTTP client logs what it sends; only the server's side counts here.
    server_side = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = out + err + "\n".join(server_side)
    assert secret not in logged and PASSWORD not in logged and "a wrong one" not in logged and token not in logged
    site_raw = b"".join(f.read_bytes() for f in site.db_path.parent.glob("labels.db*"))
    assert PASSWORD.encode() not in site_raw and token.encode() not in site_raw


# ---- binding -----------------------------------------------------------------------------------

def test_binds_to_loopback_by_default_and_warns_when_exposed_without_tls(tmp_path, monkeypatch, capsys):
    import uvicorn

    from labeling_ui import server

    assert ServeArguments().host == "127.0.0.1"
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append((app, kw)))
    real_build = server.build_app  # only the TLS case's app is served below; the others need not be built
    monkeypatch.setattr(server, "build_app", lambda *a, secure_cookies=False, **kw:
                        real_build(*a, secure_cookies=True, **kw) if secure_cookies else None)
    store = LabelStore(sqlite_url(tmp_path / "labels.db"))
    store.add_item("p", ["a", "b"], [True, True], "pol", 1)
    store.accounts.add("ann", PASSWORD)
    cases = [("127.0.0.1", None, False), ("localhost", None, False), ("::1", None, False),
             ("0.0.0.0", None, True), ("192.168.1.20", None, True), ("::", None, True),
             ("0.0.0.0", ("cert.pem", "key.pem"), False)]
    for host, tls, warns in cases:
        server.serve(store, host, 7860, tmp_path / "export", ssl_certfile=tls and tls[0], ssl_keyfile=tls and tls[1])
        err = capsys.readouterr().err
        assert ("without TLS" in err) == warns, (host, tls, err)
        assert started[-1][1]["host"] == host
    # With TLS the session cookie is marked Secure (never sent over plain HTTP).
    with running_server(started[-1][0]) as base, httpx.Client(base_url=base) as c:
        form = c.get("/login")
        assert "secure" in form.headers["set-cookie"].lower()
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        # Served over plain HTTP here, so the client rightly holds back the Secure cookie: send it by hand.
        r = c.post("/login", data={"username": "ann", "password": PASSWORD, "csrf": csrf},
                   headers={"cookie": f"ranktune_login_csrf={csrf}"})
        session_cookie = [v for k, v in r.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v]
        assert r.status_code == 303 and "secure" in session_cookie[0].lower()
    store.close()


def test_a_disabled_reviewers_session_ends_at_once_despite_the_session_cache(site):
    """The gate caches a session lookup for a few seconds (a page loads dozens of assets); disabling a
    reviewer from this server must not leave them those seconds."""
    site.store.accounts.add("dee", PASSWORD)
    dee = site.login("dee")
    assert dee.get("/config").status_code == 200  # the lookup is cached now
    site.store.set_disabled("boss", "dee")
    assert dee.get("/config").status_code == 401
    dee.close()
