"""Arena load benchmark (#21): time to first token and tokens/s per answer with N concurrent chatters.

    .venv/bin/python benchmarks/arena_load.py --chatters 1 5 20 --turns 3 --max_new_tokens 48 \
        --out /tmp/arena_load.json

It seeds a fresh run folder (a label store with a couple of items and one reviewer account per
chatter), starts the real app (`python -m labeling_ui serve --arena_models ...`) in its own process
on 127.0.0.1, with two arena models (default: the bundled SmolLM2-135M under two names, one resident
copy each), and warms both models up with one turn nobody times. Then, for each N of `--chatters`
in turn, N simulated reviewers chat at once, each with fresh accounts and a fresh conversation,
the way the Arena tab does it over HTTP: sign in through the login form, select the tab (its
leaderboard refresh), then `--turns` times: send a message through the tab's send event (`on_send`,
Gradio's queue: POST /gradio_api/queue/join + the event stream; its gr.State inputs, the
conversation and the turn, are held server-side per session_hash, so the page sends null for them),
read the answers as they stream, vote (`on_arena_vote_a|b|tie|both_bad`), and run the events the
page chains after each (`.then`: the leaderboard refresh, the reason box cleared). A round with
fewer than `--min_round_turns` turns in all (1 chatter) repeats: "New conversation", `--turns` more,
so every round's conversations are equally long (a longer history is a longer prompt). The
ranking tab's page load (`on_load`) is not called: it would claim an item to rank.

Per answer it measures what the chatter sees, from the join: the Gradio queue wait (to
`process_starts`), the first streamed update that shows text of answer A (`seen_ttft_s`; the tab
polls the engine every 0.25 s, so this includes up to that much), the first text of answer B, the
whole turn; and, read from the store's arena_turns rows afterwards, the engine's own figures for
each side: ttft_s (from that side's generate call; loading apart) and tokens/s (decoding, after the
first token). `queue_wait_s` = seen_ttft_s - the engine's ttft of side A: the time before side A's
generation began (Gradio queue + the engine's queue + any model load + polling). A send the engine
refuses ("The arena is busy": more than `--max_queue` chats waiting) is counted as a refusal and
sent again after `--retry_s` (jittered); it is not a turn. It prints p50/p95/mean per N and writes
everything (every turn too) as JSON to `--out`.

`chat()` is also what benchmarks/label_load.py's `--arena_chatters` runs to keep the arena busy
while reviewers rank. The arena's rate limit is off here (`--rate_limit_per_minute 0`): the
benchmark measures the engine, not the per-reviewer limit. Everything listens on 127.0.0.1 only;
every loop is bounded (turns, attempts, a deadline per round); the app is stopped at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import re
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _label_load():
    """benchmarks/label_load.py as a module (the app process, login, percentiles), loaded once."""
    module = sys.modules.get("label_load")
    if module is None:
        spec = importlib.util.spec_from_file_location("label_load", HERE / "label_load.py")
        module = sys.modules.setdefault("label_load", importlib.util.module_from_spec(spec))
        spec.loader.exec_module(module)
    return module


load = _label_load()
PASSWORD = load.PASSWORD
DEFAULT_MODELS = ["base=smollm2-135m", "base2=smollm2-135m"]
OUTCOMES = ("a", "b", "tie", "both_bad")
SIDE_A, SIDE_B, STATUS = 2, 3, -1  # on_send's outputs: conv_id, turn_id, side_a, side_b, message, send, ...
FALLBACK_PROMPTS = ["Why do leaves change color in the fall?", "Write a haiku about the first snow of winter.",
                    "What is 25% of 240?", "How can I wake up earlier without feeling groggy?"]
BODY_RE = re.compile(r'class="turn-body md">')
TAG_RE = re.compile(r"<[^>]+>")
EVENT_TIMEOUT_S = 660  # on_send streams for at most 600 s (tab.py), then stores the turn


def answer_shown(side_html: str | None) -> bool:
    """Whether a side's HTML shows text of the answer being written (its last bubble), not the "…" placeholder."""
    if not isinstance(side_html, str):
        return False
    bodies = BODY_RE.split(side_html)
    if len(bodies) < 2:
        return False
    text = TAG_RE.sub("", bodies[-1]).strip()
    return bool(text) and text != "…"


def status_text(data: list) -> str:
    value = data[STATUS] if data else ""
    return TAG_RE.sub("", value).strip() if isinstance(value, str) else ""


