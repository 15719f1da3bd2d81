"""generate --select (issue #20 part 2): which prompts reviewers get. The BALD score prefers items whose
answer pairs the ensemble's members disagree on, the diversity term keeps near-identical prompts out,
one model (or identical members) is refused or scores 0, the store serves higher-priority items first
(and a v4 store is upgraded with priority 0), and the command end to end writes only the chosen items
with their selection record, resumes without sending twice, and leaves `order` as it was."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

import numpy as np
import pytest
import torch
from sqlalchemy import event, text

from labeling_ui import generate as generate_module
from labeling_ui.cli import main as label_main
from labeling_ui.db import sqlite_url
from labeling_ui.selection import choose, embed, item_uncertainty
from labeling_ui.store import LabelStore
from ranktune.errors import InputError

PASSWORD = "correct horse battery"


def test_uncertainty_prefers_the_items_the_members_disagree_on():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 4, 1)) * 2  # (items, K answers, 1)
    scores = np.repeat(base, 3, axis=2)  # (6, 4, 3): the members agree ...
    for i in (1, 4):  # ... except on items 1 and 4, where member 2 reverses the others' order
        scores[i, :, 2] = -scores[i, :, 2]
    u = item_uncertainty(scores)
    assert u.shape == (6,)
    assert np.all(u[[0, 2, 3, 5]] < 1e-9) and np.all(u[[1, 4]] > 0.01)
    texts = ["rain in clouds", "a poem about the sea", "sort a list in python", "a polite email",
             "the french revolution", "photosynthesis"]
    assert sorted(choose(u, texts, 2, diversity=0.0)) == [1, 4]
    # Members equally unsure (every answer scored the same) agree: a coin-flip pair is noise, not disagreement.
    assert item_uncertainty(np.zeros((1, 3, 4)))[0] == pytest.approx(0.0, abs=1e-12)
    # Half sure one way, half the other: the most there is, ln 2.
    split = np.array([[[30.0, -30.0], [0.0, 0.0]]])  # (1 item, 2 answers, 2 members)
    assert item_uncertainty(split)[0] == pytest.approx(np.log(2), abs=1e-6)


def test_the_diversity_term_keeps_near_duplicate_prompts_out():
    texts = ["Explain how rain forms in clouds.", "Explain how rain forms in clouds?",
             "Write a short poem about the sea."]
    u = [1.0, 0.95, 0.6]
    vectors = embed(texts)
    assert vectors[0] @ vectors[1] > 0.9 and vectors[0] @ vectors[2] < 0.5
    assert choose(u, texts, 2, diversity=0.0) == [0, 1]  # uncertainty alone: both copies
    assert choose(u, texts, 2, diversity=0.5) == [0, 2]
    # a prompt the round already has counts as chosen
    assert choose(u, texts, 1, diversity=0.5, chosen_before=["explain how RAIN forms in clouds"]) == [2]


class FakeScorer:
    """RewardScorer's ensemble interface: score_members -> (n, M). Items whose prompt is in `contested`
    get members that reverse each other's order; the others' members all agree. Scores go by the
    answer's position in its item (every K rows are one item), so what the tiny policy wrote is moot."""

    def __init__(self, members: int, k: int, contested: set[str] = frozenset()):
        self.members, self.k, self.contested = members, k, contested

    def score_members(self, prompts, answers, ended=None, batch_size=16):
        out = torch.zeros(len(answers), self.members)
        for row, prompt in enumerate(prompts):
            score = (row % self.k - (self.k - 1) / 2) * 3.0
            for m in range(self.members):
                out[row, m] = -score if prompt in self.contested and m % 2 else score
        return out


