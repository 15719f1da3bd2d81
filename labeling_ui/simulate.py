"""Simulated reviewers: rule-based stand-ins that label through the same store as people do.

Each is a `ranktune.gold.SimulatedReviewer` (the documented gold preference, plus a personal
length taste and noise). They log in to nothing, but otherwise follow a human's path: claim the
next task, rank its answers (ties allowed), submit with a fresh token, and the assignment rules
(overlap, never the same item twice) apply to them unchanged. Their accounts are named
`sim-1`, `sim-2`, ... and marked as simulated in the store's reviewer list by that prefix.
"""

from __future__ import annotations

import secrets

from tqdm.auto import tqdm

from ranktune.gold import SimulatedReviewer, simulated_panel
from labeling_ui.questions import question
from labeling_ui.store import LabelStore


def ensure_accounts(store: LabelStore, panel: list[SimulatedReviewer]) -> None:
    """Create the simulated reviewers' accounts (with unusable random passwords) if missing."""
    for reviewer in panel:
        if store.accounts.get(reviewer.name) is None:
            store.accounts.add(reviewer.name, secrets.token_urlsafe(24))


def simulate_reviews(store: LabelStore, panel: list[SimulatedReviewer], max_per_reviewer: int | None = None) -> dict:
    """Every reviewer of `panel` ranks items until none is left for them (or `max_per_reviewer`)."""
    ensure_accounts(store, panel)
    done = {r.name: 0 for r in panel}
    bar = tqdm(desc="simulated reviewers", unit="ranking")
    active = list(panel)
    while active:  # turn by turn, as a team works at once: every reviewer gets a share of the items
        for reviewer in list(active):
            task = None
            if max_per_reviewer is None or done[reviewer.name] < max_per_reviewer:
                task = store.next_task(reviewer.name)
            if task is None:
                active.remove(reviewer)
                continue
            store.submit(reviewer.name, task.assignment_id, reply=simulated_reply(reviewer, task),
                         token=secrets.token_hex(16))
            done[reviewer.name] += 1
            bar.update()
    bar.close()
    return {"rankings": sum(done.values()), "per_reviewer": done}


def simulated_reply(reviewer: SimulatedReviewer, task) -> dict:
    """What `reviewer` answers to `task` (answers in the order the store shows this reviewer).

    Rankings come from the reviewer's own `rank` (bad kinds and position bias included); the
    other question types map its utilities (gold, taste, noise) through the type's
    `simulated_reply`, so the bad kinds answer those as an honest reviewer would."""
    answers, ended = [a.text for a in task.answers], [a.ended for a in task.answers]
    if task.question == "ranking":
        return {"ranks": reviewer.rank(task.prompt_text, answers, ended)}
    utilities = [reviewer.utility(task.prompt_text, a, e) for a, e in zip(answers, ended)]
    return question(task.question).simulated_reply(utilities, reviewer.tie_margin)


def default_panel(n: int = 3, noise: float = 0.3, disagreement: float = 0.5, seed: int = 0,
                  position_bias: float = 0.0) -> list[SimulatedReviewer]:
    """`sim-1..n`; `position_bias` > 0: each favours the answers the store shows them first."""
    return simulated_panel(n, noise=noise, disagreement=disagreement, seed=seed, position_bias=position_bias)


def bad_panel(kinds: str, seed: int = 0, noise: float = 0.3) -> list[SimulatedReviewer]:
    """Bad reviewers for measuring label quality control: "random,adversarial" -> sim-bad-1, sim-bad-2."""
    from ranktune.errors import InputError
    from ranktune.gold import bad_reviewer

    names = [k.strip() for k in (kinds or "").split(",") if k.strip()]
    try:
        return [bad_reviewer(kind, f"sim-bad-{i + 1}", seed=seed, noise=noise) for i, kind in enumerate(names)]
    except ValueError as err:
        raise InputError(str(err), field="bad_reviewers") from None
