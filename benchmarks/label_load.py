"""Load benchmark for the labeling app: many logged-in reviewers at once over real HTTP.

    .venv/bin/python benchmarks/label_load.py --reviewers 50 --rankings 10000 --db sqlite
    .venv/bin/python benchmarks/label_load.py --reviewers 50 --rankings 10000 --db postgres

It seeds a fresh store (rankings / overlap items of 4 answers, `--reviewers` accounts), starts the
real app (`python -m labeling_ui serve`) in its own process on 127.0.0.1, and lets each simulated
reviewer do what the page does: sign in through the login form, load the page, then submit
rankings through Gradio's queue (POST /gradio_api/queue/join + the event stream) until the page
says nothing is left, each with the ticket of the item on screen that the last reply put on the
page. Every `--double_click_every`-th submit is sent twice at once from the same page (a double
click: the same ticket, so the same submit token, reaches the store twice). With
`--think_seconds X` each reviewer first reads for a random while (exponential, mean X, seeded by
the reviewer's name) before each submit; the latencies never include it. Afterwards it stops the app
and checks the store: exactly rankings rows, each item exactly `overlap` times, no reviewer twice
on one item, every row matched by a closed claim, and each reviewer's "Saved." answers equal to
their rows (none lost, none duplicated). It prints submit latency p50/p95/p99 and throughput.

`--arena_chatters N` (default 0: no Arena) serves the Arena too (the bundled model under two names,
or `--arena_models NAME=PATH ...`) and keeps it generating with N chatters (benchmarks/arena_load.py)
while the reviewers rank, so the submit latencies are measured with the arena busy.

`--db postgres` starts a throwaway PostgreSQL server (Debian's initdb/pg_ctl) on a free loopback
port in a temporary folder, as an unprivileged user when run as root, and removes it at exit.
Everything listens on 127.0.0.1 only; every loop is bounded; the run stops by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from labeling_ui.pg_server import ThrowawayPostgres, free_port, pg_bin, throwaway_postgres  # noqa: E402,F401
from labeling_ui.testing import submit_inputs, ticket_in  # noqa: E402 - the page's inputs and its ticket

PASSWORD = "load-test-password"
K = 4
ITEM_RE = re.compile(r"item #(\d+)")


# ---- the app in its own process ----------------------------------------------------------------

@dataclass
class AppProcess:
    proc: subprocess.Popen
    base: str
    log: Path

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()


def start_app(db_url: str, workdir: Path, timeout_s: float = 90, extra_args: list[str] | None = None) -> AppProcess:
    """`python -m labeling_ui serve` on a free 127.0.0.1 port (plus `extra_args`, e.g. the Arena's
    --arena_models); returns once /login answers."""
    import httpx

    for _attempt in range(3):  # the free port may be taken between probing and binding: try another
        port = free_port()
        log = workdir / f"app-{port}.log"
        cmd = [sys.executable, "-m", "labeling_ui", "serve", "--db", db_url, "--host", "127.0.0.1",
               "--port", str(port), "--run", "load", "--runs_dir", str(workdir / "runs"), *(extra_args or [])]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        app = AppProcess(proc, f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(app.base + "/login", timeout=2).status_code == 200:
                    return app
            except httpx.TransportError:
                pass
            time.sleep(0.2)  # a process's readiness can only be polled
        app.stop()
        if "address already in use" not in log.read_text(errors="replace").lower():
            break
    raise RuntimeError(f"the app did not start; its log:\n{log.read_text(errors='replace')[-2000:]}")


# ---- one reviewer's browser, over HTTP ---------------------------------------------------------

class Page:
    """What the page does, as HTTP requests: sign in, load, submit through Gradio's queue."""

    def __init__(self, base: str, name: str, timeout_s: float = 120):
        import secrets

        import httpx

        from labeling_ui.testing import http_login

        self.client = httpx.Client(base_url=base, timeout=timeout_s)
        self.timeout_s = timeout_s
        r = http_login(self.client, name, PASSWORD)
        if r.status_code != 303:
            raise RuntimeError(f"{name}: login failed (HTTP {r.status_code})")
        self.session_hash = secrets.token_hex(8)
        self.fns = {d["api_name"]: d["id"] for d in self.client.get("/config").json()["dependencies"]
                    if d.get("backend_fn") and d.get("api_name")}

    def events(self, name: str, datas: list[list]) -> list[dict]:
        """Send one event per entry of `datas` at once; the `process_completed` message of each, in order."""
        ids = []
        for data in datas:
            join = self.client.post("/gradio_api/queue/join", json={
                "data": data, "fn_index": self.fns[name], "session_hash": self.session_hash,
                "event_data": None, "trigger_id": None})
            join.raise_for_status()
            ids.append(join.json()["event_id"])
        done: dict[str, dict] = {}
        deadline = time.monotonic() + self.timeout_s
        while len(done) < len(ids) and time.monotonic() < deadline:  # a stream closes when the session is idle
            with self.client.stream("GET", "/gradio_api/queue/data", params={"session_hash": self.session_hash}) as s:
                s.raise_for_status()
                for line in s.iter_lines():
                    if line.startswith("data:"):
                        msg = json.loads(line[5:])
                        if msg.get("msg") == "process_completed" and msg.get("event_id") in ids:
                            done[msg["event_id"]] = msg
                            if len(done) == len(ids):
                                break
        if len(done) < len(ids):
            raise RuntimeError(f"{name}: no result within {self.timeout_s} s")
        return [done[i] for i in ids]

    def close(self) -> None:
        self.client.close()


