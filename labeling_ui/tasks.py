"""What the label store hands out and takes in: tasks, submissions, progress, and the checks on
what a reviewer sends (ranks, tokens). Plain values, no database: the store, the app and the
simulated reviewers share them."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_COMMENT_CHARS, MAX_DEMONSTRATION_CHARS = 5_000, 20_000


class SubmitError(ValueError):
    """A submission the store refuses; the message is meant for the reviewer."""


class UnknownReviewer(SubmitError):
    """The reviewer named is not in the store, or is disabled."""


class StoreUnavailable(Exception):
    """The store's database cannot be reached (down, restarting, connection lost); the message is
    meant for the reviewer. Not a SubmitError: nothing is wrong with what was sent, and the same
    call may well work in a moment (an HTTP API answers 503, not 4xx).

    `maybe_saved`: the connection was lost during COMMIT, so the write may have landed (nothing
    of it was stored otherwise). A submission sent again is safe either way: it carries its token,
    and a token stored already answers "Already saved".
    """

    MESSAGE = "The label store cannot be reached right now (its database is down or restarting). Try again in a moment."

    def __init__(self, message: str = MESSAGE, maybe_saved: bool = False):
        super().__init__(message)
        self.maybe_saved = maybe_saved


def answer_label(position: int) -> str:
    return chr(ord("A") + position) if position < 26 else str(position + 1)


def prompt_key(prompt: str | list) -> str:
    return hashlib.sha256(json.dumps(prompt, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def check_ranks(ranks: Sequence, k: int) -> list[int]:
    """Dense ranks for k answers: each in 1..k, 1 = best, ties share a rank, no gaps."""
    if ranks is None or len(ranks) != k:
        raise SubmitError(f"Give each of the {k} answers a rank.")
    out = []
    for i, r in enumerate(ranks):
        if r is None or (isinstance(r, str) and not r.strip()):
            raise SubmitError(f"Answer {answer_label(i)} has no rank yet.")
        try:
            value = float(r)
        except (TypeError, ValueError):
            raise SubmitError(f"Answer {answer_label(i)}: '{r}' is not a number.") from None
        if value != int(value) or not 1 <= value <= k:
            raise SubmitError(f"Answer {answer_label(i)}: ranks are whole numbers from 1 (best) to {k}.")
        out.append(int(value))
    missing = sorted(set(range(1, max(out) + 1)) - set(out))
    if missing:
        raise SubmitError(f"No answer has rank {', '.join(map(str, missing))}: ranks must not skip a number "
                          "(answers of equal quality share a rank; the next answer takes the next number).")
    return out


@dataclass(frozen=True)
class Answer:
    position: int  # the candidate's place in the item (what the store and the export index by)
    text: str
    ended: bool  # the model stopped by itself (EOS), rather than being cut off
    shown: int | None = None  # where this reviewer sees it (0 = first, "A"); None: at `position`

    @property
    def label(self) -> str:
        return answer_label(self.position if self.shown is None else self.shown)


@dataclass(frozen=True)
class Previous:
    """What the reviewer sent last time for a task reopened by undo."""

    ranks: list[int] | None  # by candidate position, as stored
    skipped: bool
    flags: list[str] = field(default_factory=list)
    comment: str = ""
    demonstration: str = ""
    response: dict | None = None  # the question type's own answer, by candidate position


@dataclass(frozen=True)
class Task:
    """One item claimed by one reviewer: answer `question` about `answers` (in the order this
    reviewer is shown them) for `prompt`."""

    assignment_id: int
    item_id: int
    round: int
    prompt: str | list
    prompt_text: str
    answers: list[Answer]
    expires_at: datetime
    previous: Previous | None = None
    question: str = "ranking"

    def by_shown(self, by_position: Sequence) -> list:
        """Values indexed by candidate position, reordered as shown on this reviewer's page."""
        return [by_position[a.position] for a in self.answers]


@dataclass(frozen=True)
class Submitted:
    ranking_id: str
    duplicate: bool  # this token was submitted before; nothing new was written
    skipped: bool


@dataclass(frozen=True)
class Progress:
    done: int
    skipped: int
    remaining: int  # items this reviewer may still be given (including the one on screen)
    today: int = 0  # submissions (not skips) since midnight UTC
    more: bool = False  # at least `remaining` are left, maybe more (a click counts only so far)

    @property
    def total(self) -> int:
        return self.done + self.remaining


@dataclass(frozen=True)
class Turn:
    """What the page shows after one click: the item on screen now (None: nothing left) and the
    reviewer's progress, with the submission that click recorded (None for a plain page load)."""

    task: Task | None
    progress: Progress
    submitted: Submitted | None = None
