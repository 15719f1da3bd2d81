"""The JSON-API reviewer of benchmarks/label_load.py (`--client api`): what a front end on
/api/v1 does, through the package's client (labeling_ui.client): next task, then submit after
submit with the reply's next task, each submit with a fresh token. A double click sends one
token twice at once. While the store is down (`--restart_db_at`) a submit is answered 503;
this reviewer then does what a person told "try again" does: waits a moment and sends the same
submission (same token) again, so a submit whose first try was stored but whose answer was lost
is answered "Already saved" and counted as that one row (`saved_after_retry`).
"""

from __future__ import annotations

import random
import threading
import time
import uuid

from labeling_ui.client import ApiError, LabelClient

RETRY_FOR_S = 120  # how long a reviewer keeps trying one submission while the store is down
K = 4


def seed_tokens(url: str, names: list[str]) -> dict[str, str]:
    """One API token per reviewer (what `python -m labeling_ui create-token` makes)."""
    from labeling_ui.store import LabelStore

    store = LabelStore(url)
    try:
        return {n: store.tokens.create(n, "load test", "benchmark")[1] for n in names}
    finally:
        store.close()


def _send(api: LabelClient, log, assignment_id: int, ranks: list[int], token: str, deadline: float) -> dict:
    """One submission, sent again with its token while the answer is 'try again' (503) or lost."""
    failed_before = False
    while True:
        try:
            reply = api.submit(assignment_id, ranks, token=token)
        except ApiError as err:
            if err.status not in (0, 502, 503, 504) or time.monotonic() > deadline:
                raise
            log.outage_refusals += 1
            failed_before = True
            time.sleep(0.5)
            continue
        reply["_failed_before"] = failed_before
        return reply


def review_api(base: str, token: str, log, double_click_every: int, max_submits: int, deadline: float,
               think_seconds: float = 0.0, ramp_s: float = 0.0) -> None:
    """`ramp_s`: start at a random moment within this many seconds (people do not all arrive at once)."""
    rng = random.Random(f"think:{log.name}")
    # retries=0: the client's own quiet retries are off, so every outage answer is seen and counted here.
    api = LabelClient(base, token, timeout=120, retries=0)
    try:
        time.sleep(rng.uniform(0, ramp_s))
        turn = api.next_task()
        n = 0
        while turn["task"] is not None and n < max_submits and time.monotonic() < deadline:
            n += 1
            task = turn["task"]
            ranks = [1 + (n + j) % K for j in range(K)]
            double = double_click_every > 0 and n % double_click_every == 0
            if think_seconds > 0:
                pause = min(rng.expovariate(1 / think_seconds), max(0.0, deadline - time.monotonic()))
                time.sleep(pause)
                log.thought_s += pause
            sub_token = uuid.uuid4().hex
            start = time.perf_counter()
            if double:
                replies: list[dict] = []
                errors: list[Exception] = []

                def click():
                    try:
                        replies.append(_send(api, log, task["assignment_id"], ranks, sub_token,
                                             time.monotonic() + RETRY_FOR_S))
                    except Exception as err:  # noqa: BLE001 - raised below
                        errors.append(err)

                clicks = [threading.Thread(target=click) for _ in range(2)]
                for c in clicks:
                    c.start()
                for c in clicks:
                    c.join()
                if errors:
                    raise errors[0]
                log.double_clicks += 1
            else:
                replies = [_send(api, log, task["assignment_id"], ranks, sub_token, time.monotonic() + RETRY_FOR_S)]
                if not replies[0]["_failed_before"]:  # a retried submit's time is the outage's, not the server's
                    log.latencies.append(time.perf_counter() - start)
                    log.sent_at.append(start)
            log.items.append(task["item_id"])
            saved = [r for r in replies if not r["duplicate"]]
            if len(saved) > 1:
                raise RuntimeError("one token was saved twice")
            if not saved and not any(r["_failed_before"] for r in replies):
                raise RuntimeError(f"submit not saved: {replies[0]['message']!r}")
            log.saved += len(saved)
            log.already += len(replies) - len(saved)
            if not saved:  # stored by a try whose answer was lost in the outage: still this submit's one row
                log.saved_after_retry += 1
            turn = {"task": replies[-1]["task"]}
    except Exception as err:  # noqa: BLE001 - reported with the results
        log.error = f"{type(err).__name__}: {err}"
    finally:
        api.close()