@dataclass
class EventTrace:
    """One event as the page sees it, times in seconds from the join."""

    ok: bool = False
    data: list = field(default_factory=list)  # the outputs' final values
    start_s: float | None = None  # process_starts: out of Gradio's queue
    first_a_s: float | None = None  # first update showing text of answer A (send events only)
    first_b_s: float | None = None
    done_s: float | None = None
    updates: int = 0
    max_ahead: int = 0  # the most "N ahead of you" the status showed (the engine's queue)
    error: str | None = None


AHEAD_RE = re.compile(r"(\d+) ahead of you")


class ChatPage(load.Page):
    """The Arena tab of one signed-in page: events by name, each followed by the events the page
    chains after it (`.then`), streamed updates applied as the browser applies them."""

    def __init__(self, base: str, name: str, timeout_s: float = 120):
        super().__init__(base, name, timeout_s)
        deps = self.client.get("/config").json()["dependencies"]
        self.after: dict[int, list[int]] = {}
        for d in deps:
            if d.get("backend_fn") and d.get("trigger_after") is not None:
                self.after.setdefault(d["trigger_after"], []).append(d["id"])
        self.tab_select = next((d["id"] for d in deps if d.get("backend_fn") and d.get("trigger_after") is None
                                and str(d.get("api_name", "")).startswith("on_select")), None)
        for needed in ("on_send", *(f"on_arena_vote_{o}" for o in OUTCOMES)):
            if needed not in self.fns:
                raise RuntimeError(f"{name}: the page has no {needed} event (is the Arena tab served?)")

    def run(self, fn_id: int, data: list, timeout_s: float | None = None) -> EventTrace:
        from gradio_client.utils import apply_diff

        trace, t0 = EventTrace(), time.perf_counter()
        join = self.client.post("/gradio_api/queue/join", json={
            "data": data, "fn_index": fn_id, "session_hash": self.session_hash, "event_data": None,
            "trigger_id": None})
        join.raise_for_status()
        event_id = join.json()["event_id"]
        values: list | None = None
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while trace.done_s is None and time.monotonic() < deadline:  # a stream closes when the session is idle
            with self.client.stream("GET", "/gradio_api/queue/data", params={"session_hash": self.session_hash}) as s:
                s.raise_for_status()
                for line in s.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    msg = json.loads(line[5:])
                    if msg.get("event_id") != event_id:
                        continue
                    kind, now = msg.get("msg"), time.perf_counter() - t0
                    if kind == "process_starts" and trace.start_s is None:
                        trace.start_s = now
                    elif kind == "process_generating" and msg.get("success") and msg.get("output"):
                        out = msg["output"]["data"]  # the first update whole, then diffs (as the browser applies)
                        values = out if values is None else [apply_diff(v, d) for v, d in zip(values, out)]
                        trace.updates += 1
                        self._seen(trace, values, now)
                    elif kind == "process_completed":
                        trace.done_s, trace.ok = now, bool(msg.get("success"))
                        if trace.ok:
                            trace.data = msg["output"]["data"]
                        else:
                            trace.error = json.dumps(msg.get("output"))[:300]
                        break
                    if time.monotonic() > deadline:
                        break
        if trace.done_s is None:
            trace.error = f"no result within {timeout_s or self.timeout_s} s"
        return trace

    @staticmethod
    def _seen(trace: EventTrace, values: list, now: float) -> None:
        if len(values) <= SIDE_B:
            return
        if trace.first_a_s is None and answer_shown(values[SIDE_A]):
            trace.first_a_s = now
        if trace.first_b_s is None and answer_shown(values[SIDE_B]):
            trace.first_b_s = now
        ahead = AHEAD_RE.search(status_text(values))
        if ahead:
            trace.max_ahead = max(trace.max_ahead, int(ahead.group(1)))

    def event(self, name: str, data: list, timeout_s: float | None = None, follow: bool = True) -> EventTrace:
        """Event `name`, then (`follow`) the chain the page runs after it, one after another."""
        fn_id = self.fns[name]
        trace = self.run(fn_id, data, timeout_s)
        if follow:
            self.follow(fn_id)
        return trace

    def follow(self, fn_id: int) -> None:
        for nxt in self.after.get(fn_id, []):  # bounded: the config's chain is finite and acyclic
            self.run(nxt, [])
            self.follow(nxt)


