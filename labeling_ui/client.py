"""A Python client for the labeling server's JSON API (`/api/v1`, docs/api.md).

    from labeling_ui.client import LabelClient
    with LabelClient("http://127.0.0.1:7860", token) as api:
        turn = api.next_task()
        while turn["task"]:
            task = turn["task"]                               # answers in this reviewer's order: A, B, ...
            turn = api.submit(task["assignment_id"], ranks=[1, 2, 2, 3])

Each submit gets a fresh token unless one is given; a submit that fails on the way (a dropped
connection, the store briefly down: 503) is sent again with the *same* token, so it is stored
once whatever happened to the first try. Errors the server sends come back as `ApiError` with
its status and one-line message.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

RETRY_STATUSES = (502, 503, 504)


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


class LabelClient:
    def __init__(self, url: str, token: str, timeout: float = 30.0, retries: int = 3, backoff_s: float = 0.5,
                 verify: bool | str = True):
        self.retries, self.backoff_s = retries, backoff_s
        # Plain http has no certificates to check; not building an SSL context saves ~20 ms of CPU per client.
        verify = verify if url.lower().startswith("https:") else False
        self.http = httpx.Client(base_url=url.rstrip("/") + "/api/v1", timeout=timeout, verify=verify,
                                 headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "LabelClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, method: str, path: str, body: dict | None = None, retry: bool = False) -> Any:
        """One call; with `retry`, again after a connection failure or a 502/503/504 (safe for idempotent calls)."""
        for attempt in range(self.retries + 1 if retry else 1):
            last = attempt == (self.retries if retry else 0)
            try:
                resp = self.http.request(method, path, json=body)
            except httpx.TransportError as err:
                if last:
                    raise ApiError(0, f"cannot reach the labeling server ({type(err).__name__}: {err})") from None
                time.sleep(self.backoff_s * (attempt + 1))
                continue
            if resp.status_code in RETRY_STATUSES and not last:
                time.sleep(float(resp.headers.get("retry-after") or self.backoff_s * (attempt + 1)))
                continue
            if resp.status_code >= 400:
                try:
                    message = resp.json().get("error") or resp.text
                except ValueError:
                    message = resp.text[:300]
                raise ApiError(resp.status_code, message)
            kind = resp.headers.get("content-type", "").split(";")[0].strip()
            return resp.json() if kind == "application/json" else resp.text
        raise AssertionError("unreachable")

    # ---- a reviewer's calls --------------------------------------------------------------------

    def me(self) -> dict:
        return self.request("GET", "/me", retry=True)

    def next_task(self) -> dict:
        """{"task": {...} | None, "progress": {...}}"""
        return self.request("GET", "/tasks/next", retry=True)

    def submit(self, assignment_id: int, ranks: list | None = None, *, reply: dict | None = None,
               token: str | None = None, flags: list[str] = (), comment: str = "", demonstration: str = "",
               next: bool = True) -> dict:
        """Answer a task (ranks in the task's answer order, 1 = best); the reply has the next task unless next=False."""
        body = {"token": token or uuid.uuid4().hex, "ranks": ranks, "reply": reply, "flags": list(flags),
                "comment": comment, "demonstration": demonstration, "next": next}
        return self.request("POST", f"/tasks/{assignment_id}/submit", body, retry=True)

    def skip(self, assignment_id: int, *, token: str | None = None, flags: list[str] = (), comment: str = "",
             next: bool = True) -> dict:
        body = {"token": token or uuid.uuid4().hex, "flags": list(flags), "comment": comment, "next": next}
        return self.request("POST", f"/tasks/{assignment_id}/skip", body, retry=True)

    def undo(self) -> dict:
        return self.request("POST", "/undo")  # not retried: a second undo would answer "nothing to undo"

    def progress(self) -> dict:
        return self.request("GET", "/progress", retry=True)

    # ---- an admin's calls ----------------------------------------------------------------------

    def add_items(self, round: int, items: list[dict], question: str | None = None, dry_run: bool = False) -> dict:
        """Items as `import --format jsonl` reads them: {"prompt", "answers": [text | {text, model, ended}]}.
        Safe to send again: a prompt the round has already is counted in `already_in_round`, not added."""
        return self.request("POST", "/items", {"round": round, "items": items, "question": question,
                                               "dry_run": dry_run}, retry=True)

    def counts(self) -> dict:
        return self.request("GET", "/counts", retry=True)

    def export(self, **settings) -> dict:
        """Write the export folder on the server (include_flagged, exclude_disabled, min_reliability, margin_scale)."""
        return self.request("POST", "/export", settings, retry=True)

    def export_file(self, name: str = "rankings.jsonl") -> list[dict] | dict:
        """One exported file: a JSONL file as a list of records, a JSON file as its value."""
        import json

        text = self.request("GET", f"/export/{name}", retry=True)
        if not isinstance(text, str):
            return text
        return [json.loads(line) for line in text.splitlines() if line.strip()]
