"""Labels that move between tools (labeling_ui/formats/): `import --format F` and `export --format F`.

The fixtures are written here, from each format's documented schema (cited above each one), not
downloaded: jsonl (our own schema, docs/label-formats.md), Argilla 2 records, Label Studio JSON
tasks (Ranker + Pairwise), Open-Assistant message trees.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from labeling_ui.cli import main
from labeling_ui.db import sqlite_url
from labeling_ui.store import LabelStore

# ---- fixtures ----------------------------------------------------------------------------------

# jsonl: docs/label-formats.md ("jsonl"); answers as text or {text, model, ended}; ranks 1 = best.
JSONL = [
    {"prompt": "Name a primary color.",
     "answers": [{"text": "Red.", "model": "pol-a"}, {"text": "Banana.", "model": "pol-b"},
                 {"text": "Blue.", "model": "pol-a", "ended": False}],
     "ranks": [1, 3, 2], "reviewer": "ann"},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
     "answers": ["4", "5"], "model": "pol-c", "ended": [True, False]},
    {"prompt": "Say hi.", "answers": ["Hi!", "Go away.", "Hello there."], "model": ["m1", "m2", "m3"],
     "rankings": [{"reviewer": "ann", "ranks": [1, 2, 1]}, {"reviewer": "ben", "ranks": [2, 3, 1]}]},
]

# Open-Assistant trees (*.trees.jsonl), as the OpenAssistant/oasst1 dataset card's "Data Structure"
# describes them: {message_tree_id, tree_state, prompt: message}; a message {message_id, parent_id,
# text, role: prompter|assistant, lang, rank (0 = best among siblings, null = unranked), deleted,
# synthetic, model_name, replies: [...]}.
def _msg(mid, role, text, rank=None, replies=(), **kw):
    return {"message_id": mid, "parent_id": None, "user_id": f"u-{mid}", "created_date": "2023-02-05T14:23:50+00:00",
            "text": text, "role": role, "lang": "en", "review_count": 3, "review_result": True, "deleted": False,
            "rank": rank, "synthetic": False, "model_name": None, "emojis": {}, "labels": {},
            "replies": list(replies), **kw}


OASST = [
    {"message_tree_id": "t1", "tree_state": "ready_for_export",
     "prompt": _msg("p1", "prompter", "What is rain?", replies=[
        _msg("a1", "assistant", "Water falling from clouds.", rank=1, replies=[
            _msg("p2", "prompter", "Why does it fall?", replies=[
                _msg("a4", "assistant", "Gravity pulls the drops down.", rank=0),
                _msg("a5", "assistant", "It just does.", rank=1)])]),
        _msg("a2", "assistant", "Rain is liquid water in drops that fall from clouds.", rank=0),
        _msg("a3", "assistant", "Cats and dogs.", rank=2),
        _msg("a6", "assistant", "An unranked reply.", rank=None),
        _msg("a7", "assistant", "A deleted reply.", rank=3, deleted=True),
    ])},
    {"message_tree_id": "t2", "tree_state": "ready_for_export",
     "prompt": _msg("p3", "prompter", "Tell a joke.", replies=[
        _msg("a8", "assistant", "Only one reply: no item.", rank=0)])},
]

# Argilla 2 records as Record.to_dict / rg.Dataset.to_disk's records.json write them
# (https://docs.argilla.io/latest/reference/argilla/records/records/): id, fields, metadata, suggestions,
# responses {question: [{value, user_id, status}]}, vectors, status, _server_id. A RankingQuestion's value:
# [{"value": option, "rank": n}] (ties share a rank; Argilla's API / FeedbackDataset docs) or the option
# names best first (the v2 SDK's to_dict).
U1, U2, U3 = ("0b6a0d6e-5a3b-4f9e-9a6f-3c1e2d4b5a61", "7c2f9e1a-1d2b-4c3d-8e4f-5a6b7c8d9e02",
              "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d")
ARGILLA = [
    {"id": "rec-1", "status": "completed", "_server_id": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
     "fields": {"prompt": "Write a haiku about snow.", "answer-1": "Soft white silence falls", "answer-2": "Snow.",
                "answer-3": "Flakes drift, the world hushed, / footprints fill by dawn"},
     "metadata": {"model-1": "pol-a", "model-2": "pol-b", "model-3": "pol-a"},
     "suggestions": {}, "vectors": {},
     "responses": {"ranking": [
         {"value": [{"value": "answer-3", "rank": 1}, {"value": "answer-1", "rank": 1},
                    {"value": "answer-2", "rank": 2}], "user_id": U1, "status": "submitted"},
         {"value": ["answer-1", "answer-3", "answer-2"], "user_id": U2, "status": "submitted"},
         {"value": ["answer-2", "answer-1", "answer-3"], "user_id": U3, "status": "draft"}]}},
    {"id": "rec-2", "status": "pending", "_server_id": None,
     "fields": {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                           {"role": "user", "content": "How are you?"}],
                "answer-1": "Fine, thanks.", "answer-2": "I am a language model."},
     "metadata": {}, "suggestions": {}, "vectors": {}, "responses": {}},
]

# Label Studio "JSON" export (https://labelstud.io/guide/task_format): {id, data, annotations: [{id,
# completed_by, result, was_cancelled, ...}], predictions}. Ranker over a List (https://labelstud.io/tags/ranker:
# value.ranker = {ranker name: ids in order} or {bucket: ids}); data.items as the List tag takes them
# (https://labelstud.io/tags/list: id, title, body).
LS_RANKER = [
    {"id": 11, "data": {"prompt": "Best pet?",
                        "items": [{"id": "cat", "title": "A", "body": "A cat."},
                                  {"id": "dog", "title": "B", "body": "A dog."},
                                  {"id": "rock", "title": "C", "body": "A rock."}]},
     "annotations": [
         {"id": 101, "completed_by": 7, "was_cancelled": False, "ground_truth": False, "lead_time": 12.5,
          "result": [{"id": "r1", "from_name": "rank", "to_name": "answers", "type": "ranker", "origin": "manual",
                      "value": {"ranker": {"rank-1": ["cat", "dog"], "rank-2": ["rock"]}}}]},
         {"id": 102, "completed_by": 9, "was_cancelled": False,
          "result": [{"id": "r2", "from_name": "rank", "to_name": "answers", "type": "ranker",
                      "value": {"ranker": {"rank-1": ["dog"], "rank-2": ["cat"], "rank-3": ["rock"]}}}]},
         {"id": 103, "completed_by": 8, "was_cancelled": True, "result": []}],
     "predictions": []},
    {"id": 12, "data": {"prompt": "Capital of France?",
                        "items": [{"id": "x", "title": "A", "body": "Paris."},
                                  {"id": "y", "title": "B", "body": "Lyon."}]},
     "annotations": [{"id": 104, "completed_by": 7, "was_cancelled": False,
                      "result": [{"id": "r3", "from_name": "rank", "to_name": "answers", "type": "ranker",
                                  "value": {"ranker": {"rank": ["x", "y"]}}}]}],  # no buckets: one strict order
     "predictions": []},
]

# Pairwise (https://labelstud.io/tags/pairwise): <Pairwise toName="answer1,answer2">,
# result value {"selected": "left" | "right"}.
LS_PAIRWISE = [
    {"id": 21, "data": {"prompt": "Explain tides briefly.", "answer1": "The moon's gravity pulls the oceans.",
                        "answer2": "Wind."},
     "annotations": [{"id": 201, "completed_by": 7, "was_cancelled": False,
                      "result": [{"id": "p1", "from_name": "comparison", "to_name": "comparison", "type": "pairwise",
                                  "value": {"selected": "left"}}]},
                     {"id": 202, "completed_by": 9, "was_cancelled": False,
                      "result": [{"id": "p2", "from_name": "comparison", "to_name": "comparison", "type": "pairwise",
                                  "value": {"selected": "right"}}]}],
     "predictions": []},
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def run(tmp_path):
    """CLI arguments for one run folder, and a way to open its store."""
    common = ["--runs_dir", str(tmp_path / "runs"), "--run", "r"]

    def store() -> LabelStore:
        return LabelStore(sqlite_url(tmp_path / "runs" / "r" / "labels.db"))

    return common, store, tmp_path / "runs" / "r"


def state(store: LabelStore) -> dict:
    """Everything an import could add to."""
    from sqlalchemy import func, select

    from labeling_ui.schema import Assignment, AuditEntry, Candidate, Item, Prompt, Ranking, Reviewer

    with store.db.read() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                for m in (Prompt, Item, Candidate, Reviewer, Assignment, Ranking, AuditEntry)}


def ranks_by_answer(ranking_rows: list[dict]) -> dict:
    """{(prompt as JSON, reviewer): {answer text: rank}} of rankings.jsonl rows."""
    return {(json.dumps(r["prompt"]), r["reviewer"]): dict(zip(r["answers"], r["ranks"])) for r in ranking_rows}


# ---- jsonl -------------------------------------------------------------------------------------

def test_jsonl_import_then_the_default_export_gives_the_rankings(run, tmp_path, capsys):
    common, store, folder = run
    stats = main(["import", "--format", "jsonl", "--file", str(write_jsonl(tmp_path / "in.jsonl", JSONL)), *common])
    assert (stats["items"], stats["answers"], stats["rankings"], stats["round"]) == (3, 8, 3, 1)
    assert sorted(stats["reviewers_added"]) == ["ann", "ben"]
    s = store()
    from sqlalchemy import select

    from labeling_ui.schema import Candidate, Ranking

    with s.db.read() as db:
        cands = db.scalars(select(Candidate).order_by(Candidate.id)).all()
        tokens = db.scalars(select(Ranking.submit_token)).all()
        per_item = {(c.item_id, c.position): (c.policy, c.ended) for c in cands}
    assert [per_item[(1, i)] for i in range(3)] == [("pol-a", True), ("pol-b", True), ("pol-a", False)]
    assert [per_item[(2, i)] for i in range(2)] == [("pol-c", True), ("pol-c", False)]
    assert len(tokens) == 3 and all(t.startswith("import-jsonl-") for t in tokens)  # told apart by their token
    assert [(r.name, r.is_admin) for r in s.accounts.all()] == [("ann", False), ("ben", False)]
    assert s.rounds() == [(1, "m1+m2+m3", 1), (1, "pol-a+pol-b", 1), (1, "pol-c", 1)]

    summary = main(["export", *common])
    rows = read_lines(folder / "export" / "rankings.jsonl")
    assert summary["rankings"] == 3 and len(rows) == 3
    assert ranks_by_answer(rows) == {
        (json.dumps("Name a primary color."), "ann"): {"Red.": 1, "Banana.": 3, "Blue.": 2},
        (json.dumps("Say hi."), "ann"): {"Hi!": 1, "Go away.": 2, "Hello there.": 1},
        (json.dumps("Say hi."), "ben"): {"Hi!": 2, "Go away.": 3, "Hello there.": 1},
    }
    first = next(r for r in rows if r["prompt"] == "Name a primary color.")
    assert first["policy"] == "pol-a+pol-b" and first["ended"] == [True, True, False] and first["round"] == 1
    assert first["question"] == "ranking"
    # Imported items are served to reviewers like generated ones (an imported ranking fills one of overlap's slots).
    s.accounts.add("cara", "correct horse")
    served = []
    while (task := s.next_task("cara")) is not None:
        served.append(task.prompt)
        s.skip("cara", task.assignment_id, token=f"skip-{len(served):04d}")
    assert served == [JSONL[0]["prompt"], JSONL[1]["prompt"]]  # "Say hi." has its two rankings already
    capsys.readouterr()


def test_jsonl_from_a_datasets_folder_into_a_pairwise_round_with_strengths(run, tmp_path, capsys):
    import datasets

    common, store, folder = run
    rows = [{"prompt": "Pick one.", "answers": [{"text": "Yes.", "model": "a"}, {"text": "No.", "model": "b"}],
             "ranks": [2, 1], "reviewer": "ann", "strength": 2},
            {"prompt": "Another?", "answers": [{"text": "Sure.", "model": "a"}, {"text": "Nope.", "model": None}],
             "ranks": None, "reviewer": None, "strength": None}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    stats = main(["import", "--format", "jsonl", "--file", str(tmp_path / "ds"), "--question", "pairwise",
                  "--round", "3", *common])
    assert (stats["items"], stats["rankings"], stats["round"], stats["question"]) == (2, 1, 3, "pairwise")
    main(["export", *common])
    [row] = read_lines(folder / "export" / "rankings.jsonl")
    assert (row["ranks"], row["strength"], row["question"], row["round"]) == ([2, 1], 2, "pairwise", 3)
    # The round keeps its question type: importing ranking items into it is refused.
    with pytest.raises(SystemExit):
        main(["import", "--format", "jsonl", "--file", str(write_jsonl(tmp_path / "r.jsonl", JSONL[:1])),
              "--question", "ranking", "--round", "3", *common])
    assert "round 3 asks the pairwise question" in capsys.readouterr().err


def test_a_dry_run_writes_nothing_and_a_rerun_leaves_known_prompts_out(run, tmp_path, capsys):
    common, store, _ = run
    path = write_jsonl(tmp_path / "in.jsonl", JSONL)
    main(["import", "--format", "jsonl", "--file", str(path), "--round", "1", *common])
    before = state(store())
    stats = main(["import", "--format", "jsonl", "--file", str(path), "--round", "2", "--dry_run", "true", *common])
    assert stats["dry_run"] and stats["items"] == 3 and state(store()) == before
    again = main(["import", "--format", "jsonl", "--file", str(path), "--round", "1", *common])
    assert (again["items"], again["rankings"], again["already_in_round"]) == (0, 0, 3)
    prefixed = main(["import", "--format", "jsonl", "--file", str(path), "--round", "2", "--reviewer_prefix", "ext-",
                     *common])
    assert sorted(prefixed["reviewers_added"]) == ["ext-ann", "ext-ben"]
    capsys.readouterr()


def test_our_own_rankings_jsonl_imports_back_with_a_line_per_ranking(run, tmp_path, capsys):
    common, _, folder = run
    main(["import", "--format", "jsonl", "--file", str(write_jsonl(tmp_path / "in.jsonl", JSONL)), *common])
    main(["export", *common])
    rows = read_lines(folder / "export" / "rankings.jsonl")
    other = ["--runs_dir", str(tmp_path / "other"), "--run", "r"]
    stats = main(["import", "--format", "jsonl", "--file", str(folder / "export" / "rankings.jsonl"), *other])
    assert (stats["items"], stats["rankings"]) == (2, 3)  # "Say hi." on two lines: one item, both rankings
    main(["export", *other])
    again = read_lines(tmp_path / "other" / "r" / "export" / "rankings.jsonl")
    assert ranks_by_answer(again) == ranks_by_answer(rows)
    assert {r["policy"] for r in again} == {r["policy"] for r in rows}
    capsys.readouterr()


# ---- oasst -------------------------------------------------------------------------------------

def test_oasst_trees_become_items_with_a_consensus_ranking(run, tmp_path, capsys):
    common, store, folder = run
    stats = main(["import", "--format", "oasst", "--file", str(write_jsonl(tmp_path / "x.trees.jsonl", OASST)),
                  *common])
    assert (stats["items"], stats["answers"], stats["rankings"]) == (2, 5, 2)
    assert stats["reviewers_added"] == ["oasst-consensus"]
    main(["export", *common])
    rows = read_lines(folder / "export" / "rankings.jsonl")
    user, assistant = "user", "assistant"
    first_turn = [{"role": user, "content": "What is rain?"}]
    follow_up = first_turn + [{"role": assistant, "content": "Water falling from clouds."},
                              {"role": user, "content": "Why does it fall?"}]
    assert ranks_by_answer(rows) == {
        (json.dumps(first_turn), "oasst-consensus"): {  # rank 0 = best; unranked and deleted replies left out
            "Water falling from clouds.": 2, "Rain is liquid water in drops that fall from clouds.": 1,
            "Cats and dogs.": 3},
        (json.dumps(follow_up), "oasst-consensus"): {"Gravity pulls the drops down.": 1, "It just does.": 2},
    }
    assert all(r["policy"] == "oasst" and all(r["ended"]) for r in rows)
    capsys.readouterr()


# ---- argilla -----------------------------------------------------------------------------------

def _argilla_ranks(response: dict) -> dict:
    value = response["value"]
    if value and isinstance(value[0], str):
        return {name: i + 1 for i, name in enumerate(value)}
    return {v["value"]: v["rank"] for v in value}


def test_argilla_round_trips(run, tmp_path, capsys):
    common, store, folder = run
    src = write_json(tmp_path / "records.json", ARGILLA)
    stats = main(["import", "--format", "argilla", "--file", str(src), *common])
    assert (stats["items"], stats["rankings"]) == (2, 2)  # the draft response is not imported
    summary = main(["export", "--format", "argilla", *common])
    assert summary["rankings"] == 2 and summary["files"] == ["records.json"]
    out = json.loads((folder / "export-argilla" / "records.json").read_text())
    assert [r["id"] for r in out] == ["rec-1", "rec-2"]
    for got, want in zip(out, ARGILLA):
        assert got["fields"] == want["fields"]
        assert set(got) >= {"id", "fields", "metadata", "suggestions", "responses", "vectors", "status"}
        assert {k: got["metadata"][k] for k in want["metadata"]} == want["metadata"]
        assert got["metadata"]["round"] == 1 and isinstance(got["metadata"]["item_id"], int)
        wanted = [r for r in want["responses"].get("ranking", []) if r["status"] == "submitted"]
        assert [(r["user_id"], _argilla_ranks(r), r["status"]) for r in got["responses"].get("ranking", [])] == \
               [(r["user_id"], _argilla_ranks(r), r["status"]) for r in wanted]
        assert got["status"] == want["status"]
    # Imported again, the export gives the same records back: it reads what it writes.
    again = tmp_path / "again"
    main(["import", "--format", "argilla", "--file", str(folder / "export-argilla"), "--runs_dir", str(again),
          "--run", "r"])
    main(["export", "--format", "argilla", "--runs_dir", str(again), "--run", "r"])
    twice = json.loads((again / "r" / "export-argilla" / "records.json").read_text())
    assert [(r["id"], r["fields"], r["responses"]) for r in twice] == \
           [(r["id"], r["fields"], r["responses"]) for r in out]
    capsys.readouterr()


def test_our_rankings_export_to_argilla_with_ties_and_stable_user_ids(tmp_path):
    from labeling_ui.formats import export_store
    from labeling_ui.formats.argilla import user_id

    s = LabelStore(sqlite_url(tmp_path / "labels.db"), shuffle=False)
    s.add_item("Name a color.", ["Red.", "Blue.", "Banana."], [True, True, False], "pol-a", 1)
    s.accounts.add("ann", "correct horse")
    task = s.next_task("ann")
    s.submit("ann", task.assignment_id, [1, 1, 2], token="tok-ann-1")
    export_store(s, "argilla", tmp_path / "out")
    [rec] = json.loads((tmp_path / "out" / "records.json").read_text())
    [resp] = rec["responses"]["ranking"]
    assert resp["user_id"] == user_id("ann") == user_id("ann") and resp["status"] == "submitted"
    assert resp["value"] == [{"value": "answer-1", "rank": 1}, {"value": "answer-2", "rank": 1},
                             {"value": "answer-3", "rank": 2}]
    assert rec["metadata"]["ended-3"] is False and rec["metadata"]["model-1"] == "pol-a"


# ---- label studio ------------------------------------------------------------------------------

def _ls_ranks(result: dict, ids: list[str]) -> list[int]:
    ranker = result["value"]["ranker"]
    if len(ranker) == 1 and not next(iter(ranker)).startswith("rank-"):
        order = next(iter(ranker.values()))
        return [order.index(i) + 1 for i in ids]
    return [next(int(k.split("-")[1]) for k, v in ranker.items() if i in v) for i in ids]


def test_label_studio_round_trips_ranker_and_pairwise_tasks(run, tmp_path, capsys):
    common, store, folder = run
    main(["import", "--format", "label-studio", "--file", str(write_json(tmp_path / "ranker.json", LS_RANKER)),
          *common])
    main(["import", "--format", "label-studio", "--file", str(write_json(tmp_path / "pair.json", LS_PAIRWISE)),
          "--question", "pairwise", *common])
    summary = main(["export", "--format", "label-studio", *common])
    assert summary["files"] == ["ranker-tasks.json", "ranker-config.xml", "pairwise-tasks.json", "pairwise-config.xml"]
    out = folder / "export-label-studio"
    ranker = json.loads((out / "ranker-tasks.json").read_text())
    pairwise = json.loads((out / "pairwise-tasks.json").read_text())
    for got, want in zip(ranker, LS_RANKER, strict=True):
        assert got["data"]["prompt"] == want["data"]["prompt"]
        assert [(i["id"], i["body"]) for i in got["data"]["items"]] == \
               [(i["id"], i["body"]) for i in want["data"]["items"]]
        ids = [i["id"] for i in want["data"]["items"]]
        kept = [a for a in want["annotations"] if not a["was_cancelled"]]
        assert [(a["completed_by"], _ls_ranks(a["result"][0], ids)) for a in got["annotations"]] == \
               [(a["completed_by"], _ls_ranks(a["result"][0], ids)) for a in kept]
        assert all(a["result"][0]["type"] == "ranker" and a["result"][0]["to_name"] == "answers"
                   for a in got["annotations"])
    # Bucket results come back exactly as they went in.
    assert ranker[0]["annotations"][0]["result"][0]["value"] == LS_RANKER[0]["annotations"][0]["result"][0]["value"]
    [got], [want] = pairwise, LS_PAIRWISE
    assert {k: got["data"][k] for k in ("prompt", "answer1", "answer2")} == \
           {k: want["data"][k] for k in ("prompt", "answer1", "answer2")}
    assert [(a["completed_by"], a["result"][0]["type"], a["result"][0]["value"]) for a in got["annotations"]] == \
           [(a["completed_by"], a["result"][0]["type"], a["result"][0]["value"]) for a in want["annotations"]]
    config = (out / "ranker-config.xml").read_text()
    assert '<Ranker name="rank" toName="answers">' in config and 'name="rank-3"' in config
    assert '<Pairwise name="comparison" toName="answer1,answer2"/>' in (out / "pairwise-config.xml").read_text()
    # Reviewers are ls-user-<id>; read back, our export's data.ranktune names them again.
    assert sorted(r.name for r in store().accounts.all()) == ["ls-user-7", "ls-user-9"]
    again = tmp_path / "again"
    main(["import", "--format", "label-studio", "--file", str(out / "ranker-tasks.json"), "--runs_dir", str(again),
          "--run", "r"])
    main(["export", "--format", "label-studio", "--runs_dir", str(again), "--run", "r"])
    twice = json.loads((again / "r" / "export-label-studio" / "ranker-tasks.json").read_text())
    assert [(t["data"]["items"], [a["result"][0]["value"] for a in t["annotations"]]) for t in twice] == \
           [(t["data"]["items"], [a["result"][0]["value"] for a in t["annotations"]]) for t in ranker]
    capsys.readouterr()


def test_our_reviewers_get_label_studio_ids_and_a_pairwise_tie_is_left_out(tmp_path):
    from labeling_ui.formats import export_store

    s = LabelStore(sqlite_url(tmp_path / "labels.db"), shuffle=False)
    s.add_item("Which?", ["A.", "B."], [True, True], "pol", 1, question="pairwise")
    for name, reply in (("ann", {"ranks": [1, 2], "strength": 3}), ("ben", {"ranks": [1, 1], "strength": 0})):
        s.accounts.add(name, "correct horse")
        s.submit(name, s.next_task(name).assignment_id, reply=reply, token=f"tok-{name}-1")
    summary = export_store(s, "label-studio", tmp_path / "out")
    assert summary["left_out"] == {"pairwise_ties": 1} and summary["rankings"] == 1
    [task] = json.loads((tmp_path / "out" / "pairwise-tasks.json").read_text())
    [ann] = task["annotations"]
    assert ann["result"][0]["value"] == {"selected": "left"}
    assert task["data"]["ranktune"]["reviewers"] == {str(ann["completed_by"]): "ann"}


# ---- bad input: one line naming file, record and field; the store unchanged ---------------------

def _bad(rows, where):
    rows = copy.deepcopy(rows)
    where(rows)
    return rows


def _set(path, value):
    """A mutator: rows[path[0]][path[1]]... = value (value None: delete the key)."""
    def apply(rows):
        obj = rows
        for key in path[:-1]:
            obj = obj[key]
        if value is None:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
    return apply


BAD = [
    # (format, writer, rows, mutate, expected location, expected field)
    ("jsonl", "jsonl", JSONL, _set([2, "answers"], None), ":3", "field 'answers': missing"),
    ("jsonl", "jsonl", JSONL, _set([0, "ranks"], "1,3,2"), ":1", "field 'ranks': expected a list"),
    ("jsonl", "jsonl", JSONL, _set([0, "ranks"], [1, 3, 3]), ":1", "field 'ranks'"),
    ("jsonl", "jsonl", JSONL, _set([1, "prompt"], 42), ":2", "field 'prompt': expected text or chat messages"),
    # a reviewer twice on one item is found inside the transaction, after two items went in: all rolled back
    ("jsonl", "jsonl", JSONL, _set([2, "rankings", 1, "reviewer"], "ann"), ":3", "field 'reviewer'"),
    ("oasst", "jsonl", OASST, _set([0, "prompt", "replies", 1, "rank"], "first"), ":1",
     "field 'prompt.replies[1].rank': expected a whole number"),
    ("oasst", "jsonl", OASST, _set([0, "prompt", "text"], None), ":1", "field 'prompt.text': missing"),
    ("oasst", "jsonl", OASST, _set([0, "prompt", "replies", 2, "rank"], -1), ":1", "field 'prompt.replies[2].rank'"),
    ("argilla", "json", ARGILLA, _set([1, "fields", "prompt"], None), "[1]", "field 'fields.prompt': missing"),
    ("argilla", "json", ARGILLA, _set([0, "responses", "ranking", 0, "value", 0, "rank"], 0), "[0]",
     "field 'responses.ranking[0].value[0].rank': must be at least 1"),
    ("argilla", "json", ARGILLA, _set([0, "fields", "answer-2"], ["not", "text"]), "[0]",
     "field 'fields.answer-2': expected text"),
    ("argilla", "json", ARGILLA, _set([0, "responses", "ranking", 1, "value"], ["answer-1", "answer-1", "answer-2"]),
     "[0]", "is ranked twice"),
    ("label-studio", "json", LS_RANKER, _set([1, "data"], None), "[1]", "field 'data': missing"),
    ("label-studio", "json", LS_RANKER, _set([0, "annotations", 0, "result", 0, "value", "ranker", "rank-2"], []),
     "[0]", "field 'annotations[0].result[0].value.ranker': not ranked"),
    ("label-studio", "json", LS_PAIRWISE, _set([0, "annotations", 1, "result", 0, "value", "selected"], "middle"),
     "[0]", "field 'annotations[1].result[0].value.selected'"),
    ("label-studio", "json", LS_RANKER, _set([0, "annotations", 1, "result", 0, "value", "ranker"], "dog,cat"),
     "[0]", "field 'annotations[1].result[0].value.ranker': expected an object"),
]


@pytest.mark.parametrize("fmt, writer, rows, mutate, where, field", BAD,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_one_line_naming_file_record_and_field_and_changes_nothing(
        run, tmp_path, capsys, fmt, writer, rows, mutate, where, field):
    common, store, _ = run
    main(["import", "--format", "jsonl", "--file", str(write_jsonl(tmp_path / "seed.jsonl", JSONL[:1])), *common])
    before = state(store())
    bad = _bad(rows, mutate)
    path = (write_jsonl if writer == "jsonl" else write_json)(tmp_path / f"bad.{writer}", bad)
    capsys.readouterr()
    question = ["--question", "pairwise"] if rows is LS_PAIRWISE else []
    with pytest.raises(SystemExit) as exit_info:
        main(["import", "--format", fmt, "--file", str(path), "--round", "2", *question, *common])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}{where}: ") and field in err[0], err
    assert state(store()) == before


@pytest.mark.parametrize("args, message", [
    (["import", "--file", "x.jsonl"], "field 'format': give --format"),
    (["import", "--format", "csv", "--file", "x"], "no import format 'csv'"),
    (["import", "--format", "jsonl"], "field 'file'"),
    (["import", "--format", "jsonl", "--file", "missing.jsonl"], "missing.jsonl: file not found"),
    (["export", "--format", "oasst"], "no export format 'oasst'"),
    (["import", "--format", "jsonl", "--file", "x.jsonl", "--question", "essay"], "unknown question type 'essay'"),
])
def test_bad_settings_are_one_line(run, tmp_path, capsys, monkeypatch, args, message):
    common, _, _ = run
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "x.jsonl", JSONL)
    main(["import", "--format", "jsonl", "--file", "x.jsonl", *common])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*args, *common])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_bad_json_file_names_its_line(run, tmp_path, capsys):
    common, _, _ = run
    path = tmp_path / "records.json"
    path.write_text('[\n  {"fields": {"prompt": "x"}},\n  {"fields": }\n]\n')
    with pytest.raises(SystemExit):
        main(["import", "--format", "argilla", "--file", str(path), *common])
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}:3: not valid JSON")
