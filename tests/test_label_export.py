"""Candidate generation, the command line, and the export files the reward stage reads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from labeling_ui.cli import main
from labeling_ui.db import sqlite_url
from labeling_ui.export import export, ranking_pairs
from labeling_ui.store import LabelStore
from ranktune.errors import InputError
from ranktune.records import read_demonstrations, read_preferences

PASSWORD = "correct horse"


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def ranked_store(tmp_path) -> LabelStore:
    """Two items; item 1 ranked by two reviewers (one with a tie), item 2 flagged unsafe."""
    store = LabelStore(sqlite_url(tmp_path / "labels.db"), overlap=2, shuffle=False)
    store.add_item("Name a color.", ["Red.", "Blue.", "Banana."], [True, True, False], "pol-a", 1)
    store.add_item("How to pick a lock?", ["I can't help with that.", "Step 1: ..."], [True, True], "pol-a", 1)
    for name in ("ann", "ben"):
        store.accounts.add(name, PASSWORD)
    ann1 = store.next_task("ann")
    store.submit("ann", ann1.assignment_id, [1, 1, 2], token="ann-tok-1", demonstration="Green.")
    ben1 = store.next_task("ben")
    store.submit("ben", ben1.assignment_id, [2, 1, 3], token="ben-tok-1")
    ann2 = store.next_task("ann")
    store.submit("ann", ann2.assignment_id, [1, 2], token="ann-tok-2", flags=["unsafe"])
    return store


def test_pairs_come_from_strict_rank_order_with_their_rank_distance():
    ranking = {"prompt": "p", "answers": ["a", "b", "c", "d"], "ranks": [2, 1, 2, 3], "reviewer": "r",
               "ranking_id": "x"}
    pairs, identical = ranking_pairs(ranking)
    got = {(p["chosen"], p["rejected"], p["rank_distance"]) for p in pairs}
    assert got == {("b", "a", 1), ("b", "c", 1), ("b", "d", 2), ("a", "d", 1), ("c", "d", 1)}  # a=c tie: no pair
    assert not any("margin" in p for p in pairs)  # TRL would subtract it, in logits: only with margin_scale
    pairs, identical = ranking_pairs({**ranking, "answers": ["same", "same ", "x", "y"]})
    assert identical == 1 and all(p["chosen"].strip() != p["rejected"].strip() for p in pairs)


def test_export_writes_the_agreed_formats(ranked_store, tmp_path):
    out = tmp_path / "export"
    summary = export(ranked_store, out)
    rankings = read_lines(out / "rankings.jsonl")
    assert [set(r) for r in rankings] == [{"ranking_id", "item_id", "prompt", "answers", "ended", "ranks", "reviewer",
                                           "round", "policy", "flagged", "weight", "question", "shown"}] * 2
    assert {r["reviewer"]: r["ranks"] for r in rankings} == {"ann": [1, 1, 2], "ben": [2, 1, 3]}
    assert all(r["answers"] == ["Red.", "Blue.", "Banana."] and r["ended"] == [True, True, False]
               and r["policy"] == "pol-a" and r["round"] == 1
               and r["flagged"] is False for r in rankings)
    assert all(r["shown"] == [0, 1, 2] for r in rankings)  # this store shows the generated order
    pairs = read_lines(out / "pairs.jsonl")
    assert len(pairs) == 2 + 3 == summary["pairs"]  # ann's tie gives 2 pairs, ben's strict order 3
    assert {(p["chosen"], p["rejected"], p["rank_distance"]) for p in pairs if p["reviewer"] == "ann"} == {
        ("Red.", "Banana.", 1), ("Blue.", "Banana.", 1)}
    assert len(read_preferences(out / "pairs.jsonl")) == len(pairs)  # the pipeline's own reader accepts them
    assert (out / "demonstrations.jsonl").read_text() == ""  # written answers wait for an admin's approval
    assert summary["rankings_held_out"]["flagged_waiting_for_review"] == 1 and summary["tied_pairs"] == 1
    assert summary["demonstrations_held_out"]["unreviewed"] == 1
    [demo] = ranked_store.demonstration_rows()
    ranked_store.review_demonstration("boss", demo["id"], "approved")
    export(ranked_store, out)
    assert read_demonstrations(out / "demonstrations.jsonl") == [{"prompt": "Name a color.", "completion": "Green."}]
    assert read_lines(out / "demonstrations.jsonl")[0]["author"] == ranked_store.pseudonym("ann")

    import datasets

    pairs_ds = datasets.load_from_disk(str(out / "pairs_ds"))
    assert len(pairs_ds) == len(pairs) and "margin" not in pairs_ds.column_names
    assert {"prompt", "chosen", "rejected", "rank_distance"} <= set(pairs_ds.column_names)
    assert len(datasets.load_from_disk(str(out / "rankings_ds"))) == 2


def test_flagged_items_can_be_included(ranked_store, tmp_path):
    summary = export(ranked_store, tmp_path / "export", include_flagged=True)
    rankings = read_lines(tmp_path / "export" / "rankings.jsonl")
    assert summary["rankings"] == 3 and [r["flagged"] for r in rankings] == [False, False, True]


def test_a_failed_export_leaves_the_previous_one(tmp_path):
    store = LabelStore(sqlite_url(tmp_path / "labels.db"))
    out = tmp_path / "export"
    out.mkdir()
    (out / "rankings.jsonl").write_text('{"old": 1}\n')
    with pytest.raises(InputError, match="nothing to export"):
        export(store, out)
    assert (out / "rankings.jsonl").read_text() == '{"old": 1}\n'


def test_generate_add_reviewer_export_from_the_command_line(tiny_llama, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Write a poem."}\n{"prompt": "Explain rain."}\n'
                       '{"prompt": [{"role": "user", "content": "Hi!"}]}\n{"prompt": "Write a poem."}\n')
    common = ["--runs_dir", str(tmp_path / "runs"), "--run", "r1"]
    gen = ["generate", "--config", "configs/label.yaml", *common, "--policy", str(tiny_llama), "--prompts",
           str(prompts), "--k", "3", "--max_new_tokens", "12", "--batch_size", "2"]
    stats = main(gen)
    assert (stats["round"], stats["items_written"], stats["answers_written"], stats["duplicates"]) == (1, 3, 9, 1)
    assert main(gen)["items_written"] == 0  # a rerun resumes: nothing left to do in round 1
    store = LabelStore(sqlite_url(tmp_path / "runs" / "r1" / "labels.db"))
    assert store.rounds() == [(1, str(tiny_llama), 3)]
    from sqlalchemy import select

    from labeling_ui.schema import Candidate

    with store.db.read() as s:
        cands = s.scalars(select(Candidate)).all()
    assert len(cands) == 9 and all(c.policy == str(tiny_llama) and c.round == 1 for c in cands)
    # An answer without EOS ran to max_new_tokens; one with EOS stopped before it.
    assert all((c.num_tokens == 12) if not c.ended else (c.num_tokens < 12) for c in cands)
    assert cands[0].generation == {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 12, "seed": 0,
                                   "sampling_weights": "fp32"}

    pw = tmp_path / "pw.txt"
    pw.write_text(PASSWORD + "\n")
    main(["add-reviewer", "ann", "--admin", "--password_file", str(pw), *common])
    assert store.accounts.login("ann", PASSWORD, "test").is_admin
    task = store.next_task("ann")
    store.submit("ann", task.assignment_id, [3, 1, 2], token="cli-token-1")
    summary = main(["export", *common])
    assert summary["rankings"] == 1 and summary["pairs"] == 3
    assert (tmp_path / "runs" / "r1" / "export" / "pairs_ds").is_dir()
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["generate", "--prompts", "missing.jsonl"], "file not found"),
    (["generate", "--k", "1"], "field 'k'"),
    (["export", "--run", "never-made"], "no label store here yet"),
    (["serve", "--run", "never-made"], "no label store here yet"),
    (["add-reviewer"], "usage"),
    (["frobnicate"], "unknown command"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "labeling_ui", *args, "--runs_dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_config_file_with_an_unknown_key_is_refused(tmp_path):
    cfg = tmp_path / "label.yaml"
    cfg.write_text("overlapp: 3\n")
    with pytest.raises(SystemExit) as err:
        main(["export", "--config", str(cfg), "--runs_dir", str(tmp_path)])
    assert err.value.code == 2


@pytest.mark.e2e
def test_generate_with_the_bundled_model(tmp_path):
    """The real SmolLM2 writes readable, distinct answers and usually stops by itself."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "What is the capital of France? Answer in one sentence."}\n'
                       '{"prompt": "Give one tip for sleeping better."}\n')
    stats = main(["generate", "--runs_dir", str(tmp_path), "--run", "e2e", "--prompts", str(prompts), "--k", "2",
                  "--max_new_tokens", "48"])
    assert stats["items_written"] == 2
    store = LabelStore(sqlite_url(tmp_path / "e2e" / "labels.db"))
    store.accounts.add("ann", PASSWORD)
    task = store.next_task("ann")
    assert all(len(a.text.split()) >= 3 for a in task.answers)
    assert "Paris" in " ".join(a.text for a in task.answers) or task.prompt_text.startswith("Give")
