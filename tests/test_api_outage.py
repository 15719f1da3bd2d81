"""The labeling server over real HTTP through a PostgreSQL restart (issue #22): while the database
is down the JSON API answers 503 "try again" (never a 500 or a traceback), also for a token or a
page session the server has not seen for a while; the login page says so too; once the database
is back the same server answers again by itself, and a submission sent again with its token is
stored once. On a throwaway server (conftest.py's pg_instance); skipped without PostgreSQL."""

from __future__ import annotations

import time
from contextlib import closing

import httpx
import pytest
from sqlalchemy import func, select

from labeling_ui import login_cache
from labeling_ui.client import ApiError, LabelClient
from labeling_ui.schema import Ranking
from labeling_ui.server import build_app
from labeling_ui.store import LabelStore
from labeling_ui.testing import http_login, running_server

PASSWORD = "correct horse battery"


def test_the_api_and_the_login_page_say_try_again_while_the_database_is_down(pg, tmp_path, monkeypatch):
    monkeypatch.setattr(login_cache, "CACHE_SECONDS", 0.0)  # every request looks its token up: the worst case
    store = LabelStore(pg.url, overlap=1)
    for i in range(4):
        store.add_item(f"prompt {i}", ["a", "b", "c"], [True] * 3, "pol", 1)
    store.accounts.add("ann", PASSWORD)
    token = store.tokens.create("ann", "test", "pytest")[1]
    with running_server(build_app(store, tmp_path / "export")) as base, \
            LabelClient(base, token, retries=0) as ann:
        task = ann.next_task()["task"]
        first = ann.submit(task["assignment_id"], [1, 2, 3], token="before-outage-1")
        task = first["task"]
        pg.stop()
        for call in (lambda: ann.submit(task["assignment_id"], [3, 2, 1], token="during-outage-1"), ann.next_task,
                     ann.progress):
            with pytest.raises(ApiError) as err:
                call()
            assert err.value.status == 503 and "Try again in a moment" in err.value.message
        with closing(httpx.Client(base_url=base, timeout=30)) as browser:
            page = http_login(browser, "ann", PASSWORD)
            assert page.status_code == 503 and "Try again in a moment" in page.text and "Traceback" not in page.text
        pg.start()
        deadline = time.monotonic() + 30
        while True:  # the first calls after a restart may still find a connection of the old server
            try:
                again = ann.submit(task["assignment_id"], [3, 2, 1], token="during-outage-1")
                break
            except ApiError as err:
                assert err.status == 503 and time.monotonic() < deadline
                time.sleep(0.2)
        assert again["message"] == "Saved." and ann.progress()["done"] == 2
        assert ann.submit(task["assignment_id"], [3, 2, 1], token="during-outage-1")["duplicate"] is True
    with store.db.read() as s:
        rows = dict(s.execute(select(Ranking.submit_token, func.count()).group_by(Ranking.submit_token)).all())
    assert rows == {"before-outage-1": 1, "during-outage-1": 1}
    store.close()
