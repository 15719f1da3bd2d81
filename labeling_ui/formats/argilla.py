"""`argilla` (import and export): Argilla 2 records, as `rg.Dataset.to_disk` writes them (records.json in
the dataset folder) and `Record.to_dict` / `dataset.records.to_json` give them: a JSON list of

    {"id": "...", "status": "pending" | "completed",
     "fields": {"prompt": "text" | [{"role", "content"}, ...],   a TextField or a ChatField
                "answer-1": "text", "answer-2": "text", ...},    TextFields (also response-1, ...)
     "metadata": {"item_id": 3, "round": 1, "model-1": "name", "ended-1": true, ...},
     "responses": {"ranking": [{"value": <ranking>, "user_id": "<uuid>", "status": "submitted"}, ...]},
     "suggestions": {}, "vectors": {}, "_server_id": null}

(https://docs.argilla.io/latest/reference/argilla/records/records/ : Record.to_dict; the ranking's
value as https://docs.argilla.io/latest/how_to_guides/dataset/ defines a RankingQuestion, "1 =
best ... ties are allowed"). A ranking is read as either form Argilla gives it: the option names
best first (the SDK's `Record.to_dict`, no ties), or `[{"value": "answer-2", "rank": 1}, ...]`
(Argilla's API and its 1.x FeedbackDataset, ties share a rank). The export writes the second,
which keeps ties. Only `submitted` responses are imported (a response without a status counts as
submitted: older SDKs wrote none); drafts and discarded ones are left out.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from labeling_ui.formats.base import (ExportItem, Format, ImportItem, check_prompt, check_reviewer, check_text,
                                      dense, expect, load_json, make_label, provenance, whole)
from ranktune.errors import InputError
from ranktune.jsonl import write_json_atomic

QUESTION = "ranking"  # the RankingQuestion's name in what we write (and the one read first)
ANSWER_FIELD = re.compile(r"^(?:answer|response)[-_]?(\d+)$")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DEFAULT_MODEL = "argilla"
RECORDS = "records.json"


def user_id(reviewer: str) -> str:
    """The Argilla user id written for a reviewer: the name itself if it is one (an Argilla user imported
    here), else a UUID fixed by the name (uuid5), the same in every export."""
    return reviewer if UUID.match(reviewer) else str(uuid.uuid5(uuid.NAMESPACE_URL, f"ranktune:reviewer:{reviewer}"))


def _answer_fields(fields: dict, where: str) -> list[tuple[int, str]]:
    numbered = sorted((int(m.group(1)), name) for name in fields if (m := ANSWER_FIELD.match(name)))
    numbers = [n for n, _ in numbered]
    if len(set(numbers)) != len(numbers):
        raise InputError("two answer fields have the same number (answer-N and response-N?)", where, field="fields")
    if len(numbered) < 2:
        raise InputError("expected 2 or more answer fields: answer-1, answer-2, ... (or response-1, ...)", where,
                         field="fields")
    return numbered


def _ranking_question(responses: dict, where: str) -> str | None:
    if QUESTION in responses:
        return QUESTION
    lists = [q for q, rs in responses.items() if isinstance(rs, list) and rs
             and all(isinstance(r, dict) and isinstance(r.get("value"), list) for r in rs)]
    if len(lists) > 1:
        raise InputError(f"several questions answered with a list ({', '.join(lists)}): name the ranking question "
                         f"'{QUESTION}'", where, field="responses")
    return lists[0] if lists else None


def _ranks(value: Any, names: list[str], where: str, name: str) -> list[int]:
    """A ranking's value (names best first, or [{value, rank}]) as dense ranks by answer position."""
    if not isinstance(value, list) or not value:
        raise InputError("expected the answers' names best first, or [{value, rank}, ...]", where, field=name)
    given: dict[str, int] = {}
    for j, v in enumerate(value):
        if isinstance(v, str):
            option, rank = v, j + 1
        elif isinstance(v, dict):
            option = v.get("value")
            rank = whole(v.get("rank"), where, f"{name}[{j}].rank", lo=1)
        else:
            raise InputError("expected an answer's name or {value, rank}", where, field=f"{name}[{j}]")
        if option not in names:
            raise InputError(f"{option!r} is not an answer field of this record ({', '.join(names)})", where,
                             field=f"{name}[{j}]")
        if option in given:
            raise InputError(f"{option!r} is ranked twice", where, field=f"{name}[{j}]")
        given[option] = rank
    missing = [n for n in names if n not in given]
    if missing:
        raise InputError(f"not ranked: {', '.join(missing)}", where, field=name)
    return dense([given[n] for n in names])