@dataclass
class ChatterLog:
    name: str
    turns: list[dict] = field(default_factory=list)  # one per answered (stored) turn, in order
    attempts: int = 0  # sends, refused ones included
    refusals: int = 0  # "The arena is busy": the engine's queue was full
    other_refusals: list[str] = field(default_factory=list)  # any other warning a send answered
    vote_s: list[float] = field(default_factory=list)
    error: str | None = None


def chat(base: str, log: ChatterLog, turns: int, prompts: list[str], deadline: float,
         stop: threading.Event | None = None, think_seconds: float = 0.0, retry_s: float = 10.0,
         follow_ups: bool = True, max_attempts: int | None = None, offset: int = 0, conversations: int = 1) -> None:
    """One reviewer in the Arena tab: sign in, select the tab, then `conversations` conversations of
    `turns` turns each (send, read the answers stream in, vote; "New conversation" between two),
    until `deadline` (time.monotonic) or `stop` is set. A refused send is sent again after about
    `retry_s`. Results and any error go to `log`; never raises."""
    page, rng = None, random.Random(f"arena:{log.name}")
    wanted = turns * conversations
    max_attempts = max_attempts or 20 * wanted + 20

    def pause(seconds: float) -> None:
        seconds = min(seconds, max(0.0, deadline - time.monotonic()))
        if stop is not None:
            stop.wait(seconds)
        elif seconds > 0:
            time.sleep(seconds)

    def going() -> bool:
        return time.monotonic() < deadline and not (stop is not None and stop.is_set())

    try:
        page = ChatPage(base, log.name)
        if follow_ups and page.tab_select is not None:
            page.run(page.tab_select, [])
        in_conversation = 0
        while len(log.turns) < wanted and log.attempts < max_attempts and going():
            if in_conversation == turns:  # the page's "New conversation": its state (conversation, turn) cleared
                new = page.event("on_new", [], follow=follow_ups)
                if not new.ok:
                    raise RuntimeError(f"new conversation failed: {new.error}")
                in_conversation = 0
            if think_seconds > 0:
                pause(rng.expovariate(1 / think_seconds))
                if not going():
                    break
            k = len(log.turns)
            text = prompts[(offset + k) % len(prompts)]
            log.attempts += 1
            trace = page.event("on_send", [None, None, text], timeout_s=EVENT_TIMEOUT_S, follow=follow_ups)
            if not trace.ok:
                raise RuntimeError(f"send failed: {trace.error}")
            status = status_text(trace.data)
            if "Which answer is better" not in status:
                if "arena is busy" in status.lower():
                    log.refusals += 1
                else:
                    log.other_refusals.append(status[:200])
                pause(retry_s * (0.5 + rng.random()))
                continue
            outcome = rng.choice(OUTCOMES)
            t = time.perf_counter()
            voted = page.event(f"on_arena_vote_{outcome}", [None, None, ""], follow=follow_ups)
            vote_s = time.perf_counter() - t
            if not voted.ok or "Vote saved" not in status_text(voted.data):
                raise RuntimeError(f"vote not saved: {voted.error or status_text(voted.data)!r}")
            log.vote_s.append(vote_s)
            r4 = lambda v: None if v is None else round(v, 4)  # noqa: E731
            in_conversation += 1
            log.turns.append({"message": text, "vote": outcome, "turn": in_conversation,
                              "gradio_wait_s": r4(trace.start_s),
                              "seen_ttft_s": r4(trace.first_a_s), "seen_first_b_s": r4(trace.first_b_s),
                              "turn_s": r4(trace.done_s), "updates": trace.updates, "max_ahead": trace.max_ahead,
                              "vote_s": r4(vote_s)})
    except Exception as err:  # noqa: BLE001 - reported with the results
        log.error = f"{type(err).__name__}: {err}"
    finally:
        if page is not None:
            page.close()


# ---- seeding, the app, the store's figures ------------------------------------------------------

def seed(url: str, names: list[str], items: int = 2) -> None:
    from labeling_ui.store import LabelStore

    store = LabelStore(url, overlap=1)
    try:
        for i in range(items):
            store.add_item(f"arena load prompt {i}: say hello", [f"hello {i}.{j}" for j in range(2)], [True, True],
                           "load-policy", 1)
        add_accounts(store, names)
    finally:
        store.close()


def add_accounts(store, names: list[str]) -> None:
    for name in names:
        store.accounts.add(name, PASSWORD)


