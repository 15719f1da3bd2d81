"""What a label format is, and what every format shares: the values an import hands the store
(ImportItem, ImportLabel), the values an export reads out of it (ExportItem, ExportRanking),
and the checks that turn a record of someone else's file into them with one-line errors.

A format is one file in this package defining `FORMAT`, an instance of `Format` below that
reads (`read`), writes (`write`) or both. Formats never touch the database themselves: an
import returns ImportItems and `LabelStore.import_items` stores all of them in one transaction;
an export gets ExportItems from `store_items`. See docs/label-formats.md for each format.

Locations. Every record is named in errors the way its file is read: `file.jsonl:12` (a line),
`records.json[3]` (an index into a JSON array, from 0), `folder[row 3]` (a `datasets` row,
from 0). An InputError built with that `where` as its path prints as
`error: records.json[3]: field 'fields.prompt': missing`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labeling_ui.accounts import NAME_RE
from labeling_ui.questions import question as question_type
from labeling_ui.tasks import SubmitError, check_ranks
from ranktune.errors import InputError
from ranktune.jsonl import SURROGATE_ESCAPE, _DuplicateKey, _no_duplicate_keys, require_messages

if TYPE_CHECKING:
    from labeling_ui.store import LabelStore


@dataclass
class ImportLabel:
    """One reviewer's answer to an imported item: ranks by answer position (dense, 1 = best)."""

    reviewer: str
    ranks: list[int]
    response: dict | None = None  # the question type's own answer (a strength, scores), when the file has it
    where: str | None = None


@dataclass
class ImportItem:
    """One prompt with its answers (by position, as the file lists them), to become an item of a round."""

    prompt: str | list
    answers: list[str]
    ended: list[bool]
    models: list[str]  # the model (policy) that wrote each answer
    labels: list[ImportLabel] = field(default_factory=list)
    where: str | None = None
    # Per answer, where it came from ({"imported_from": format, "record": id, "answer": id}), kept as the
    # candidate's `generation` so an export in the same format can give the ids back.
    generations: list[dict] | None = None
    # served before items of lower priority, like the items `generate --select` chose (labeling_ui/selection.py);
    # None: the file gave none (0, served in the store's order)
    priority: float | None = None


@dataclass
class ExportRanking:
    ranking_id: str
    reviewer: str
    ranks: list[int]  # by candidate position
    response: dict | None
    imported: bool  # came in through `import` (its submit token starts with import-)
    created_at: datetime | None = None


@dataclass
class ExportItem:
    item_id: int
    round: int
    question: str
    policy: str
    prompt: str | list
    prompt_text: str
    answers: list[str]
    ended: list[bool]
    models: list[str]
    sources: list[dict | None]  # each candidate's `generation` (an import's provenance, or sampling settings)
    rankings: list[ExportRanking] = field(default_factory=list)

    def source_id(self, fmt: str, key: str = "record") -> Any:
        """The id this item had in a file of format `fmt` it was imported from (None: it did not come from one)."""
        first = self.sources[0] if self.sources else None
        if isinstance(first, dict) and first.get("imported_from") == fmt:
            return first.get(key)
        return None

    def answer_ids(self, fmt: str, default: list[str]) -> list[str]:
        """The answers' ids in a file of format `fmt` they came from, else `default`."""
        ids = [s.get("answer") if isinstance(s, dict) and s.get("imported_from") == fmt else None
               for s in self.sources]
        if all(isinstance(i, str) and i for i in ids) and len(set(ids)) == len(ids):
            return ids
        return default


class Format:
    name: str = ""
    title: str = ""  # one line, for --help and the docs
    reads: bool = False
    writes: bool = False

    def read(self, path: Path, question: str) -> list[ImportItem]:
        """Every record of `path` as ImportItems for a round asking `question`; InputError on the first bad one."""
        raise NotImplementedError

    def write(self, items: list[ExportItem], out: Path) -> dict:
        """Write `items` into the (new, empty) folder `out`; a summary: files, records, rankings, left_out."""
        raise NotImplementedError


# ---- reading helpers ---------------------------------------------------------------------------