def item_from(rec: Any, where: str, question: str) -> ImportItem:
    if not isinstance(rec, dict):
        raise InputError("expected a record object", where)
    fields = expect(rec, "fields", dict, where)
    prompt = check_prompt(fields.get("prompt"), where, "fields.prompt")
    numbered = _answer_fields(fields, where)
    names = [n for _, n in numbered]
    answers = [check_text(fields[n], where, f"fields.{n}") for n in names]
    metadata = expect(rec, "metadata", dict, where, optional=True) or {}
    models, ended = [], []
    for number, _ in numbered:
        model = metadata.get(f"model-{number}")
        if model is not None and not (isinstance(model, str) and model.strip()):
            raise InputError("expected a model name (text)", where, field=f"metadata.model-{number}")
        end = metadata.get(f"ended-{number}")
        if end is not None and not isinstance(end, bool):
            raise InputError("expected true or false", where, field=f"metadata.ended-{number}")
        models.append(model.strip() if model else DEFAULT_MODEL)
        ended.append(True if end is None else end)
    responses = expect(rec, "responses", dict, where, optional=True) or {}
    labels = []
    q = _ranking_question(responses, where)
    for j, r in enumerate(expect(responses, q, list, where, f"responses.{q}") if q else []):
        name = f"responses.{q}[{j}]"
        if not isinstance(r, dict):
            raise InputError("expected {value, user_id, status}", where, field=name)
        status = r.get("status")
        if status not in (None, "submitted", "draft", "discarded"):
            raise InputError(f"expected submitted, draft or discarded, got {status!r}", where, field=f"{name}.status")
        if status in ("draft", "discarded"):
            continue
        user = r.get("user_id")
        reviewer = check_reviewer(None if user == "None" else user, where, f"{name}.user_id")
        labels.append(make_label(question, reviewer, _ranks(r.get("value"), names, where, f"{name}.value"),
                                 len(names), where, f"{name}.value"))
    return ImportItem(prompt, answers, ended, models, labels, where, provenance("argilla", rec.get("id"), names))


def record_of(item: ExportItem) -> tuple[dict, int]:
    """One item as an Argilla record; and how many rankings it carries."""
    names = item.answer_ids("argilla", [f"answer-{i + 1}" for i in range(len(item.answers))])
    numbers = [int(m.group(1)) if (m := ANSWER_FIELD.match(n)) else i + 1 for i, n in enumerate(names)]
    metadata: dict = {"item_id": item.item_id, "round": item.round, "question": item.question,
                      "policy": item.policy}
    for number, model, end in zip(numbers, item.models, item.ended):
        metadata[f"model-{number}"] = model
        metadata[f"ended-{number}"] = end
    responses = [{"value": [{"value": names[i], "rank": r.ranks[i]}
                            for i in sorted(range(len(names)), key=lambda i: (r.ranks[i], i))],
                  "user_id": user_id(r.reviewer), "status": "submitted"} for r in item.rankings]
    source = item.source_id("argilla")
    return {"id": str(source) if source is not None else f"ranktune-item-{item.item_id}",
            "status": "completed" if responses else "pending",
            "fields": {"prompt": item.prompt, **dict(zip(names, item.answers))},
            "metadata": metadata, "suggestions": {}, "responses": {QUESTION: responses} if responses else {},
            "vectors": {}, "_server_id": None}, len(responses)


class Argilla(Format):
    name = "argilla"
    title = "Argilla 2 records (records.json of rg.Dataset.to_disk): fields + a RankingQuestion's responses"
    reads = writes = True

    def read(self, path: Path, question: str) -> list[ImportItem]:
        file = path / RECORDS if path.is_dir() else path
        data = load_json(file, "Argilla records (a JSON list)")
        if not isinstance(data, list):
            raise InputError("expected a JSON list of Argilla records", file)
        return [item_from(rec, f"{file}[{i}]", question) for i, rec in enumerate(data)]

    def write(self, items: list[ExportItem], out: Path) -> dict:
        records, rankings = [], 0
        for item in items:
            rec, n = record_of(item)
            records.append(rec)
            rankings += n
        write_json_atomic(out / RECORDS, records)
        return {"files": [RECORDS], "records": len(records), "rankings": rankings, "left_out": {}}


FORMAT = Argilla()
