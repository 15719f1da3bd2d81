"""Strict JSONL reading and atomic JSONL writing.

Every reader in the pipeline goes through `read_jsonl`, so every kind of bad file gets the same
kind of one-line error: the file, the line number and the field.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from ranktune.errors import InputError

Validator = Callable[[dict, Path, int], dict]
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # \ud800-\udfff: fine in pairs, unwritable alone


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(dup)
    return obj


class _DuplicateKey(ValueError):
    pass


def _parse_line(raw: str, path: Path, lineno: int) -> Any:
    """One line's JSON; every way it can fail is an InputError naming the file, line (and field)."""
    try:
        obj = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err.msg} at column {err.colno})", path, lineno) from None
    except _DuplicateKey as err:
        raise InputError("appears twice in one object (which one is meant?)", path, lineno, str(err)) from None
    except RecursionError:
        raise InputError("not valid JSON (nested too deeply)", path, lineno) from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise InputError(f"not valid JSON ({str(err).split(':')[0]})", path, lineno) from None
    if SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InputError("contains a lone UTF-16 surrogate escape (\\ud800-\\udfff): not text", path,
                             lineno) from None
    return obj


def read_jsonl(path: str | Path, validate: Validator | None = None, what: str = "records") -> list[dict]:
    """Read every line of a JSONL file as a JSON object, checking each with `validate`.

    Blank lines are allowed (editors leave them); anything else that is not a JSON object is an
    error. An empty file is an error too: a stage run on no data would silently do nothing.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("expected a JSONL file, found a folder", path)
    records: list[dict] = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                obj = _parse_line(raw, path, lineno)
                if not isinstance(obj, dict):
                    raise InputError(f"expected a JSON object, got {type(obj).__name__}", path, lineno)
                records.append(validate(obj, path, lineno) if validate else obj)
    except UnicodeDecodeError as err:
        # The line number is not known to the decoder; count the newlines before the bad byte.
        with open(path, "rb") as fb:
            lineno = fb.read(err.start).count(b"\n") + 1
        raise InputError("not valid UTF-8 text", path, lineno) from None
    if not records:
        raise InputError(f"file is empty: expected {what}, one JSON object per line", path)
    return records


def require_str(obj: dict, field: str, path: Path, lineno: int, allow_empty: bool = False) -> str:
    """The value of a required string field, or a one-line error naming file, line and field."""
    if field not in obj:
        raise InputError("missing", path, lineno, field)
    value = obj[field]
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", path, lineno, field)
    if not allow_empty and not value.strip():
        raise InputError("is empty", path, lineno, field)
    return value


def require_messages(obj: dict, field: str, path: Path, lineno: int) -> list[dict]:
    """A chat `messages` list: objects with a known `role` and a string `content`."""
    value = obj[field]
    if not isinstance(value, list) or not value:
        raise InputError("expected a non-empty list of {role, content} objects", path, lineno, field)
    for i, msg in enumerate(value):
        name = f"{field}[{i}]"
        if not isinstance(msg, dict):
            raise InputError(f"expected an object, got {type(msg).__name__}", path, lineno, name)
        if msg.get("role") not in ("system", "user", "assistant"):
            raise InputError("role must be one of system, user, assistant", path, lineno, name + ".role")
        if not isinstance(msg.get("content"), str):
            raise InputError("content must be a string", path, lineno, name + ".content")
    return value


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write records to `path` via a temporary file in the same folder, then rename.

    A crash mid-write leaves the old file (or none), never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write one JSON document atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
