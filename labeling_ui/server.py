"""`python -m labeling_ui serve`: our login page and session cookie in front of the Gradio app.

The gate is an ASGI middleware around the whole application: a request without a valid session
is answered before any route runs (HTML pages are redirected to /login, everything else gets
401). So no Gradio route - /config, /gradio_api/*, /file=, uploads, or any route a later Gradio
adds - is reachable without logging in. Gradio reads the same session through
`auth_dependency`, which is how event handlers learn the reviewer (request.username).
File routes are for admins only (reviewers never need files; the admin's export does).

Gradio keys a page's state and its event stream by a `session_hash` the browser makes up; it
does not tie that hash to a login. The gate does: the first login to use a hash owns it, and
another login presenting it (to read that page's results, or to act in it) is refused.

Cookies: HttpOnly, SameSite=Lax (so other sites cannot make a logged-in browser call Gradio's
POST routes), Secure when served over TLS. The login form carries a double-submit CSRF token.
"""

from __future__ import annotations

import gc
import html
import ipaddress
import json
import re
import secrets
import sys
from collections import OrderedDict
from http.cookies import SimpleCookie
from urllib.parse import parse_qs
from pathlib import Path

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from labeling_ui.accounts import LoginRefused
from labeling_ui.api.gate import ApiGate, Refusal, is_api, is_docs
from labeling_ui.login_cache import LoginCache
from labeling_ui.store import LabelStore
from labeling_ui.tasks import StoreUnavailable

SESSION_COOKIE = "ranktune_session"
CSRF_COOKIE = "ranktune_login_csrf"
PUBLIC_PATHS = frozenset({"/login", "/logout"})
ADMIN_ONLY_PREFIXES = ("/gradio_api/file", "/file=", "/file/", "/gradio_api/upload", "/upload",
                       "/gradio_api/monitoring", "/monitoring", "/gradio_api/dev", "/dev/")