def test_identical_members_score_zero_and_one_model_is_refused(tmp_path, tiny_llama, capsys, monkeypatch):
    same = np.repeat(np.random.default_rng(1).normal(size=(5, 4, 1)), 3, axis=2)
    assert np.all(item_uncertainty(same) < 1e-9)
    with pytest.raises(InputError, match="select_reward_model.*2 or more members"):
        generate_module.check_ensemble(FakeScorer(1, 2), "rm")
    # A real single reward model folder (whatever RewardScorer says it has, one model is not an ensemble).
    from tiny_models import make_tiny_reward_dir

    reward = make_tiny_reward_dir(tmp_path / "rm", tiny_llama)
    prompts = write_prompts(tmp_path, [f"Question {i}." for i in range(4)])
    with pytest.raises(SystemExit) as exit_info:
        label_main(["generate", "--runs_dir", str(tmp_path / "runs"), "--run", "one", "--policy", str(tiny_llama),
                    "--prompts", str(prompts), "--k", "2", "--max_new_tokens", "4", "--select", "uncertainty",
                    "--select_count", "2", "--select_reward_model", str(reward)])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "field 'select_reward_model'" in errors[0] and "2 or more members" in errors[0]
    store = LabelStore(sqlite_url(tmp_path / "runs" / "one" / "labels.db"))
    assert store.counts()["items"] == 0  # refused before any answer was sampled or written
    store.close()
    # and the settings that make no sense are refused by name before anything loads
    for bad, field in ((["--select", "order", "--select_count", "3"], "select_count"),
                       (["--select", "best"], "select"), (["--select", "uncertainty"], "select_reward_model"),
                       (["--select", "random", "--select_pool", "0"], "select_pool")):
        with pytest.raises(SystemExit):
            label_main(["generate", "--runs_dir", str(tmp_path / "runs"), "--run", "one", "--prompts", str(prompts),
                        *bad])
        assert f"field '{field}'" in capsys.readouterr().err


def test_the_store_serves_higher_priority_first(tmp_path):
    store = LabelStore(sqlite_url(tmp_path / "labels.db"), overlap=2, shuffle=False)
    ids = [store.add_item(f"prompt {i}", ["a", "b"], [True, True], "pol", 1, priority=p)
           for i, p in enumerate([0.0, 0.5, 1.0, 0.0, 0.25])]
    for name in ("ann", "ben"):
        store.accounts.add(name, PASSWORD)
    served = []
    for n in range(5):
        task = store.next_task("ann")
        served.append(task.item_id)
        store.submit("ann", task.assignment_id, [1, 2], token=f"ann-token-{n}")
    assert served == [ids[2], ids[1], ids[4], ids[0], ids[3]]
    # Items ann finished (done_count 1) still come before untouched items of lower priority.
    store.add_item("prompt new", ["a", "b"], [True, True], "pol", 1, priority=0.1)
    assert store.next_task("ben").item_id == ids[2]
    sent = []  # the claim's statement as it reaches SQLite, to ask SQLite for its plan
    listen = lambda conn, cursor, sql, params, *_: sent.append((sql, params))  # noqa: E731
    event.listen(store.db.read_engine, "before_cursor_execute", listen)
    with store.db.read() as s:
        s.execute(store.sql.free_items, {"me": 1, "now": datetime(2026, 1, 1)}).all()
        sql, params = next((q, p) for q, p in sent if "ORDER BY items.done_count DESC" in q)
        plan = [row[-1] for row in s.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()]
    event.remove(store.db.read_engine, "before_cursor_execute", listen)
    # the free items are read from the index in serving order, not collected and sorted
    assert any("ix_items_claim_order (done_count<?)" in row for row in plan), plan
    assert not any("TEMP B-TREE" in row for row in plan), plan
    store.close()