def shown_item(msg: dict, offset: int) -> int | None:
    """The item id on screen after an event (None: 'All done'); `offset` is the prompt's output index."""
    if not msg.get("success"):
        raise RuntimeError(f"event failed: {json.dumps(msg)[:300]}")
    found = ITEM_RE.search(msg["output"]["data"][offset] or "")
    return int(found.group(1)) if found else None


def status_text(msg: dict) -> str:
    return msg["output"]["data"][-1] or ""


def submit_data(ticket: str | None, ranks: list[int]) -> list:
    # The page's inputs: the ticket of the item on screen, the widget's answer, flags, comment, written answer.
    return submit_inputs(ticket, ranks)


@dataclass
class ReviewerLog:
    name: str
    latencies: list[float] = field(default_factory=list)  # one single submit, join to result (no think time)
    sent_at: list[float] = field(default_factory=list)  # --client api: when each timed submit left (perf_counter)
    thought_s: float = 0.0  # time spent "reading" before submits (--think_seconds)
    saved: int = 0  # "Saved." answers: each a new row
    already: int = 0  # "Already saved." answers: no new row
    double_clicks: int = 0
    items: list[int] = field(default_factory=list)
    error: str | None = None
    saved_after_retry: int = 0  # --client api: stored by a try whose answer the outage lost ("Already saved" after)
    outage_refusals: int = 0  # --client api: answers "try again" (503) or no answer at all, each retried


def review(base: str, log: ReviewerLog, double_click_every: int, max_submits: int, deadline: float,
           think_seconds: float = 0.0) -> None:
    page, rng = None, random.Random(f"think:{log.name}")
    try:
        page = Page(base, log.name)
        loaded = page.events("on_load", [[]])[0]
        item, ticket = shown_item(loaded, 4), ticket_in(loaded, "on_load")  # who, admin tab, ticket, progress, prompt
        n = 0
        while item is not None and n < max_submits and time.monotonic() < deadline:
            n += 1
            ranks = [1 + (n + j) % K for j in range(K)]
            double = double_click_every > 0 and n % double_click_every == 0
            if think_seconds > 0:  # a person reads before submitting; never past the deadline
                pause = min(rng.expovariate(1 / think_seconds), max(0.0, deadline - time.monotonic()))
                time.sleep(pause)
                log.thought_s += pause
            start = time.perf_counter()
            msgs = page.events("on_submit", [submit_data(ticket, ranks)] * (2 if double else 1))
            if double:
                log.double_clicks += 1
            else:
                log.latencies.append(time.perf_counter() - start)
            log.items.append(item)
            for msg in msgs:
                text = status_text(msg)
                if "Already saved" in text:
                    log.already += 1
                elif "Saved." in text:
                    log.saved += 1
                else:
                    raise RuntimeError(f"submit not saved: {text!r}")
            item, ticket = shown_item(msgs[-1], 2), ticket_in(msgs[-1], "on_submit")  # ticket, progress, prompt
    except Exception as err:  # noqa: BLE001 - reported with the results
        log.error = f"{type(err).__name__}: {err}"
    finally:
        if page is not None:
            page.close()