def merge_same(items: list[ImportItem]) -> list[ImportItem]:
    """Records of one prompt with the same answers are one item: their rankings are joined (a file with one
    line per ranking, like our own rankings.jsonl). The first record's models, ended flags and ids stay; the
    highest priority any of them gives is the item's."""
    from labeling_ui.tasks import prompt_key

    first: dict[tuple, ImportItem] = {}
    out = []
    for item in items:
        key = (prompt_key(item.prompt), tuple(item.answers))
        if key in first:
            first[key].labels.extend(item.labels)
            if item.priority is not None:
                kept = first[key].priority
                first[key].priority = item.priority if kept is None else max(kept, item.priority)
        else:
            first[key] = item
            out.append(item)
    return out


def provenance(fmt: str, record: Any, answers: list[Any]) -> list[dict]:
    return [{"imported_from": fmt, "record": record, "answer": a} for a in answers]


def load_json(path: Path, what: str) -> Any:
    """A whole JSON document, read as strictly as ranktune.jsonl reads a line (a key twice in one object
    and a lone surrogate escape are errors); one-line errors for a missing file, bad UTF-8 or bad JSON."""
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError(f"expected a JSON file ({what}), found a folder", path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError("not valid UTF-8 text", path, raw[:err.start].count(b"\n") + 1) from None
    if not text.strip():
        raise InputError(f"file is empty: expected {what}", path)
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err.msg} at column {err.colno})", path, err.lineno) from None
    except _DuplicateKey as err:
        raise InputError("appears twice in one object (which one is meant?)", path, field=str(err)) from None
    except RecursionError:
        raise InputError("not valid JSON (nested too deeply)", path) from None
    except ValueError as err:
        raise InputError(f"not valid JSON ({str(err).split(':')[0]})", path) from None
    if SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InputError("contains a lone UTF-16 surrogate escape (\\ud800-\\udfff): not text", path) from None
    return obj


def expect(obj: Any, key: str, kind: type | tuple, where: str, name: str | None = None, what: str = "",
           optional: bool = False) -> Any:
    """obj[key] if it is of `kind`; an InputError naming `where` and the field (`name`, default `key`) otherwise.
    A missing key or a null is "missing" (None comes back when `optional`)."""
    name = name or key
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        if optional:
            return None
        raise InputError("missing", where, field=name)
    kinds = _kinds(kind)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise InputError(f"expected {what or _kind_name(kind)}, got {_json_type(value)}", where, field=name)
    return value


def _kinds(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind) -> str:
    names = {str: "text", list: "a list", dict: "an object", int: "a whole number", bool: "true or false",
             float: "a number"}
    return " or ".join(names.get(k, k.__name__) for k in _kinds(kind))


