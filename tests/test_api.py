"""The JSON API (/api/v1) over real HTTP on 127.0.0.1: every route refuses a missing, unknown,
revoked or other-role token (and the page's cookie alone); submits are idempotent per token;
items added through the API are served on the page; the OpenAPI page is behind login; tokens
are stored hashed, made and revoked from the CLI; rate and body limits hold."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from labeling_ui import cli
from labeling_ui.api.routes import build_api
from labeling_ui.client import ApiError, LabelClient
from labeling_ui.db import sqlite_url
from labeling_ui.server import build_app
from labeling_ui.store import LabelStore
from labeling_ui.testing import GradioSession, http_login, running_server

PASSWORD = "correct horse battery"
ADMIN_ROUTES = {("POST", "/items"), ("GET", "/counts"), ("POST", "/export"), ("GET", "/export/{name}")}


@dataclass
class Site:
    base: str
    store: LabelStore
    db_path: Path
    tokens: dict[str, str]

    def api(self, who: str, **kw) -> LabelClient:
        return LabelClient(self.base, self.tokens[who], **kw)

    def login(self, name: str) -> httpx.Client:
        c = httpx.Client(base_url=self.base, timeout=30)
        assert http_login(c, name, PASSWORD).status_code == 303
        return c


def seeded(folder: Path, **app_kw) -> tuple[LabelStore, dict]:
    store = LabelStore(sqlite_url(folder / "labels.db"), overlap=2)
    store.add_item("first prompt", ["one", "two", "three"], [True] * 3, "pol", 1)
    store.add_item("second prompt", ["uno", "dos", "tres"], [True, False, True], "pol", 1)
    for i in range(3):
        store.add_item(f"more prompt {i}", ["eins", "zwei", "drei"], [True] * 3, "pol", 1)
    tokens = {}
    for name, admin in (("ann", False), ("ben", False), ("boss", True)):
        store.accounts.add(name, PASSWORD, admin=admin)
        tokens[name] = store.tokens.create(name, "test", "pytest")[1]
    return store, tokens


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    store, tokens = seeded(folder)
    with running_server(build_app(store, folder / "export")) as base:
        yield Site(base, store, folder / "labels.db", tokens)
    store.close()


def api_routes(store) -> list[tuple[str, str]]:
    """(method, path) of every documented route, from the app's own OpenAPI schema."""
    schema = build_api(store, Path("/nonexistent")).openapi()
    return [(m.upper(), p) for p, ops in schema["paths"].items() for m in ops]


def test_the_route_list_is_the_real_one(site):
    routes = api_routes(site.store)
    assert {("GET", "/tasks/next"), ("POST", "/tasks/{assignment_id}/submit"), ("POST", "/undo")} | ADMIN_ROUTES \
        <= set(routes)


@pytest.mark.parametrize("auth", ["none", "garbage", "revoked", "cookie_only", "basic"])
def test_every_route_refuses_a_request_without_a_live_token(site, auth):
    headers = {}
    if auth == "garbage":
        headers = {"Authorization": "Bearer rt_" + "x" * 43}
    elif auth == "revoked":
        info, token = site.store.tokens.create("boss", "to revoke", "pytest")
        site.store.tokens.revoke(info.id, "pytest")
        headers = {"Authorization": f"Bearer {token}"}
    elif auth == "basic":
        headers = {"Authorization": "Basic Ym9zczpjb3JyZWN0IGhvcnNlIGJhdHRlcnk="}
    before = site.store.counts()
    with closing(site.login("boss") if auth == "cookie_only" else httpx.Client(base_url=site.base)) as c:
        for method, path in api_routes(site.store):
            url = "/api/v1" + path.replace("{assignment_id}", "1").replace("{name}", "rankings.jsonl")
            body = {"token": "abcdefgh1", "ranks": [1, 2, 3], "round": 9, "items": []} if method == "POST" else None
            r = c.request(method, url, json=body, headers={**headers, "accept": "application/json"})
            assert r.status_code == 401, f"{auth}: {method} {path}: HTTP {r.status_code} {r.text[:200]}"
            assert "token" in r.json()["error"]
            assert "first prompt" not in r.text
    assert site.store.counts() == before  # nothing claimed or written on anyone's behalf


def test_a_reviewer_token_cannot_reach_admin_routes_or_others_labels(site):
    with site.api("ann") as ann, site.api("ben") as ben:
        for method, path in ADMIN_ROUTES:
            body = {"round": 9, "items": [{"prompt": "p", "answers": ["a", "b"]}]} if method == "POST" else None
            with pytest.raises(ApiError) as err:
                ann.request(method, path.replace("{name}", "rankings.jsonl"), body)
            assert err.value.status == 403, (method, path)
        task = ann.next_task()["task"]
        with pytest.raises(ApiError) as err:  # ann's claim, ben's token
            ben.submit(task["assignment_id"], [1, 2, 3])
        assert err.value.status == 409 and "not assigned to you" in err.value.message
    assert site.store.counts()["items"] == 5  # round 9 got nothing