SECURITY_HEADERS = [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"), (b"content-security-policy", b"frame-ancestors 'none'; img-src 'self' data: blob:")]
HASH_IN_PATH = re.compile(r"^/gradio_api/(?:heartbeat|stream)/([^/]+)")
MAX_JSON_BODY = 4 * 1024**2  # an event's inputs: rank boxes, a comment, at most a written answer


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cookie(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == b"cookie":
            jar = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is the same as none
                continue
            if name in jar:
                return jar[name].value
    return None


def session_cache(store: LabelStore) -> LoginCache:
    """Session lookups (labeling_ui/login_cache.py); logout forgets its cookie at once."""
    return LoginCache(store.accounts.session_user, lambda: store.accounts.changes, limit=10_000)


class PageOwners:
    """Which reviewer a Gradio page session (session_hash) belongs to."""

    def __init__(self, limit: int = 200_000):
        self._owner: OrderedDict[str, int] = OrderedDict()
        self.limit = limit

    def claim(self, session_hash: str, reviewer_id: int) -> bool:
        owner = self._owner.setdefault(session_hash, reviewer_id)
        self._owner.move_to_end(session_hash)
        while len(self._owner) > self.limit:  # the oldest pages are long closed
            self._owner.popitem(last=False)
        return owner == reviewer_id


async def _read_body(receive) -> bytes | None:
    """The whole request body, or None when it is over MAX_JSON_BODY or the client left."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_JSON_BODY:
            return None
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """A `receive` that hands the app the body already read, then behaves as the original."""
    sent = False

    async def again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


class SessionGate:
    """ASGI middleware: no valid session, no access (besides the login page)."""

    def __init__(self, app, sessions: LoginCache, api: ApiGate | None = None):
        self.app, self.sessions, self.pages, self.api = app, sessions, PageOwners(), api

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        path = scope["path"]
        if path in PUBLIC_PATHS:
            return await self.app(scope, receive, send_with_headers)
        if is_api(path) and not is_docs(path):
            return await self._api(scope, receive, send_with_headers)
        try:
            user = await self.sessions.user(_cookie(scope.get("headers", []), SESSION_COOKIE))
        except StoreUnavailable as err:
            return await self._refuse(scope, send_with_headers, 503, str(err), retry_after=2, redirect=False)
        if user is None:
            return await self._refuse(scope, send_with_headers, 401, "login required")
        if not user.is_admin and path.startswith(ADMIN_ONLY_PREFIXES):
            return await self._refuse(scope, send_with_headers, 403, "admins only")
        hashes = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [])
        if found := HASH_IN_PATH.match(path):
            hashes.append(found.group(1))
        if scope["type"] == "http" and scope.get("method") == "POST" and path.startswith("/gradio_api/"):
            # Any body but a file upload: FastAPI reads JSON under more spellings of content-type
            # than one could list here, so the body is checked whatever it claims to be.
            content_type = dict(scope.get("headers", [])).get(b"content-type", b"").lower()
            if not content_type.startswith(b"multipart/"):
                body = await _read_body(receive)
                if body is None:
                    return await self._refuse(scope, send_with_headers, 413, "request body too large")
                receive = _replay(body, receive)
                try:
                    sent_hash = json.loads(body).get("session_hash")
                except (ValueError, AttributeError):
                    sent_hash = None  # not ours to judge: the route answers malformed JSON itself
                if isinstance(sent_hash, str):
                    hashes.append(sent_hash)
        if not all(self.pages.claim(h, user.id) for h in hashes):
            return await self._refuse(scope, send_with_headers, 403, "this page belongs to another login")
        scope.setdefault("state", {})["reviewer"] = user
        return await self.app(scope, receive, send_with_headers)

    async def _api(self, scope, receive, send):
        """A JSON API request: a bearer token or nothing (the page's cookie alone never gets in)."""
        if scope["type"] != "http" or self.api is None:
            return await self._refuse(scope, send, 404, "no such route")
        try:
            got = await self.api.check(scope.get("headers", []))
        except StoreUnavailable as err:
            return await self._refuse(scope, send, 503, str(err), retry_after=2, redirect=False)
        if isinstance(got, Refusal):
            return await self._refuse(scope, send, got.status, got.message, got.retry_after, redirect=False)
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            body = await _read_body(receive)
            if body is None:
                return await self._refuse(scope, send, 413, f"request body over {MAX_JSON_BODY // 1024**2} MiB",
                                          redirect=False)
            receive = _replay(body, receive)
        scope.setdefault("state", {})["reviewer"] = got
        return await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope, send, status: int, why: str, retry_after: float | None = None, redirect: bool = True):
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 4000 + status})
        accept = dict(scope.get("headers", [])).get(b"accept", b"").decode("latin-1")
        if redirect and status == 401 and scope.get("method") == "GET" and "text/html" in accept:
            headers = [(b"location", b"/login"), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 303, "headers": headers})
            return await send({"type": "http.response.body", "body": b""})
        body = json.dumps({"error": why}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if retry_after is not None:
            headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in · ranktune labeling</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<style>
body{{font-family:system-ui,sans-serif;background:#f4f5f9;display:flex;min-height:100vh;align-items:center;
justify-content:center;margin:0}}
form{{background:#fff;padding:32px 36px;border-radius:12px;box-shadow:0 2px 12px #0002;width:320px}}
h1{{font-size:1.25rem;margin:0 0 4px}} p.sub{{color:#666;margin:0 0 20px;font-size:.9rem}}
label{{display:block;font-size:.85rem;margin:12px 0 4px;color:#333}}
input{{width:100%;box-sizing:border-box;padding:9px 10px;border:1px solid #ccd;border-radius:6px;font-size:1rem}}
button{{margin-top:20px;width:100%;padding:10px;border:0;border-radius:6px;background:#4f6bed;color:#fff;
font-size:1rem;cursor:pointer}} .error{{color:#a12a1c;background:#fdecea;padding:8px 10px;border-radius:6px;
font-size:.9rem}}
</style></head><body><form method="post" action="/login">
<h1>ranktune labeling</h1><p class="sub">Sign in to rank answers.</p>{error}
<input type="hidden" name="csrf" value="{csrf}">
<label for="username">Name</label><input id="username" name="username" autocomplete="username" autofocus required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form></body></html>"""


def build_app(store: LabelStore, export_dir: Path, guidelines: str | None = None, slots: int = 8,
              secure_cookies: bool = False, arena=None, api_rate_per_second: float = 20.0,
              api_burst: float = 40.0) -> FastAPI:
    import gradio as gr

    from labeling_ui.api.routes import build_api
    from labeling_ui.app import build_blocks, page_css, page_head

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    sessions = session_cache(store)

    def login_page(error: str = "", status: int = 200) -> HTMLResponse:
        csrf = secrets.token_urlsafe(16)
        note = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        resp = HTMLResponse(LOGIN_PAGE.format(error=note, csrf=csrf), status_code=status)
        resp.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=secure_cookies, path="/login")
        return resp

    @app.get("/login")
    def get_login():
        return login_page()

    @app.post("/login")
    def post_login(request: Request, username: str = Form(""), password: str = Form(""), csrf: str = Form("")):
        expected = request.cookies.get(CSRF_COOKIE, "")
        if not expected or not secrets.compare_digest(expected, csrf):
            return login_page("Your sign-in form expired. Please try again.", 400)
        client = request.client.host if request.client else "?"
        try:
            user = store.accounts.login(username.strip(), password, client)
            session = store.accounts.new_session(user)
        except LoginRefused as err:
            return login_page(str(err), 429 if err.rate_limited else 401)
        except StoreUnavailable as err:
            return login_page(str(err), 503)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="lax",
                        secure=secure_cookies, path="/", max_age=int(store.accounts.session_ttl.total_seconds()))
        resp.delete_cookie(CSRF_COOKIE, path="/login")
        return resp

    @app.get("/logout")
    @app.post("/logout")
    def logout(request: Request):
        token = request.cookies.get(SESSION_COOKIE)
        sessions.forget(token)
        try:
            store.accounts.end_session(token)
        except StoreUnavailable:  # the cookie still goes; the stored session ends by its expiry
            pass
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    def gradio_user(request: Request) -> str | None:
        user = request.scope.get("state", {}).get("reviewer")  # set by the gate for this request
        return user.name if user else None

    app.mount("/api/v1", build_api(store, Path(export_dir)))  # before Gradio's "/" so it matches first
    blocks = build_blocks(store, export_dir, guidelines, slots, arena=arena)
    theme = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                           font_mono=["ui-monospace", "monospace"])  # no web fonts: the app works offline
    app = gr.mount_gradio_app(app, blocks, path="/", auth_dependency=gradio_user, ssr_mode=False,
                              footer_links=[], theme=theme, css=page_css(), head=page_head(),
                              allowed_paths=[str(Path(export_dir).resolve())], run_history=False)
    api_gate = ApiGate(store, api_rate_per_second, api_burst)
    app.add_middleware(SessionGate, sessions=sessions, api=api_gate)  # added last = runs first, before every route
    return app


def serve(store: LabelStore, host: str, port: int, export_dir: Path, guidelines: str | None = None, slots: int = 8,
          ssl_certfile: str | None = None, ssl_keyfile: str | None = None, arena=None,
          api_rate_per_second: float = 20.0, api_burst: float = 40.0) -> None:
    import uvicorn

    tls = bool(ssl_certfile and ssl_keyfile)
    if not is_loopback(host) and not tls:
        print(f"warning: serving on {host} without TLS: passwords and session cookies cross the network in "
              "clear. Pass --ssl_certfile/--ssl_keyfile, or put a TLS proxy in front.", file=sys.stderr)
    app = build_app(store, export_dir, guidelines, slots, secure_cookies=tls, arena=arena,
                    api_rate_per_second=api_rate_per_second, api_burst=api_burst)
    counts = store.counts()
    scheme = "https" if tls else "http"
    print(f"labeling app on {scheme}://{host}:{port}  ({counts['items']} items, {counts['reviewers']} reviewers, "
          f"overlap {store.overlap}; store {store.db.display()})", flush=True)
    if counts["reviewers"] == 0:
        print("note: no reviewers yet: add one with `python -m labeling_ui add-reviewer NAME --admin`", flush=True)
    # What is built by now (Gradio, FastAPI, the app: ~200k objects) lives as long as the server. Each
    # full garbage collection walked all of it, 120 ms with every request on hold, often enough under
    # load to make the slowest submits. Frozen, a collection looks only at what requests make.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, log_level="warning")