def test_a_version_4_store_gets_priority_0(tmp_path):
    path = tmp_path / "labels.db"
    store = LabelStore(sqlite_url(path), overlap=2)
    ids = [store.add_item(f"prompt {i}", ["a", "b"], [True, True], "pol", 1) for i in range(3)]
    store.close()
    with sqlite3.connect(path) as conn:  # as written by the code before priority
        conn.execute("DROP INDEX ix_items_claim_order")
        conn.execute("ALTER TABLE items DROP COLUMN priority")
        conn.execute("ALTER TABLE items DROP COLUMN selection")
        conn.execute("CREATE INDEX ix_items_done_count ON items (done_count, id)")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    store = LabelStore(sqlite_url(path), overlap=2)
    with store.db.read() as s:
        assert s.execute(text("SELECT id, priority, selection FROM items ORDER BY id")).all() == \
            [(i, 0.0, None) for i in ids]
        indexes = {r[1] for r in s.execute(text("PRAGMA index_list(items)")).all()}
        assert s.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar() == "5"
    assert "ix_items_claim_order" in indexes and "ix_items_done_count" not in indexes
    store.accounts.add("ann", PASSWORD)
    task = store.next_task("ann")
    assert task.item_id == ids[0]  # all priority 0: oldest first, as before
    later = store.add_item("later", ["a", "b"], [True, True], "pol", 1, priority=2.0)
    store.submit("ann", task.assignment_id, [1, 2], token="ann-token-1")
    assert store.next_task("ann").item_id == later
    store.close()


def write_prompts(tmp_path, prompts: list[str]):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


CONTESTED = ["Explain how rain forms in clouds.", "Explain how rain forms in clouds!", "Write a haiku about autumn.",
             "Is a hot dog a sandwich?", "Which is better for a beginner, Python or Java?"]
AGREED = ["What is 2 + 2?", "Name the capital of France.", "Spell the word cat.", "Say hello.", "Count to three."]


def items_of(run_dir) -> list[tuple]:
    store = LabelStore(sqlite_url(run_dir / "labels.db"))
    with store.db.read() as s:
        rows = s.execute(text("SELECT p.text, i.priority, i.selection FROM items i JOIN prompts p ON p.id = "
                              "i.prompt_id ORDER BY i.id")).all()
    store.close()
    return [(t, p, json.loads(sel) if sel else None) for t, p, sel in rows]


def test_generate_select_uncertainty_end_to_end(tmp_path, tiny_llama, monkeypatch):
    k = 3
    pool = [AGREED[0], CONTESTED[0], AGREED[1], CONTESTED[1], CONTESTED[2], AGREED[2], CONTESTED[3], AGREED[3],
            CONTESTED[4], AGREED[4]]
    prompts = write_prompts(tmp_path, pool)
    (tmp_path / "rm").mkdir()
    monkeypatch.setattr(generate_module, "load_scorer", lambda folder: FakeScorer(3, k, set(CONTESTED)))
    runs = tmp_path / "runs"
    common = ["--runs_dir", str(runs), "--policy", str(tiny_llama), "--prompts", str(prompts), "--k", str(k),
              "--max_new_tokens", "6", "--batch_size", "4"]
    select = ["--select", "uncertainty", "--select_reward_model", str(tmp_path / "rm"), "--select_count", "4"]

    # A crash while the chosen items are written leaves none of them: they go in one transaction.
    real_insert, calls = LabelStore._insert_item, []

    def failing_insert(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return real_insert(*args, **kwargs)

    monkeypatch.setattr(LabelStore, "_insert_item", staticmethod(failing_insert))
    with pytest.raises(RuntimeError, match="power cut"):
        label_main(["generate", *common, "--run", "sel", *select])
    assert items_of(runs / "sel") == []
    monkeypatch.setattr(LabelStore, "_insert_item", staticmethod(real_insert))

    stats = label_main(["generate", *common, "--run", "sel", *select])
    assert (stats["pool"], stats["scored"], stats["items_written"], stats["members"]) == (10, 10, 4, 3)
    items = items_of(runs / "sel")
    # The four contested prompts, but only one of the two ways of asking about rain.
    assert {t for t, _, _ in items} == set(CONTESTED) - {CONTESTED[1]}
    assert [sel["rank"] for _, _, sel in items] == [1, 2, 3, 4]
    assert [p for _, p, _ in items] == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4])
    assert all(sel["method"] == "uncertainty" and sel["pool"] == 10 and sel["score"] > 0.1 for _, _, sel in items)
    assert stats["uncertainty"]["chosen_mean"] > stats["uncertainty"]["pool_mean"]

    # Run again: the round has its 4, so nothing is sampled or written; a larger count tops it up.
    again = label_main(["generate", *common, "--run", "sel", *select])
    assert (again["items_written"], again["scored"], again["already_chosen"]) == (0, 0, 4)
    more = label_main(["generate", *common, "--run", "sel", *select[:-1], "5"])
    assert (more["items_written"], more["pool"], more["already_chosen"]) == (1, 6, 4)
    top_up = items_of(runs / "sel")[-1]
    assert top_up[0] == CONTESTED[1] and top_up[2]["rank"] == 5 and top_up[1] == pytest.approx(0.2)

    # Served in the order chosen, and the export says how each item was chosen.
    store = LabelStore(sqlite_url(runs / "sel" / "labels.db"), shuffle=False)
    store.accounts.add("ann", PASSWORD)
    task = store.next_task("ann")
    assert task.prompt_text == items[0][0]
    store.submit("ann", task.assignment_id, list(range(1, k + 1)), token="ann-token-1")
    store.close()
    label_main(["export", "--runs_dir", str(runs), "--run", "sel"])
    row = json.loads((runs / "sel" / "export" / "rankings.jsonl").read_text().splitlines()[0])
    assert row["selection"] == items[0][2]


