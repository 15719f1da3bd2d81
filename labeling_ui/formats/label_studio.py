"""`label-studio` (import and export): Label Studio tasks, as its "JSON" export writes them
(https://labelstud.io/guide/task_format: a list of `{id, data, annotations: [{id, completed_by,
result: [...], was_cancelled, ...}], predictions}`), for two control tags:

- Ranker over a List (https://labelstud.io/tags/ranker, https://labelstud.io/tags/list):
  `data.items` = `[{"id", "title", "body"}, ...]`, the answers; a result
  `{"type": "ranker", "from_name": "rank", "to_name": "answers", "value": {"ranker": {...}}}` whose
  `ranker` maps the tag's name to the ids in their new order (no buckets: a strict order), or each
  Bucket's name to the ids dropped in it (buckets: each bucket one place, its items tied; buckets
  named `rank-1`, `rank-2`, ... in that order, other names in the order the result lists them;
  `_`, the items left in the list, is ignored and every answer must be in a bucket).
- Pairwise (https://labelstud.io/tags/pairwise): `data.answer1`, `data.answer2`; a result
  `{"type": "pairwise", "from_name": "comparison", "to_name": "comparison", "value": {"selected":
  "left" | "right"}}` (left = answer1 is better).

`data.prompt` is the prompt (text, or chat messages). The export writes ranking and rating items
as Ranker tasks with buckets `rank-1` ... (so ties survive), pairwise items as Pairwise tasks, each
kind with its labeling config (`ranker-config.xml`, `pairwise-config.xml`) beside its tasks
(`ranker-tasks.json`, `pairwise-tasks.json`). `data.ranktune` carries what Label Studio has no
place for (item id, round, models, ended, reviewer names), and is read back on import.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from labeling_ui.accounts import NAME_RE
from labeling_ui.formats.base import (ExportItem, Format, ImportItem, check_prompt, check_text, expect, load_json,
                                      make_label, provenance, whole)
from labeling_ui.tasks import answer_label
from ranktune.errors import InputError
from ranktune.jsonl import write_json_atomic

DEFAULT_MODEL = "label-studio"
RANK_BUCKET = re.compile(r"^rank[-_ ]?(\d+)$")
LS_USER = re.compile(r"^ls-user-(\d+)$")
RANKER_NAME, LIST_NAME, PAIRWISE_NAME = "rank", "answers", "comparison"
PAIR_KEYS = ("answer1", "answer2")


def _answers(data: dict, where: str) -> tuple[list[str], list[str], str]:
    """(texts, ids, kind) of a task's answers: a List's items (ranker) or answer1/answer2 (pairwise)."""
    if data.get("items") is not None:
        items = expect(data, "items", list, where, "data.items")
        texts, ids = [], []
        for i, it in enumerate(items):
            name = f"data.items[{i}]"
            if not isinstance(it, dict):
                raise InputError("expected {id, title, body}", where, field=name)
            ident = it.get("id")
            if isinstance(ident, bool) or not isinstance(ident, (str, int)) or str(ident) == "":
                raise InputError("missing (every List item needs an id)", where, field=f"{name}.id")
            text = it.get("body") if it.get("body") is not None else it.get("html")
            texts.append(check_text(text, where, f"{name}.body"))
            ids.append(str(ident))
        if len(set(ids)) != len(ids):
            raise InputError("two items have the same id", where, field="data.items")
        return texts, ids, "ranker"
    if data.get("answer1") is not None or data.get("answer2") is not None:
        return [check_text(data.get(k), where, f"data.{k}") for k in PAIR_KEYS], list(PAIR_KEYS), "pairwise"
    raise InputError("missing (data.items for a Ranker, or data.answer1 + data.answer2 for Pairwise)", where,
                     field="data.items")


def _reviewer(ann: dict, names: dict, where: str, name: str) -> str:
    who = ann.get("completed_by")
    ident, email = (who.get("id"), who.get("email")) if isinstance(who, dict) else (who, None)
    if ident is None and email is None:
        raise InputError("missing (who made the annotation)", where, field=f"{name}.completed_by")
    if ident is not None:
        ident = whole(ident, where, f"{name}.completed_by", lo=0)
        if str(ident) in names:
            return names[str(ident)]
    if isinstance(email, str) and NAME_RE.match(email):
        return email
    if ident is None:
        raise InputError(f"{email!r} is not a reviewer name", where, field=f"{name}.completed_by.email")
    return f"ls-user-{ident}"


def _ranker_ranks(value: Any, ids: list[str], where: str, name: str) -> list[int]:
    ranker = expect(value, "ranker", dict, where, f"{name}.value.ranker") if isinstance(value, dict) else None
    if ranker is None:
        raise InputError("missing", where, field=f"{name}.value")
    groups = [(key, ids_) for key, ids_ in ranker.items() if key != "_"]
    for key, group in groups:
        if not isinstance(group, list) or any(isinstance(g, bool) or not isinstance(g, (str, int)) for g in group):
            raise InputError("expected a list of item ids", where, field=f"{name}.value.ranker.{key}")
    if len(groups) == 1:  # the Ranker's own name: one strict order
        tiers = [[g] for g in groups[0][1]]
    else:  # buckets: one place each
        if groups and all(RANK_BUCKET.match(key) for key, _ in groups):
            groups.sort(key=lambda kg: int(RANK_BUCKET.match(kg[0]).group(1)))
        tiers = [group for _, group in groups if group]
    place: dict[str, int] = {}
    for rank, tier in enumerate(tiers, start=1):
        for g in tier:
            g = str(g)
            if g not in ids:
                raise InputError(f"{g!r} is not an item of this task ({', '.join(ids)})", where,
                                 field=f"{name}.value.ranker")
            if g in place:
                raise InputError(f"{g!r} is ranked twice", where, field=f"{name}.value.ranker")
            place[g] = rank
    missing = [i for i in ids if i not in place]
    if missing:
        raise InputError(f"not ranked (left in the list): {', '.join(missing)}", where, field=f"{name}.value.ranker")
    return [place[i] for i in ids]


def _pairwise_ranks(value: Any, ids: list[str], where: str, name: str) -> list[int]:
    if len(ids) != 2:
        raise InputError(f"a pairwise result needs a task with 2 answers, this one has {len(ids)}", where,
                         field=f"{name}.type")
    selected = value.get("selected") if isinstance(value, dict) else None
    if selected not in ("left", "right"):
        raise InputError(f"expected 'left' or 'right', got {selected!r}", where, field=f"{name}.value.selected")
    return [1, 2] if selected == "left" else [2, 1]


def item_from(task: Any, where: str, question: str) -> ImportItem:
    if not isinstance(task, dict):
        raise InputError("expected a task object", where)
    data = expect(task, "data", dict, where)
    prompt = check_prompt(data.get("prompt"), where, "data.prompt")
    texts, ids, _ = _answers(data, where)
    k = len(texts)
    extra = data.get("ranktune") if isinstance(data.get("ranktune"), dict) else {}
    models = extra.get("models") if isinstance(extra.get("models"), list) and len(extra["models"]) == k \
        and all(isinstance(m, str) and m.strip() for m in extra["models"]) else [DEFAULT_MODEL] * k
    ended = extra.get("ended") if isinstance(extra.get("ended"), list) and len(extra["ended"]) == k \
        and all(isinstance(e, bool) for e in extra["ended"]) else [True] * k
    names = {str(key): v for key, v in extra.get("reviewers", {}).items() if isinstance(v, str)} \
        if isinstance(extra.get("reviewers"), dict) else {}
    labels = []
    for j, ann in enumerate(expect(task, "annotations", list, where, optional=True) or []):
        name = f"annotations[{j}]"
        if not isinstance(ann, dict):
            raise InputError("expected an annotation object", where, field=name)
        if ann.get("was_cancelled"):
            continue
        results = expect(ann, "result", list, where, f"{name}.result")
        ours = [(r, res) for r, res in enumerate(results) if isinstance(res, dict)
                and res.get("type") in ("ranker", "pairwise")]
        if not ours:
            continue  # an annotation of other tags only: nothing to rank
        if len(ours) > 1:
            raise InputError("more than one ranker/pairwise result in one annotation", where, field=f"{name}.result")
        r, res = ours[0]
        rname = f"{name}.result[{r}]"
        reviewer = _reviewer(ann, names, where, name)
        if not NAME_RE.match(reviewer):
            raise InputError(f"{reviewer!r} is not a reviewer name", where, field=f"{name}.completed_by")
        ranks = (_ranker_ranks if res["type"] == "ranker" else _pairwise_ranks)(res.get("value"), ids, where, rname)
        labels.append(make_label(question, reviewer, ranks, k, where, f"{rname}.value"))
    return ImportItem(prompt, texts, list(ended), list(models), labels, where,
                      provenance("label-studio", task.get("id"), ids))


# ---- export ----------------------------------------------------------------------------------

def ranker_config(k: int) -> str:
    places = "\n".join(f'    <Bucket name="rank-{r}" title={quoteattr(_place(r))}/>' for r in range(1, k + 1))
    return f"""<View>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt_text"/>
  <Header value="Drag each answer to its place; answers in one place are equally good"/>
  <List name="{LIST_NAME}" value="$items" title="Answers"/>
  <Ranker name="{RANKER_NAME}" toName="{LIST_NAME}">
{places}
  </Ranker>
