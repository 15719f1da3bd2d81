"""`jsonl` (import): prompts with answers written elsewhere, as JSONL or a Hugging Face `datasets` folder.

One record per item (docs/label-formats.md has the full schema):

    {"prompt": "text" | [{"role": "user", "content": ...}, ...],
     "answers": ["text", ...] | [{"text": ..., "model": "name", "ended": true}, ...],
     "model": "name" | ["name per answer"],      optional: who wrote the answers (default "imported";
                                                 `policy`, as our own rankings.jsonl has it, if no `model`)
     "ended": [true, ...] | true,                optional: the writer stopped by itself (default true)
     "ranks": [1, 2, 2], "reviewer": "name",     optional: an existing ranking (1 = best, ties share a rank)
     "strength": 0-3 (pairwise rounds), "scores": [1-7, ...] (rating rounds, instead of ranks),
     "rankings": [{"reviewer", "ranks" | "scores", "strength"?}, ...],   optional: several reviewers' answers
     "priority": 2.5}                            optional: items of higher priority are served first (default 0)

Records of one prompt with the same answers are one item with all their rankings (a file with a
line per ranking, like our export's rankings.jsonl, imports as it was ranked). A folder is read with `datasets.load_from_disk` (a Dataset, or a DatasetDict with one split or a
`train` split) with the same columns; a null is the same as a missing field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from labeling_ui.formats.base import (Format, ImportItem, check_prompt, check_reviewer, check_text, expect,
                                      make_label, provenance)
from ranktune.errors import InputError
from ranktune.jsonl import read_jsonl

DEFAULT_MODEL = "imported"


def _model(value: Any, i: int, where: str, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = value[i] if i < len(value) else None
        name = f"{name}[{i}]"
        if value is None:
            return None
    if not isinstance(value, str) or not value.strip():
        raise InputError("expected a model name (text)", where, field=name)
    return value.strip()


def _ended(value: Any, i: int, k: int, where: str, name: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) != k:
            raise InputError(f"expected one true/false per answer ({k})", where, field=name)
        value, name = value[i], f"{name}[{i}]"
    if not isinstance(value, bool):
        raise InputError("expected true or false", where, field=name)
    return value


def item_from(obj: dict, where: str, question: str, record: Any) -> ImportItem:
    prompt = check_prompt(obj.get("prompt"), where)
    raw = expect(obj, "answers", list, where)
    k = len(raw)
    if k < 2:
        raise InputError(f"expected at least 2 answers, got {k}", where, field="answers")
    texts, models, ended = [], [], []
    for i, a in enumerate(raw):
        name = f"answers[{i}]"
        own_model = own_end = None
        if isinstance(a, dict):
            text = check_text(a.get("text"), where, f"{name}.text")
            own_model = _model(a.get("model"), i, where, f"{name}.model")
            own_end = _ended(a.get("ended"), i, k, where, f"{name}.ended")
        elif isinstance(a, str):
            text = a
        else:
            raise InputError("expected text or {text, model, ended}", where, field=name)
        if not text.strip():
            raise InputError("is empty", where, field=name)
        texts.append(text)
        models.append(own_model or _model(obj.get("model"), i, where, "model")
                      or _model(obj.get("policy"), i, where, "policy") or DEFAULT_MODEL)
        end = own_end if own_end is not None else _ended(obj.get("ended"), i, k, where, "ended")
        ended.append(True if end is None else end)
    labels = []
    if any(obj.get(key) is not None for key in ("ranks", "scores", "strength")):
        reviewer = check_reviewer(obj.get("reviewer"), where)
        labels.append(make_label(question, reviewer, obj.get("ranks"), k, where, strength=obj.get("strength"),
                                 scores=obj.get("scores")))
    elif obj.get("reviewer") is not None:
        raise InputError("missing (a reviewer is given, but no ranking)", where, field="ranks")
    for j, r in enumerate(expect(obj, "rankings", list, where, optional=True) or []):
        name = f"rankings[{j}]"
        if not isinstance(r, dict):
            raise InputError("expected {reviewer, ranks}", where, field=name)
        labels.append(make_label(question, check_reviewer(r.get("reviewer"), where, f"{name}.reviewer"),
                                 r.get("ranks"), k, where, f"{name}.ranks", strength=r.get("strength"),
                                 scores=r.get("scores")))
    return ImportItem(prompt, texts, ended, models, labels, where, provenance("jsonl", record, [None] * k),
                      priority=_priority(obj.get("priority"), where))


def _priority(value: Any, where: str) -> float | None:
    """An optional finite number: items of higher priority are served first."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"expected a finite number (higher is served first), got {value!r}", where,
                         field="priority")
    return float(value)


class Jsonl(Format):
    name = "jsonl"
    title = "prompts + answers (+ an existing ranking) as JSONL or a datasets folder"
    reads = True

    def read(self, path: Path, question: str) -> list[ImportItem]:
        if path.is_dir():
            return [item_from(row, f"{path}[row {i}]", question, i) for i, row in enumerate(_dataset_rows(path))]
        return read_jsonl(path, lambda obj, p, line: item_from(obj, f"{p}:{line}", question, line),
                          "records with a prompt and its answers")


def _dataset_rows(path: Path) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as err:  # not a saved dataset: many error types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise InputError(f"not a JSONL file, nor a datasets folder (load_from_disk: {first})", path) from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if "train" not in ds and len(splits) != 1:
            raise InputError(f"a DatasetDict with splits {', '.join(splits)}: save the one to import on its own",
                             path)
        ds = ds["train" if "train" in ds else splits[0]]
    rows = [dict(row) for row in ds]
    if not rows:
        raise InputError("dataset is empty: expected records with a prompt and its answers", path)
    return rows


FORMAT = Jsonl()