def test_generate_select_uncertainty_with_a_real_ensemble_folder(tmp_path, tiny_llama):
    """The real RewardScorer on a tiny random 3-output classifier (an ensemble on one shared base)."""
    from ranktune.scoring import RewardScorer

    if not hasattr(RewardScorer, "score_members"):
        pytest.skip("ranktune/scoring.py has no ensemble members yet")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    torch.manual_seed(3)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_llama, num_labels=3)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    prompts = write_prompts(tmp_path, CONTESTED + AGREED)
    stats = label_main(["generate", "--runs_dir", str(tmp_path / "runs"), "--run", "real", "--policy", str(tiny_llama),
                        "--prompts", str(prompts), "--k", "3", "--max_new_tokens", "6", "--select", "uncertainty",
                        "--select_reward_model", str(tmp_path / "rm"), "--select_count", "3", "--select_pool", "8"])
    assert (stats["members"], stats["scored"], stats["items_written"]) == (3, 8, 3)
    items = items_of(tmp_path / "runs" / "real")
    assert [sel["rank"] for _, _, sel in items] == [1, 2, 3] and all(sel["score"] >= 0 for _, _, sel in items)
    assert {t for t, _, _ in items} <= set((CONTESTED + AGREED)[:8])


def test_order_stays_as_it_was_and_random_is_a_seeded_draw(tmp_path, tiny_llama):
    prompts = write_prompts(tmp_path, CONTESTED + AGREED)
    runs = tmp_path / "runs"
    common = ["--runs_dir", str(runs), "--policy", str(tiny_llama), "--prompts", str(prompts), "--k", "2",
              "--max_new_tokens", "4", "--batch_size", "5"]
    stats = label_main(["generate", *common, "--run", "order"])
    assert stats["items_written"] == 10
    assert items_of(runs / "order") == [(p, 0.0, None) for p in CONTESTED + AGREED]  # file order, unranked
    drawn = []
    for run in ("r1", "r2"):
        stats = label_main(["generate", *common, "--run", run, "--select", "random", "--select_count", "3",
                            "--seed", "7"])
        assert (stats["items_written"], stats["pool"], stats["scored"]) == (3, 10, 0)
        drawn.append(items_of(runs / run))
    assert drawn[0] == drawn[1]  # the same seed, the same draw
    assert [sel for _, _, sel in drawn[0]] == [{"method": "random", "score": None, "pool": 10, "rank": r}
                                               for r in (1, 2, 3)]
    assert [t for t, _, _ in drawn[0]] != (CONTESTED + AGREED)[:3]


