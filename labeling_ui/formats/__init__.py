"""Label formats of other tools, one module each (see base.py): every module here defining `FORMAT` is one.

    python -m labeling_ui import --format F --file PATH [--round N] [--question ranking|pairwise|rating]
    python -m labeling_ui export --format F [--round N] [--out FOLDER]

`ranktune` (the export the reward stage reads, labeling_ui/export.py) stays the default export and
is no module here. docs/label-formats.md describes each format: its schema, how it maps onto
items and rankings, and what it cannot carry.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from labeling_ui.formats.base import (ExportItem, ExportRanking, Format, ImportItem, ImportLabel, merge_same,
                                      store_items)
from ranktune.errors import InputError

DEFAULT_EXPORT = "ranktune"

FORMATS: dict[str, Format] = {}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _f = getattr(importlib.import_module(f"{__name__}.{_info.name}"), "FORMAT", None)
    if _f is not None:
        FORMATS[_f.name] = _f


def readers() -> list[str]:
    return sorted(n for n, f in FORMATS.items() if f.reads)


def writers() -> list[str]:
    return [DEFAULT_EXPORT] + sorted(n for n, f in FORMATS.items() if f.writes)


def label_format(name: str | None, reading: bool) -> Format:
    """The format called `name`, able to read (import) or write (export); InputError naming the known ones."""
    known = readers() if reading else writers()
    if not name:
        raise InputError(f"give --format, one of: {', '.join(known)}", field="format")
    f = FORMATS.get(name)
    if f is None or not (f.reads if reading else f.writes):
        verb = "import" if reading else "export"
        raise InputError(f"no {verb} format '{name}'; {verb} formats: {', '.join(known)}", field="format")
    return f


def import_file(store, fmt: str, path: str | Path, round: int | None, question: str | None, actor: str,
                dry_run: bool = False, reviewer_prefix: str = "") -> dict:
    """Read `path` in format `fmt` and store all of it in one transaction (LabelStore.import_items).

    `round`: None = a new round after the latest. `question`: None = the round's question type if it
    has items, else ranking; a question that differs from an existing round's is an error.
    `reviewer_prefix` goes before every imported reviewer's name; `dry_run` checks and counts only."""
    f = label_format(fmt, reading=True)
    path = Path(path)
    if round is None:
        rounds = [r for r, _, _ in store.rounds()]
        round = max(rounds, default=0) + 1
    held = store.round_question(round)
    if question is None:
        question = held or "ranking"
    elif held is not None and held != question:
        raise InputError(f"round {round} asks the {held} question, not {question}: leave --question out, or "
                         "import into another round", field="question")
    from labeling_ui.questions import question as question_type

    question_type(question)  # an unknown question type fails here, before the file is read
    items = merge_same(f.read(path, question))
    if not items:
        raise InputError("nothing to import: no record of this file has a prompt with 2 or more answers", path)
    if reviewer_prefix:
        for item in items:
            for label in item.labels:
                label.reviewer = reviewer_prefix + label.reviewer
    return store.import_items(items, round, question, actor, f.name, str(path), dry_run=dry_run)


def export_store(store, fmt: str, out: Path, round: int | None = None) -> dict:
    """Write the store's items (of `round`, or all) with their rankings into `out` in format `fmt`
    (replaced as a whole, in one rename)."""
    from ranktune.runs import publish_dir

    f = label_format(fmt, reading=False)
    items = store_items(store, round)
    if not items:
        raise InputError(f"nothing to export: no items{f' in round {round}' if round is not None else ''} in "
                         f"{store.db.display()}")
    with publish_dir(out) as tmp:
        summary = f.write(items, tmp)
    return {"format": f.name, "out": str(out), "items": len(items), **summary}


__all__ = ["FORMATS", "DEFAULT_EXPORT", "Format", "ImportItem", "ImportLabel", "ExportItem", "ExportRanking",
           "label_format", "readers", "writers", "import_file", "export_store", "store_items"]