def test_the_page_cookie_does_not_open_the_api_but_opens_the_openapi_page(site):
    with httpx.Client(base_url=site.base) as anon:
        assert anon.get("/api/v1/openapi.json").status_code == 401
        page = anon.get("/api/v1/docs", headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert anon.get("/api/v1/static/swagger-ui-bundle.js").status_code == 401
    with closing(site.login("ann")) as c:
        schema = c.get("/api/v1/openapi.json").json()
        assert "/tasks/{assignment_id}/submit" in schema["paths"]
        assert schema["components"]["securitySchemes"]  # the page offers "Authorize" for a token
        docs = c.get("/api/v1/docs")
        assert docs.status_code == 200 and "/api/v1/static/swagger-ui-bundle.js" in docs.text
        assert "cdn" not in docs.text.lower()  # served from the package: works offline
        assert c.get("/api/v1/static/swagger-ui-bundle.js").status_code == 200
        assert c.get("/api/v1/me").status_code == 401  # logged in, but no token


def test_submit_is_idempotent_per_token_and_maps_the_shown_order(site):
    with site.api("ben") as ben:
        turn = ben.next_task()
        task = turn["task"]
        assert [a["label"] for a in task["answers"]] == ["A", "B", "C"]
        assert "pol" not in json.dumps(task)  # the ranking is blind: no model names for reviewers
        first = ben.submit(task["assignment_id"], [3, 1, 2], token="same-token-1")
        again = ben.submit(task["assignment_id"], [3, 1, 2], token="same-token-1")
        assert (first["message"], first["duplicate"]) == ("Saved.", False)
        assert (again["message"], again["duplicate"]) == ("Already saved.", True)
        assert again["ranking_id"] == first["ranking_id"]
        assert first["progress"]["done"] == 1
    with sqlite3.connect(site.db_path) as db:
        rows = db.execute("SELECT ranks, shown FROM rankings WHERE submit_token = 'same-token-1'").fetchall()
    assert len(rows) == 1
    ranks, shown = json.loads(rows[0][0]), json.loads(rows[0][1])
    # The store keeps ranks by candidate position: the answer shown first (A) got rank 3.
    assert ranks[shown[0]] == 3 and ranks[shown[1]] == 1 and ranks[shown[2]] == 2


def test_undo_reopens_with_the_previous_answer_in_the_shown_order(site):
    with site.api("ann") as ann:
        task = ann.next_task()["task"]
        ann.submit(task["assignment_id"], [2, 1, 3])
        reopened = ann.undo()["task"]
        assert reopened["assignment_id"] == task["assignment_id"]
        assert [a["text"] for a in reopened["answers"]] == [a["text"] for a in task["answers"]]
        assert reopened["previous"]["ranks"] == [2, 1, 3]
        with pytest.raises(ApiError) as err:
            ann.undo()
        assert err.value.status == 409
        ann.submit(task["assignment_id"], [1, 2, 3])


def test_bad_submissions_get_one_clear_line_and_store_nothing(site):
    before = site.store.counts()["rankings"]
    with site.api("boss") as boss:
        task = boss.next_task()["task"]
        for ranks, words in (([1, 2], "Give each of the 3 answers a rank"), ([1, 3, 4], "ranks")):
            with pytest.raises(ApiError) as err:
                boss.submit(task["assignment_id"], ranks)
            assert err.value.status == 409 and words in err.value.message
        with pytest.raises(ApiError) as err:
            boss.request("POST", f"/tasks/{task['assignment_id']}/submit", {"token": "short", "ranks": [1, 2, 3]})
        assert err.value.status == 422 and err.value.message.startswith("token:")
        r = httpx.post(site.base + f"/api/v1/tasks/{task['assignment_id']}/submit", content=b"{not json",
                       headers={"Authorization": f"Bearer {site.tokens['boss']}", "content-type": "application/json"})
        assert r.status_code == 422 and "Traceback" not in r.text
    assert site.store.counts()["rankings"] == before


def test_items_added_through_the_api_are_served_on_the_page(site):
    with site.api("boss") as boss:
        items = [{"prompt": [{"role": "user", "content": "API-PROMPT-77: name a river"}],
                  "answers": [{"text": "the Nile", "model": "m1"}, {"text": "a river", "model": "m2", "ended": False}]}]
        added = boss.add_items(3, items, question="pairwise")
        assert (added["items"], added["round"], added["question"]) == (1, 3, "pairwise")
        assert boss.add_items(3, items)["already_in_round"] == 1  # sending it again adds nothing
        with pytest.raises(ApiError) as err:
            boss.add_items(3, [{"prompt": "p", "answers": ["only one"]}])
        assert err.value.status == 422 and "items[0]" in err.value.message and "answers" in err.value.message
        with pytest.raises(ApiError) as err:  # rankings come in through import, not here
            boss.add_items(3, [{"prompt": "p", "answers": ["a", "b"], "ranks": [1, 2], "reviewer": "x"}])
        assert err.value.status == 422 and "import" in err.value.message
    with site.api("ann") as ann:  # ann finishes round 1 through the API; the page then shows her the new item
        turn = ann.next_task()
        while turn["task"] and turn["task"]["round"] == 1:
            turn = ann.submit(turn["task"]["assignment_id"], [1, 2, 3])
    with closing(site.login("ann")) as c:
        page = GradioSession(c)
        loaded = page.call("on_load")
        shown = json.dumps(loaded)
        assert "API-PROMPT-77" in shown and "the Nile" in shown


def test_an_admin_exports_and_reads_the_files(site):
    with site.api("boss") as boss:
        summary = boss.export()
        assert summary["rankings"] >= 1 and "rankings.jsonl" in summary["files"]
        rows = boss.export_file("rankings.jsonl")
        assert rows and {"prompt", "answers", "ranks", "reviewer"} <= set(rows[0])
        with pytest.raises(ApiError) as err:
            boss.export_file("../labels.db")
        assert err.value.status == 404
    entries = site.store.audit_log()
    assert any(e["action"] == "export" and e["actor"] == "api:boss" for e in entries)


def test_disabling_an_account_stops_its_token_at_once(tmp_path):
    store, tokens = seeded(tmp_path)
    with running_server(build_app(store, tmp_path / "export")) as base, LabelClient(base, tokens["ann"]) as ann:
        assert ann.me()["name"] == "ann"
        store.set_disabled("pytest", "ann", True)
        with pytest.raises(ApiError) as err:
            ann.me()
        assert err.value.status == 401
    store.close()


def test_rate_and_body_limits(tmp_path):
    store, tokens = seeded(tmp_path)
    app = build_app(store, tmp_path / "export", api_rate_per_second=1, api_burst=3)
    with running_server(app) as base, LabelClient(base, tokens["boss"], retries=0) as boss:
        statuses = []
        for _ in range(6):
            try:
                boss.me()
                statuses.append(200)
            except ApiError as err:
                statuses.append(err.status)
        assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
        r = httpx.get(base + "/api/v1/me", headers={"Authorization": f"Bearer {tokens['ann']}"})
        assert r.status_code == 200  # the limit is per token
        big = {"round": 5, "items": [{"prompt": "x" * (5 * 1024**2), "answers": ["a", "b"]}]}
        r = httpx.post(base + "/api/v1/items", json=big, headers={"Authorization": f"Bearer {tokens['ann']}"})
        assert r.status_code == 413
        limited = httpx.get(base + "/api/v1/me", headers={"Authorization": f"Bearer {tokens['boss']}"})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    store.close()


def test_tokens_from_the_cli_are_stored_hashed_and_revoked(tmp_path, capsys):
    store, _ = seeded(tmp_path)
    store.close()
    args = ["--runs_dir", str(tmp_path.parent), "--run", tmp_path.name]
    info, token = cli.main(["create-token", "ann", "--label", "notebook", *args])
    printed = capsys.readouterr().out
    assert token in printed and token.startswith("rt_")
    with sqlite3.connect(tmp_path / "labels.db") as db:
        stored = db.execute("SELECT token_hash, label FROM api_tokens WHERE id = ?", (info.id,)).fetchone()
        dump = "\n".join(db.iterdump())
    assert stored[1] == "notebook" and token not in dump  # only its hash is kept
    listed = cli.main(["list-tokens", *args])
    assert any(t.id == info.id and t.revoked_at is None for t in listed)
    assert token not in capsys.readouterr().out
    store = LabelStore(sqlite_url(tmp_path / "labels.db"))
    assert store.tokens.user(token).name == "ann"
    cli.main(["revoke-token", str(info.id), *args])
    assert store.tokens.user(token) is None
    with pytest.raises(SystemExit):
        cli.main(["create-token", "nobody", *args])
    assert "no reviewer 'nobody'" in capsys.readouterr().err
    store.close()