def test_the_loop_passes_select_to_rounds_after_the_first(tmp_path, monkeypatch, capsys):
    """rlhf loop --select uncertainty (stages faked: what matters is what generate is asked)."""
    from pathlib import Path

    from rlhf import loop

    prompts = write_prompts(tmp_path, [f"Prompt number {i} about topic {i}." for i in range(40)])
    runs, generated = tmp_path / "runs", []

    def mark(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text("{}")

    def fake_stage(*args: str) -> None:
        opt = lambda name: args[args.index(name) + 1]  # noqa: E731
        if args[0] == "sft":
            mark(runs / opt("--run") / "sft")
        elif args[0] in ("reward", "rlhf"):
            mark(Path(opt("--runs_dir")) / opt("--run") / args[0])
        elif args[1] == "generate":
            pool = [json.loads(line)["prompt"] for line in Path(opt("--prompts")).read_text().splitlines()]
            generated.append((args, pool))
            store = LabelStore.for_run(opt("--run"), runs)
            count = int(opt("--select_count")) if "--select_count" in args else len(pool)
            for p in pool[:count]:
                store.add_item(p, ["a", "b"], [True, True], "pol", int(opt("--round")))
            store.close()

    monkeypatch.setattr(loop, "_stage", fake_stage)
    common = ["--runs_dir", str(runs), "--prompts", str(prompts), "--prompts_per_round", "5", "--max_eval_prompts",
              "4", "--select", "uncertainty", "--select_pool_factor", "3"]
    monkeypatch.setattr(generate_module, "load_scorer", lambda folder: FakeScorer(3, 2))
    loop.main(["--run", "ens", "--rounds", "3", *common])
    (first, pool1), *later = generated
    assert "--select" not in first and len(pool1) == 5  # round 1 has no reward model yet: its own prompts
    asked = set(pool1)
    for r, (args, pool) in enumerate(later, start=2):
        i = args.index("--select")
        assert args[i:i + 6] == ("--select", "uncertainty", "--select_count", "5", "--select_reward_model",
                                 str(runs / "ens" / "rounds" / f"round-{r - 1}" / "reward"))
        assert len(pool) == 15 and not asked & set(pool)  # a pool of 3 x 5 prompts no earlier round had
        asked |= set(pool[:5])
    assert json.loads((runs / "ens" / "rounds" / "round-2" / "round.json").read_text())["select"] == "uncertainty"

    generated.clear()  # a single reward model: round 2 goes in order, and says so
    monkeypatch.setattr(generate_module, "load_scorer", lambda folder: FakeScorer(1, 2))
    loop.main(["--run", "one", "--rounds", "2", *common])
    assert all("--select" not in args and len(pool) == 5 for args, pool in generated)
    assert "needs an ensemble" in capsys.readouterr().out


def test_items_imported_or_pushed_with_a_priority_are_served_by_it(tmp_path):
    """Another tool's selector (or an API client) can say which items are worth a reviewer's time first."""
    from labeling_ui.formats import import_file

    store = LabelStore(sqlite_url(tmp_path / "labels.db"), overlap=1, shuffle=False)
    store.accounts.add("ann", PASSWORD)
    records = [{"prompt": "low", "answers": ["a", "b"]},
               {"prompt": "high", "answers": ["a", "b"], "priority": 3},
               {"prompt": "middle", "answers": ["a", "b"], "priority": 0.5},
               {"prompt": "high", "answers": ["a", "b"], "priority": 1.5}]  # the same item again: its highest stays
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert import_file(store, "jsonl", path, 1, None, "admin:test")["items"] == 3
    served = []
    while (task := store.next_task("ann")) is not None:
        served.append(task.prompt)
        store.submit("ann", task.assignment_id, [1, 2], token=f"ann-token-{len(served)}")
    assert served == ["high", "middle", "low"]
    with store.db.read() as s:
        rows = dict(s.execute(text("SELECT prompts.text, items.selection FROM items JOIN prompts "
                                   "ON prompts.id = items.prompt_id")).all())
    assert json.loads(rows["high"]) == {"method": "given", "source": "jsonl"} and json.loads(rows["low"]) is None
    bad = tmp_path / "bad.jsonl"
    for value in ("soon", True, float("inf")):
        bad.write_text(json.dumps({"prompt": "p", "answers": ["a", "b"], "priority": value}) + "\n")
        with pytest.raises(InputError) as err:
            import_file(store, "jsonl", bad, 2, None, "admin:test")
        assert err.value.field == "priority" and "bad.jsonl:1" in str(err.value)
    store.close()