def serve_args(models: list[str], max_new_tokens: int, max_queue: int = 8, max_resident_models: int = 2,
               rate_limit_per_minute: int = 0) -> list[str]:
    """What `python -m labeling_ui serve` needs besides the store to serve the Arena tab."""
    return ["--arena_models", *models, "--max_new_tokens", str(max_new_tokens), "--max_queue", str(max_queue),
            "--max_resident_models", str(max_resident_models), "--rate_limit_per_minute", str(rate_limit_per_minute)]


def engine_figures(url: str, logs: list[ChatterLog]) -> None:
    """Add the engine's own figures (the store's arena_turns rows) to each logged turn, in order."""
    from labeling_ui.arena.store import ArenaStore
    from labeling_ui.store import LabelStore

    store = LabelStore(url)
    try:
        arena = ArenaStore(store, rate_limit_per_minute=None)
        for log in logs:
            rows = sorted(((c.id, t) for c in arena.conversations(log.name, limit=10_000) for t in c.turns),
                          key=lambda x: x[1].id)
            if len(rows) != len(log.turns):
                raise AssertionError(f"{log.name}: {len(log.turns)} turns answered, {len(rows)} stored")
            for seen, (conv_id, row) in zip(log.turns, rows):
                # The page's server-side state at work: each send lands in the conversation it continues.
                if (row.message, row.vote, row.turn) != (seen["message"], seen["vote"], seen["turn"]):
                    raise AssertionError(f"{log.name}: turn {row.id} is {row.message!r}/{row.vote}/turn {row.turn}, "
                                         f"sent {seen['message']!r}/{seen['vote']}/turn {seen['turn']}")
                seen.update(turn_id=row.id, conversation_id=conv_id, ttft_a_s=row.stats_a.ttft_s,
                            ttft_b_s=row.stats_b.ttft_s,
                            tokens_per_s_a=row.stats_a.tokens_per_s, tokens_per_s_b=row.stats_b.tokens_per_s,
                            tokens_a=row.stats_a.num_tokens, tokens_b=row.stats_b.num_tokens,
                            queue_wait_s=(None if seen["seen_ttft_s"] is None or row.stats_a.ttft_s is None
                                          else round(seen["seen_ttft_s"] - row.stats_a.ttft_s, 4)))
    finally:
        store.close()


