"""The record formats the stages exchange, each with a strict reader.

- demonstrations: `prompt` + `completion` (plain text), or chat `messages` ending in an
  assistant turn — SFT data, and what reviewers write in the labeling app.
- prompts: `prompt` (text or chat messages) — what policies answer.
- preferences: `prompt` + `chosen` + `rejected` — the pairs a reward model learns from.

A source is a JSONL file or, when no such file exists, a Hugging Face dataset name.
"""

from __future__ import annotations

import random

import math
from pathlib import Path
from typing import Callable

from ranktune.errors import InputError
from ranktune.jsonl import read_jsonl, require_messages, require_str


def _prompt_field(obj: dict, path: Path, lineno: int, field: str = "prompt") -> str | list[dict]:
    if field not in obj:
        raise InputError("missing", path, lineno, field)
    if isinstance(obj[field], list):
        return require_messages(obj, field, path, lineno)
    return require_str(obj, field, path, lineno)


def demonstration(obj: dict, path: Path, lineno: int) -> dict:
    """Normalise to {prompt, completion}; chat records split before their last assistant turn."""
    if "messages" in obj:
        messages = require_messages(obj, "messages", path, lineno)
        if messages[-1]["role"] != "assistant" or len(messages) < 2:
            raise InputError("must end with an assistant message after at least one other message",
                             path, lineno, "messages")
        if not messages[-1]["content"].strip():
            raise InputError("the final assistant message is empty", path, lineno, "messages")
        return {"prompt": messages[:-1], "completion": messages[-1]["content"]}
    if "prompt" not in obj and "completion" not in obj:
        raise InputError("missing (expected 'prompt' + 'completion', or 'messages')", path, lineno, "prompt")
    return {"prompt": _prompt_field(obj, path, lineno), "completion": require_str(obj, "completion", path, lineno)}


def prompt_only(obj: dict, path: Path, lineno: int) -> dict:
    return {"prompt": _prompt_field(obj, path, lineno)}


def preference(obj: dict, path: Path, lineno: int) -> dict:
    rec = {"prompt": _prompt_field(obj, path, lineno)}
    for field in ("chosen", "rejected"):
        rec[field] = require_str(obj, field, path, lineno)
    if rec["chosen"].strip() == rec["rejected"].strip():
        raise InputError("is the same text as 'chosen': a pair needs two different answers",
                         path, lineno, "rejected")
    if "margin" in obj:
        margin = obj["margin"]
        try:
            value = float(margin) if isinstance(margin, (int, float)) and not isinstance(margin, bool) else None
        except OverflowError:  # an integer too large for a float
            value = math.inf
        if value is None or not math.isfinite(value):
            raise InputError("expected a finite number", path, lineno, "margin")
        rec["margin"] = value
    for extra in ("ranking_id", "reviewer"):
        if extra in obj:
            rec[extra] = obj[extra]
    return rec


def load_records(source: str | Path, validate: Callable[[dict, Path, int], dict], what: str,
                 split: str = "train") -> list[dict]:
    """Records from a JSONL file, or from a Hugging Face dataset when `source` is not a file."""
    path = Path(source)
    if path.exists() or path.suffix in (".jsonl", ".json") or str(source).startswith((".", "/", "~")):
        return read_jsonl(path, validate, what)
    try:
        import datasets

        rows = datasets.load_dataset(str(source), split=split)
    except Exception as err:  # hub and offline errors come in many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise InputError(f"no such file, and not loadable as a Hugging Face dataset ({first})", source) from None
    records = [validate(dict(row), Path(str(source)), i + 1) for i, row in enumerate(rows)]
    if not records:
        raise InputError(f"dataset is empty: expected {what}", source)
    return records


def read_demonstrations(source: str | Path) -> list[dict]:
    return load_records(source, demonstration, "demonstrations (prompt + completion, or messages)")


def read_prompts(source: str | Path) -> list[dict]:
    return load_records(source, prompt_only, "prompts")


def read_preferences(source: str | Path) -> list[dict]:
    return load_records(source, preference, "preference pairs (prompt, chosen, rejected)")


def split_prompts(prompts: list, eval_fraction: float, max_eval: int, seed: int) -> tuple[list, list]:
    """Distinct prompts, shuffled with `seed`, split into (train, held-out eval)."""
    if not 0.0 <= eval_fraction < 1.0:
        raise InputError(f"must be in [0, 1), got {eval_fraction}", field="eval_fraction")
    seen, unique = set(), []
    for p in prompts:
        key = repr(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    random.Random(seed).shuffle(unique)
    n_eval = min(max_eval, int(round(len(unique) * eval_fraction))) if eval_fraction > 0 else 0
    return unique[n_eval:], unique[:n_eval]