</View>
"""


PAIRWISE_CONFIG = f"""<View>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt_text"/>
  <Header value="Which answer is better?"/>
  <Text name="answer1" value="$answer1"/>
  <Text name="answer2" value="$answer2"/>
  <Pairwise name="{PAIRWISE_NAME}" toName="answer1,answer2"/>
</View>
"""


def _place(r: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(r % 10 if r % 100 not in (11, 12, 13) else 0, "th")
    return f"{r}{suffix}" + (" (best)" if r == 1 else "")


def _user_ids(items: list[ExportItem]) -> dict[str, int]:
    """Label Studio user ids (completed_by) for our reviewers: N for one imported as ls-user-N, else the
    next free number, in order of first appearance."""
    names = list(dict.fromkeys(r.reviewer for it in items for r in it.rankings))
    ids = {n: int(m.group(1)) for n in names if (m := LS_USER.match(n))}
    taken, nxt = set(ids.values()), 1
    for n in names:
        if n not in ids:
            while nxt in taken:
                nxt += 1
            ids[n], taken = nxt, taken | {nxt}
    return ids


def task_of(item: ExportItem, users: dict[str, int], kind: str) -> tuple[dict, int, int]:
    """One item as a Label Studio task; how many rankings it carries and how many it could not (a pairwise tie)."""
    data: dict = {"prompt": item.prompt, "prompt_text": item.prompt_text}
    if kind == "pairwise":
        data |= dict(zip(PAIR_KEYS, item.answers))
    else:
        ids = item.answer_ids("label-studio", [f"answer-{i + 1}" for i in range(len(item.answers))])
        data["items"] = [{"id": ids[i], "title": f"Answer {answer_label(i)}", "body": text}
                         for i, text in enumerate(item.answers)]
    annotations, written, lost = [], [], 0
    for n, r in enumerate(item.rankings, start=1):
        if kind == "pairwise":
            if r.ranks[0] == r.ranks[1]:
                lost += 1  # "about the same": Pairwise has no tie
                continue
            result = {"from_name": PAIRWISE_NAME, "to_name": PAIRWISE_NAME, "type": "pairwise",
                      "value": {"selected": "left" if r.ranks[0] < r.ranks[1] else "right"}}
        else:
            buckets = {f"rank-{p}": [ids[i] for i in range(len(ids)) if r.ranks[i] == p]
                       for p in range(1, max(r.ranks) + 1)}
            result = {"from_name": RANKER_NAME, "to_name": LIST_NAME, "type": "ranker", "origin": "manual",
                      "value": {"ranker": buckets}}
        annotations.append({"id": n, "completed_by": users[r.reviewer], "result": [{"id": r.ranking_id[:10], **result}],
                            "was_cancelled": False, "ground_truth": False,
                            "created_at": r.created_at.isoformat() + "Z" if r.created_at else None})
        written.append(r.reviewer)
    data["ranktune"] = {"item_id": item.item_id, "round": item.round, "question": item.question,
                        "policy": item.policy, "models": item.models, "ended": item.ended,
                        "reviewers": {str(users[name]): name for name in written}}
    return {"id": item.item_id, "data": data, "annotations": annotations, "predictions": []}, len(annotations), lost


class LabelStudio(Format):
    name = "label-studio"
    title = "Label Studio JSON tasks with Ranker (List) or Pairwise results"
    reads = writes = True

    def read(self, path: Path, question: str) -> list[ImportItem]:
        data = load_json(path, "Label Studio tasks (a JSON list)")
        if not isinstance(data, list):
            raise InputError("expected a JSON list of Label Studio tasks (export format \"JSON\")", path)
        return [item_from(task, f"{path}[{i}]", question) for i, task in enumerate(data)]

    def write(self, items: list[ExportItem], out: Path) -> dict:
        users = _user_ids(items)
        kinds = {"ranker": [], "pairwise": []}
        rankings = lost = 0
        for item in items:
            kind = "pairwise" if item.question == "pairwise" and len(item.answers) == 2 else "ranker"
            task, n, m = task_of(item, users, kind)
            kinds[kind].append(task)
            rankings, lost = rankings + n, lost + m
        files = []
        for kind, tasks in kinds.items():
            if not tasks:
                continue
            write_json_atomic(out / f"{kind}-tasks.json", tasks)
            k = max(len(t["data"].get("items", PAIR_KEYS)) for t in tasks)
            (out / f"{kind}-config.xml").write_text(ranker_config(k) if kind == "ranker" else PAIRWISE_CONFIG,
                                                    encoding="utf-8")
            files += [f"{kind}-tasks.json", f"{kind}-config.xml"]
        return {"files": files, "records": len(items), "rankings": rankings,
                "left_out": {"pairwise_ties": lost} if lost else {}}


FORMAT = LabelStudio()