def _json_type(value: Any) -> str:
    for kind, name in ((bool, "true/false"), (str, "text"), (int, "a number"), (float, "a number"),
                       (list, "a list"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else type(value).__name__


def check_prompt(value: Any, where: str, name: str = "prompt") -> str | list:
    """Text (not blank), or chat messages [{role: system|user|assistant, content}, ...]."""
    if value is None:
        raise InputError("missing", where, field=name)
    if isinstance(value, list):
        messages = require_messages({name: value}, name, where, None)
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    if not isinstance(value, str):
        raise InputError(f"expected text or chat messages, got {_json_type(value)}", where, field=name)
    if not value.strip():
        raise InputError("is empty", where, field=name)
    return value


def check_text(value: Any, where: str, name: str) -> str:
    if value is None:
        raise InputError("missing", where, field=name)
    if not isinstance(value, str):
        raise InputError(f"expected text, got {_json_type(value)}", where, field=name)
    return value


def check_reviewer(value: Any, where: str, name: str = "reviewer") -> str:
    """A reviewer name as the store takes it (accounts.NAME_RE)."""
    if value is None:
        raise InputError("missing", where, field=name)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"expected a reviewer name, got {_json_type(value)}", where, field=name)
    value = str(value)
    if not NAME_RE.match(value):
        raise InputError(f"{value!r} is not a reviewer name (1-64 letters, digits or _ . @ -, starting with a "
                         "letter or digit)", where, field=name)
    return value


def whole(value: Any, where: str, name: str, lo: int | None = None) -> int:
    """A whole number (2.0 passes, 2.5, true and "2" do not), at least `lo`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise InputError(f"expected a whole number, got {value!r}", where, field=name)
    if lo is not None and value < lo:
        raise InputError(f"must be at least {lo}, got {int(value)}", where, field=name)
    return int(value)


def dense(values: list[int]) -> list[int]:
    """Ranks (any whole numbers, lower = better, ties equal) as dense ranks 1..: [1, 1, 3] -> [1, 1, 2]."""
    order = {v: i + 1 for i, v in enumerate(sorted(set(values)))}
    return [order[v] for v in values]


def make_label(question: str, reviewer: str, ranks: Any, k: int, where: str, name: str = "ranks",
               strength: Any = None, scores: Any = None) -> ImportLabel:
    """One reviewer's answer, checked as the round's question type checks a reviewer's (labeling_ui/questions/).

    `ranks` by answer position (dense, 1 = best, ties share a rank). `scores` (a rating round: 1-7 per
    answer; the ranks follow from them) and `strength` (a pairwise round: 0-3) when the file has them.
    A pairwise answer without a strength, or a rating round's answer given as ranks, keeps only its
    ranks (response None): the export then has no strength or scores for it, only the ranking."""
    asked = question_type(question)
    try:
        if scores is not None:
            if question != "rating":
                raise InputError(f"only a rating round takes scores (this round asks {question})", where,
                                 field="scores")
            checked = asked.check({"scores": scores}, k)
            return ImportLabel(reviewer, checked.ranks, checked.response, where)
        if ranks is None:
            raise InputError("missing", where, field=name)
        if not isinstance(ranks, list) or any(isinstance(r, bool) or not isinstance(r, (int, float)) for r in ranks):
            raise InputError(f"expected a list of {k} whole numbers (1 = best)", where, field=name)
        ranks = check_ranks(ranks, k)
        if strength is None:
            return ImportLabel(reviewer, ranks, None, where)
        if question != "pairwise":
            raise InputError(f"only a pairwise round takes a strength (this round asks {question})", where,
                             field="strength")
        checked = asked.check({"ranks": ranks, "strength": strength}, k)
        return ImportLabel(reviewer, checked.ranks, checked.response, where)
    except SubmitError as err:
        field_name = "scores" if scores is not None else ("strength" if strength is not None else name)
        raise InputError(str(err), where, field=field_name) from None


# ---- the store, read out for an export ---------------------------------------------------------

def store_items(store: "LabelStore", round: int | None = None) -> list[ExportItem]:
    """Every item (gold items excepted: their answers check reviewers) of `round` (None: all rounds), oldest
    first, with its active rankings (not withdrawn, not skipped), oldest first."""
    from sqlalchemy import select

    from labeling_ui.schema import GoldItem, Item, Ranking, Reviewer

    with store.db.read() as s:
        query = select(Item).where(~Item.id.in_(select(GoldItem.item_id))).order_by(Item.id)
        if round is not None:
            query = query.where(Item.round == round)
        items = s.scalars(query).all()
        rows = s.execute(select(Ranking, Reviewer.name).join(Reviewer, Reviewer.id == Ranking.reviewer_id)
                         .where(Ranking.withdrawn_at.is_(None), Ranking.skipped.is_(False))
                         .order_by(Ranking.id)).all()
        by_item: dict[int, list[ExportRanking]] = {}
        for r, name in rows:
            by_item.setdefault(r.item_id, []).append(ExportRanking(
                r.uid, name, list(r.ranks), r.response, r.submit_token.startswith(store.IMPORT_TOKEN_PREFIX),
                r.created_at))
        return [ExportItem(i.id, i.round, i.question or "ranking", i.policy, i.prompt_row.prompt, i.prompt_row.text,
                           [c.text for c in i.candidates], [bool(c.ended) for c in i.candidates],
                           [c.policy for c in i.candidates], [c.generation for c in i.candidates],
                           by_item.get(i.id, []))
                for i in items]