# ---- seeding and checking the store ------------------------------------------------------------

def seed(url: str, items: int, reviewers: int, overlap: int, login: bool = True) -> list[str]:
    """Items and reviewer accounts. All accounts share one password hash (one scrypt, not one per
    reviewer: a thousand would take a minute); the API client never logs in (`login` False)."""
    from labeling_ui.accounts import hash_password
    from labeling_ui.schema import Reviewer
    from labeling_ui.store import LabelStore

    store = LabelStore(url, overlap=overlap)
    try:
        for i in range(items):
            store.add_item(f"load prompt {i}: explain item {i}", [f"answer {i}.{j} " * 5 for j in range(K)],
                           [True] * K, "load-policy", 1)
        names = [f"rev{i:03d}" for i in range(reviewers)]
        hashed = hash_password(PASSWORD)
        with store.db.write() as s:
            s.add_all(Reviewer(name=n, password_hash=hashed, is_admin=False, disabled=False, created_at=store.clock())
                      for n in names)
        if not store.db.is_sqlite:  # after a bulk load, as PostgreSQL's docs advise: the planner needs the sizes
            with store.db.write_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("ANALYZE")
    finally:
        store.close()
    return names


def check_store(url: str, items: int, overlap: int, logs: list[ReviewerLog]) -> dict:
    """Exactly the rows the reviewers were told were saved; raises AssertionError otherwise."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as c:
            q = lambda sql: c.execute(text(sql)).all()  # noqa: E731
            total = q("SELECT count(*) FROM rankings")[0][0]
            per_item = Counter(dict(q("SELECT item_id, count(*) FROM rankings GROUP BY item_id")))
            pairs = q("SELECT count(*) FROM (SELECT item_id, reviewer_id FROM rankings "
                      "GROUP BY item_id, reviewer_id HAVING count(*) > 1) d")[0][0]
            unmatched = q("SELECT count(*) FROM rankings r JOIN assignments a ON a.id = r.assignment_id "
                          "WHERE a.status <> 'done' OR a.item_id <> r.item_id OR a.reviewer_id <> r.reviewer_id")[0][0]
            done_without_row = q("SELECT count(*) FROM assignments a WHERE a.status = 'done' AND NOT EXISTS "
                                 "(SELECT 1 FROM rankings r WHERE r.assignment_id = a.id)")[0][0]
            open_left = q("SELECT count(*) FROM assignments WHERE status = 'open'")[0][0]
            rows_by = dict(q("SELECT v.name, count(*) FROM rankings r JOIN reviewers v ON v.id = r.reviewer_id "
                             "GROUP BY v.name"))
            withdrawn_or_skipped = q("SELECT count(*) FROM rankings WHERE withdrawn_at IS NOT NULL "
                                     "OR skipped = :f".replace(":f", "true" if "postgres" in url else "1"))[0][0]
    finally:
        engine.dispose()
    expected = items * overlap
    problems = []
    if total != expected:
        problems.append(f"{total} ranking rows, expected {expected}")
    if len(per_item) != items or set(per_item.values()) != {overlap}:
        wrong = {i: n for i, n in per_item.items() if n != overlap}
        problems.append(f"{len(per_item)} of {items} items ranked; items not ranked exactly {overlap} times: "
                        f"{dict(list(wrong.items())[:5])}")
    for what, n in (("reviewer ranked one item twice", pairs), ("rows without their closed claim", unmatched),
                    ("closed claims without a row", done_without_row), ("claims left open", open_left),
                    ("withdrawn or skipped rows", withdrawn_or_skipped)):
        if n:
            problems.append(f"{n} {what}")
    for log in logs:
        if rows_by.get(log.name, 0) != log.saved + log.saved_after_retry:
            lost = f" and {log.saved_after_retry} saved by a try whose answer was lost" if log.saved_after_retry else ""
            problems.append(f"{log.name}: told 'Saved.' {log.saved} times{lost}, {rows_by.get(log.name, 0)} rows")
    if problems:
        raise AssertionError("store check failed: " + "; ".join(problems))
    return {"rows": total, "items": items, "duplicate_answers": sum(g.already for g in logs)}


# ---- the run -----------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def api_load():
    """benchmarks/label_load_api.py as a module (the JSON-API reviewer), for --client api."""
    return _sibling("label_load_api")


def restart_later(pg, start: float, at_s: float, down_s: float, threads: list[threading.Thread]) -> dict:
    """Restart PostgreSQL `at_s` seconds after `start` (in a thread) unless the reviewers are done by then."""
    if pg is None:
        raise ValueError("--restart_db_at needs --db postgres")
    figures: dict = {"at_s": at_s, "down_s": down_s}

    def run():
        while time.perf_counter() - start < at_s:
            if not any(t.is_alive() for t in threads):
                figures["skipped"] = "the reviewers were done before it"
                return
            time.sleep(0.1)
        t0 = time.perf_counter()
        pg.stop("fast")
        figures["stopped_at_s"] = round(t0 - start, 2)
        time.sleep(down_s)
        pg.start()
        figures["back_at_s"] = round(time.perf_counter() - start, 2)

    figures["thread"] = threading.Thread(target=run, daemon=True)
    figures["thread"].start()
    return figures


def _sibling(name: str):
    import importlib.util

    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / f"{name}.py")
        module = sys.modules.setdefault(name, importlib.util.module_from_spec(spec))
        spec.loader.exec_module(module)
    return module


def arena_load():
    """benchmarks/arena_load.py as a module (its chatters), for --arena_chatters."""
    return _sibling("arena_load")


def load_run(db_url: str, workdir: Path, reviewers: int, rankings: int, overlap: int = 2,
             double_click_every: int = 25, time_limit_s: float = 1800, think_seconds: float = 0.0,
             arena_chatters: int = 0, arena_models: list[str] | None = None, arena_max_new_tokens: int = 48,
             client: str = "page", pg=None, restart_db_at: float | None = None, restart_down_s: float = 3.0,
             serve_args: list[str] | None = None, ramp_s: float = 0.0) -> dict:
    """Seed, serve, drive, stop, check. Returns the figures; raises AssertionError on a bad store.

    `client` "api": reviewers use the JSON API (benchmarks/label_load_api.py) instead of the page.
    `restart_db_at` (PostgreSQL, `pg` its ThrowawayPostgres): that many seconds into the run the
    database server is stopped, kept down `restart_down_s` and started again.

    `arena_chatters` > 0: the app also serves the Arena (`arena_models`, default the bundled model
    under two names), warmed up with one untimed turn, and that many chatters (arena_load.chat) keep
    it generating from before the first reviewer starts until the last one is done."""
    if rankings % overlap:
        raise ValueError(f"--rankings must be a multiple of the overlap ({overlap})")
    items = rankings // overlap
    t0 = time.perf_counter()
    names = seed(db_url, items, reviewers, overlap, login=client == "page")
    tokens = api_load().seed_tokens(db_url, names) if client == "api" else {}
    seeded_s = time.perf_counter() - t0
    extra, arena, chatter_names = None, None, []
    if arena_chatters > 0:
        from labeling_ui.store import LabelStore

        arena = arena_load()
        chatter_names = [f"arena{i:03d}" for i in range(arena_chatters)]
        store = LabelStore(db_url, overlap=overlap)
        try:
            arena.add_accounts(store, ["arena-warm", *chatter_names])
        finally:
            store.close()
        extra = arena.serve_args(arena_models or arena.DEFAULT_MODELS, arena_max_new_tokens)
    app = start_app(db_url, workdir, extra_args=[*(extra or []), *(serve_args or [])])
    logs = [ReviewerLog(n) for n in names]
    chat_logs, chat_threads, chat_stop, chat_s = [], [], threading.Event(), None
    try:
        if arena is not None:
            prompts = arena.read_prompt_texts(str(REPO / "data" / "prompts.jsonl"))
            arena.warm_up(app.base, "arena-warm", prompts[::-1])
            chat_logs, chat_threads = arena.run_chatters(app.base, chatter_names, 3, prompts, time_limit_s + 60,
                                                         chat_stop, conversations=10**6)  # until chat_stop
            chat_t0 = time.perf_counter()
        deadline = time.monotonic() + time_limit_s
        if client == "api":
            threads = [threading.Thread(target=api_load().review_api, args=(
                app.base, tokens[log.name], log, double_click_every, rankings + 10, deadline, think_seconds, ramp_s),
                daemon=True) for log in logs]
        else:
            threads = [threading.Thread(target=review, args=(app.base, log, double_click_every, rankings + 10,
                                                             deadline, think_seconds), daemon=True) for log in logs]
        # This process's own full collections (1,000 threads' objects) would stall every reviewer's
        # clock at once, as the server's did before it froze its start-up objects (server.py).
        gc.collect()
        gc.freeze()
        start = time.perf_counter()
        for t in threads:
            t.start()
        outage = None
        if restart_db_at is not None:
            outage = restart_later(pg, start, restart_db_at, restart_down_s, threads)
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.monotonic() + 60))
        wall = time.perf_counter() - start
        if outage is not None:
            outage["thread"].join(timeout=120)
        if arena is not None:
            busy = [g.name for g in chat_logs if g.error is None and not g.turns]
            chat_stop.set()  # each chatter ends after the turn it is in
            arena.join_all(chat_threads, arena.EVENT_TIMEOUT_S + 30)
            chat_s = time.perf_counter() - chat_t0
    finally:
        chat_stop.set()
        app.stop()
    errors = [f"{g.name}: {g.error}" for g in logs if g.error]
    if arena is not None:
        errors += [f"{g.name}: {g.error}" for g in chat_logs if g.error]
    if errors:
        tail = app.log.read_text(errors="replace")[-1500:]
        raise AssertionError(f"{len(errors)} reviewers failed, e.g. {errors[:3]}; app log tail:\n{tail}")
    checked = check_store(db_url, items, overlap, logs)
    lat = [x for g in logs for x in g.latencies]
    extra_figures = {"client": client}
    slow = sorted(round(t - start, 1) for g in logs for t, x in zip(g.sent_at, g.latencies) if x > 0.15)
    if slow:  # when the slow submits happened: a burst at one moment and a steady share are different problems
        extra_figures["over_150ms_sent_at_s"] = slow[:200]
    if outage is not None:
        extra_figures["restart"] = {k: v for k, v in outage.items() if k != "thread"} | {
            "refused_during_outage": sum(g.outage_refusals for g in logs),
            "saved_after_retry": sum(g.saved_after_retry for g in logs)}
    if arena is not None:
        arena.engine_figures(db_url, chat_logs)
        extra_figures |= {"arena_chatters": arena_chatters, "arena": {
            **arena.summarize(chat_logs, chat_s), "models": arena_models or arena.DEFAULT_MODELS,
            "max_new_tokens": arena_max_new_tokens, "chatters_with_no_turn_by_ranking_end": busy}}
    return {**checked, **extra_figures, "reviewers": reviewers, "overlap": overlap, "seed_s": round(seeded_s, 1),
            "wall_s": round(wall, 1), "rankings_per_s": round(checked["rows"] / wall, 1),
            "submits_timed": len(lat), "double_clicks": sum(g.double_clicks for g in logs),
            "think_seconds": think_seconds, "ramp_s": ramp_s, "thought_s": round(sum(g.thought_s for g in logs), 1),
            "p50_ms": round(1000 * percentile(lat, 50), 1), "p95_ms": round(1000 * percentile(lat, 95), 1),
            "p99_ms": round(1000 * percentile(lat, 99), 1), "max_ms": round(1000 * max(lat), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reviewers", type=int, default=50)
    parser.add_argument("--rankings", type=int, default=10_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--double_click_every", type=int, default=25,
                        help="every n-th submit of a reviewer is sent twice at once (0: never)")
    parser.add_argument("--time_limit_s", type=float, default=1800, help="reviewers stop after this long")
    parser.add_argument("--think_seconds", type=float, default=0.0,
                        help="mean of a reviewer's reading time before each submit (exponential; 0: none)")
    parser.add_argument("--arena_chatters", type=int, default=0,
                        help="this many Arena chatters (benchmarks/arena_load.py) keep the arena generating while "
                             "the reviewers rank (0: no Arena)")
    parser.add_argument("--arena_models", nargs="+", default=None,
                        help="with --arena_chatters: the arena's models, NAME=PATH (default: smollm2-135m twice)")
    parser.add_argument("--arena_max_new_tokens", type=int, default=48)
    parser.add_argument("--client", choices=("page", "api"), default="page",
                        help="page: reviewers drive the web page (Gradio's queue); api: the JSON API (/api/v1)")
    parser.add_argument("--restart_db_at", type=float, default=None,
                        help="--db postgres: stop the database server this many seconds into the run and start it "
                             "again after --restart_down_s")
    parser.add_argument("--restart_down_s", type=float, default=3.0)
    parser.add_argument("--ramp_s", type=float, default=0.0,
                        help="--client api: each reviewer starts at a random moment within this many seconds")
    parser.add_argument("--serve_args", default="",
                        help="more settings for `python -m labeling_ui serve`, one string: "
                             "--serve_args='--api_rate_per_second 0'")
    a = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the app and PostgreSQL on a kill
    from labeling_ui.db import sqlite_url

    with tempfile.TemporaryDirectory(prefix="ranktune-load-") as tmp:
        workdir = Path(tmp)
        with contextlib.ExitStack() as stack:
            pg = stack.enter_context(ThrowawayPostgres(max_connections=300)) if a.db == "postgres" else None
            url = pg.url if pg else sqlite_url(workdir / "l.db")
            r = load_run(url, workdir, a.reviewers, a.rankings, a.overlap, a.double_click_every, a.time_limit_s,
                         a.think_seconds, a.arena_chatters, a.arena_models, a.arena_max_new_tokens, a.client, pg,
                         a.restart_db_at, a.restart_down_s, shlex.split(a.serve_args), a.ramp_s)
    print(f"{a.db}: {r['reviewers']} reviewers, {r['rows']} rankings on {r['items']} items (overlap {r['overlap']}), "
          f"{r['double_clicks']} double clicks ({r['duplicate_answers']} answered 'Already saved'): store exact "
          f"(no row lost or duplicated)")
    print(f"submit latency p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms "
          f"over {r['submits_timed']} submits (think time excluded); throughput {r['rankings_per_s']} rankings/s "
          f"({r['wall_s']} s; seeding took {r['seed_s']} s)")
    if a.think_seconds:
        print(f"think time: mean {a.think_seconds} s before each submit, {r['thought_s']} s in all reviewers")
    if a.arena_chatters:
        print("while " + arena_load().line(r["arena"]).lstrip())
    if "restart" in r:
        o = r["restart"]
        when = o.get("skipped") or f"down from {o.get('stopped_at_s')} s to {o.get('back_at_s')} s into the run"
        print(f"database restart: {when}; {o['refused_during_outage']} submits answered 'try again' (each sent "
              f"again with its token), {o['saved_after_retry']} stored by a try whose answer was lost")
    print(json.dumps({"db": a.db, **r}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