def spread(values: list) -> dict:
    """n, mean, p50, p95, max of the values that are there (None: not measured)."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"n": 0}
    r = lambda v: round(v, 3)  # noqa: E731
    return {"n": len(xs), "mean": r(sum(xs) / len(xs)), "p50": r(load.percentile(xs, 50)),
            "p95": r(load.percentile(xs, 95)), "max": r(max(xs))}


def summarize(logs: list[ChatterLog], wall_s: float | None = None) -> dict:
    turns = [t for g in logs for t in g.turns]
    both = lambda key: [t.get(key.format(side)) for side in "ab" for t in turns]  # noqa: E731
    tokens = sum((t.get("tokens_a") or 0) + (t.get("tokens_b") or 0) for t in turns)
    attempts = sum(g.attempts for g in logs)
    out = {"chatters": len(logs), "turns": len(turns), "answers": 2 * len(turns), "attempts": attempts,
           "refusals_busy": sum(g.refusals for g in logs),
           "refusal_rate": round(sum(g.refusals for g in logs) / attempts, 3) if attempts else None,
           "other_refusals": [x for g in logs for x in g.other_refusals][:20],
           "errors": [f"{g.name}: {g.error}" for g in logs if g.error],
           "seen_ttft_s": spread([t["seen_ttft_s"] for t in turns]),
           "seen_first_b_s": spread([t["seen_first_b_s"] for t in turns]),
           "engine_ttft_s": spread(both("ttft_{}_s")), "tokens_per_s": spread(both("tokens_per_s_{}")),
           "tokens_per_answer": spread(both("tokens_{}")),
           "gradio_queue_wait_s": spread([t["gradio_wait_s"] for t in turns]),
           "queue_wait_s": spread([t.get("queue_wait_s") for t in turns]),
           "turn_s": spread([t["turn_s"] for t in turns]), "vote_s": spread([x for g in logs for x in g.vote_s]),
           "max_ahead": max([t["max_ahead"] for t in turns], default=0)}
    if wall_s is not None:
        out |= {"wall_s": round(wall_s, 1), "tokens_per_s_all": round(tokens / wall_s, 2) if wall_s > 0 else None}
    return out


def read_prompt_texts(path: str | None) -> list[str]:
    if path and Path(path).is_file():
        from ranktune.records import read_prompts

        texts = [p["prompt"] for p in read_prompts(path) if len(p["prompt"]) <= 1000]
        if texts:
            return texts
    return list(FALLBACK_PROMPTS)


def run_chatters(base: str, names: list[str], turns: int, prompts: list[str], time_limit_s: float,
                 stop: threading.Event | None = None, **kw) -> tuple[list[ChatterLog], list[threading.Thread]]:
    """Start one `chat` thread per name (each its own prompts' slice; `kw` goes to `chat`);
    returns (logs, threads)."""
    deadline = time.monotonic() + time_limit_s
    logs = [ChatterLog(n) for n in names]
    threads = [threading.Thread(target=chat, args=(base, log, turns, prompts, deadline, stop),
                                kwargs={**kw, "offset": 7 * i}, daemon=True, name=f"chatter-{log.name}")
               for i, log in enumerate(logs)]
    for t in threads:
        t.start()
    return logs, threads


def join_all(threads: list[threading.Thread], limit_s: float) -> None:
    end = time.monotonic() + limit_s
    for t in threads:
        t.join(timeout=max(0.1, end - time.monotonic()))


def warm_up(base: str, name: str, prompts: list[str], turns: int = 1, time_limit_s: float = 600) -> ChatterLog:
    """Load both models with `turns` untimed turns; AssertionError if they were not answered."""
    log = ChatterLog(name)
    chat(base, log, turns, prompts, time.monotonic() + time_limit_s, follow_ups=False)
    if log.error or len(log.turns) < turns:
        raise AssertionError(f"warm-up failed: {log.error or log.other_refusals or 'no answer'}")
    return log


def arena_run(workdir: Path, chatters: list[int], turns: int, models: list[str], max_new_tokens: int,
              max_queue: int = 8, max_resident_models: int = 2, think_seconds: float = 0.0, retry_s: float = 10.0,
              time_limit_s: float = 1800, warmup_turns: int = 1, follow_ups: bool = True,
              prompts_file: str | None = "data/prompts.jsonl", min_round_turns: int = 1) -> dict:
    """Seed, serve, warm up, run each N of `chatters` in turn, stop, read the store. Returns the figures."""
    from labeling_ui.db import sqlite_url

    run_folder = workdir / "runs" / "load"  # the app serves --run load --runs_dir workdir/runs (label_load.start_app)
    run_folder.mkdir(parents=True)
    url = sqlite_url(run_folder / "labels.db")
    rounds = [[f"n{n:02d}c{i:02d}" for i in range(n)] for n in chatters]
    names_by_round = [[f"r{k}{name}" for name in names] for k, names in enumerate(rounds)]  # 1 5 1: fresh again
    seed(url, ["warm"] + [n for names in names_by_round for n in names])
    prompts = read_prompt_texts(str(REPO / prompts_file) if prompts_file and not Path(prompts_file).is_absolute()
                                else prompts_file)
    app = load.start_app(url, workdir, extra_args=serve_args(models, max_new_tokens, max_queue, max_resident_models))
    results, all_logs = [], []
    try:
        t = time.perf_counter()
        if warmup_turns:
            warm_up(app.base, "warm", prompts[::-1], warmup_turns)
        warm_s = time.perf_counter() - t
        for names in names_by_round:
            # A small round repeats its conversations (each `turns` long, as in every round) for enough answers.
            conversations = max(1, -(-min_round_turns // (turns * len(names))))
            start = time.perf_counter()
            logs, threads = run_chatters(app.base, names, turns, prompts, time_limit_s, think_seconds=think_seconds,
                                         retry_s=retry_s, follow_ups=follow_ups, conversations=conversations)
            join_all(threads, time_limit_s + EVENT_TIMEOUT_S + 60)
            results.append((logs, time.perf_counter() - start))
            all_logs += logs
            print(f"{len(names)} chatters x {conversations} conversations of {turns} turns: "
                  f"{sum(len(g.turns) for g in logs)} turns answered, "
                  f"{sum(g.refusals for g in logs)} refusals, {time.perf_counter() - start:.1f} s", flush=True)
    finally:
        app.stop()
    engine_figures(url, all_logs)
    runs = []
    for logs, wall in results:
        summary = summarize(logs, wall)
        summary["turn_records"] = [{"chatter": g.name, **t} for g in logs for t in g.turns]
        runs.append(summary)
    return {"settings": {"chatters": chatters, "turns": turns, "models": models, "max_new_tokens": max_new_tokens,
                         "max_queue": max_queue, "max_resident_models": max_resident_models,
                         "think_seconds": think_seconds, "retry_s": retry_s, "follow_ups": follow_ups,
                         "min_round_turns": min_round_turns, "time_limit_s": time_limit_s,
                         "warmup_turns": warmup_turns, "warmup_s": round(warm_s, 1), "rate_limit_per_minute": 0,
                         "stream_every_s": 0.25},
            "runs": runs}


def line(r: dict) -> str:
    def fig(key: str, unit: str = "s") -> str:
        s = r[key]
        return f"p50 {s['p50']} / p95 {s['p95']} / mean {s['mean']} {unit}" if s.get("n") else "-"

    return (f"{r['chatters']:>3} chatters: {r['turns']} turns ({r['answers']} answers) in {r.get('wall_s')} s; "
            f"refused busy {r['refusals_busy']} of {r['attempts']} sends; errors {len(r['errors'])}\n"
            f"    seen TTFT (join -> first text of A): {fig('seen_ttft_s')}\n"
            f"    engine TTFT per answer: {fig('engine_ttft_s')}; tokens/s per answer: {fig('tokens_per_s', 'tok/s')}"
            f"; {r.get('tokens_per_s_all')} tok/s all answers together\n"
            f"    queue wait before A's generation: {fig('queue_wait_s')} (Gradio queue {fig('gradio_queue_wait_s')}); "
            f"whole turn {fig('turn_s')}; vote {fig('vote_s')}; most ahead {r['max_ahead']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chatters", type=int, nargs="+", default=[1, 5, 20],
                        help="concurrent chatters; each number is one round, run one after another")
    parser.add_argument("--turns", type=int, default=3, help="turns per conversation (every round alike)")
    parser.add_argument("--min_round_turns", type=int, default=12,
                        help="a round with fewer chatters x turns repeats its conversations (fresh ones, each "
                             "--turns long) until it has this many turns")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                        help="the arena's models, NAME=PATH (a model folder or smollm2-135m); at least two")
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--max_queue", type=int, default=8, help="the engine's queue (serve's default: 8)")
    parser.add_argument("--max_resident_models", type=int, default=2)
    parser.add_argument("--think_seconds", type=float, default=0.0,
                        help="mean pause before each send (exponential; 0: send again at once)")
    parser.add_argument("--retry_s", type=float, default=10.0,
                        help="about this long (0.5-1.5x) before a refused send is sent again")
    parser.add_argument("--time_limit_s", type=float, default=1800, help="each round's chatters stop after this long")
    parser.add_argument("--warmup_turns", type=int, default=1, help="untimed turns first (models loaded)")
    parser.add_argument("--no_follow_ups", action="store_true",
                        help="skip the events the page chains after a send or vote (leaderboard refresh)")
    parser.add_argument("--prompts", default="data/prompts.jsonl")
    parser.add_argument("--out", help="write the figures (and every turn) as JSON here")
    a = parser.parse_args(argv)
    if len(a.models) < 2 or min(a.chatters) < 1 or not 1 <= a.turns <= 8:
        parser.error("need two --models, --chatters >= 1 and --turns from 1 to 8 (serve's --max_turns)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the app on a kill
    with tempfile.TemporaryDirectory(prefix="ranktune-arena-load-") as tmp:
        r = arena_run(Path(tmp), a.chatters, a.turns, a.models, a.max_new_tokens, a.max_queue, a.max_resident_models,
                      a.think_seconds, a.retry_s, a.time_limit_s, a.warmup_turns, not a.no_follow_ups, a.prompts,
                      a.min_round_turns)
    print(f"arena: {', '.join(a.models)}; max_new_tokens {a.max_new_tokens}, max_queue {a.max_queue}, "
          f"warm-up {r['settings']['warmup_s']} s")
    for run in r["runs"]:
        print(line(run))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(r, indent=1, default=str) + "\n", encoding="utf-8")
        print(f"wrote {a.out}")
    print(json.dumps([{k: v for k, v in run.items() if k != "turn_records"} for run in r["runs"]]))
    return 1 if any(run["errors"] for run in r["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
