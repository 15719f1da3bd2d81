"""The export of every question type (issue 17), and the reward stage reading it back.

- `margin` in pairs.jsonl is TRL's field: RewardTrainer subtracts it, in reward logits, from each
  pair's score difference. The export used to write the rank distance there (so stock TRL trained
  with margins of 1-3); now the distance is `rank_distance`, and `margin` is written only with
  `margin_scale` (margin_scale x strength, else rank distance).
- pairwise questions: `strength` (1-3; 0 = about the same, a tie, no pair) on the row and its pair,
  and the reward stage's distance for `--margin_scale`.
- rating questions: ratings.jsonl with the raw scores, and (ratings_as_rankings) the ranking the
  scores imply in rankings.jsonl, with its pairs.

Labels go through the real SQLite store (labeling_ui/questions/): each answer is sent by shown
index, as the page sends it, and the store keeps it by candidate position.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoTokenizer

from labeling_ui.cli import main
from labeling_ui.db import sqlite_url
from labeling_ui.export import export
from labeling_ui.store import LabelStore
from ranktune.errors import InputError
from ranktune.records import read_preferences
from reward.collator import RankingCollator
from reward.data import to_dataset, ungroup
from reward.records import read_rankings, resolve_source
from reward.trainer import pair_margins

PASSWORD = "correct horse"

# prompt -> (answers, question, ranks by candidate position, response by candidate position)
RANKING = ("Name a color.", ["Red.", "Blue.", "Banana."], "ranking", [1, 2, 3], None)
PAIRWISE = ("Say hi.", ["Hi.", "Hello there, how can I help?"], "pairwise", [2, 1], {"strength": 3})
PAIRWISE_TIE = ("Say bye.", ["Bye.", "Goodbye."], "pairwise", [1, 1], {"strength": 0})
RATING = ("Name a fruit.", ["Apple.", "Mango, sweet and ripe.", "Pear."], "rating", [2, 1, 2],
          {"scores": [5, 7, 5]})


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def labeled_store(path, labels) -> LabelStore:
    """A real store in which reviewer `ann` answered each of `labels` (a question of its own type)."""
    store = LabelStore(sqlite_url(path), overlap=1)
    store.accounts.add("ann", PASSWORD)
    by_item = {}
    for label in labels:
        prompt, answers, question, _ranks, _response = label
        by_item[store.add_item(prompt, answers, [True] * len(answers), "pol-a", 1, question=question)] = label
    for n in range(len(labels)):
        task = store.next_task("ann")
        _prompt, _answers, question, ranks, response = by_item[task.item_id]
        if question == "rating":
            reply = {"scores": task.by_shown(response["scores"])}
        else:
            reply = {"ranks": task.by_shown(ranks), **(response or {})}
        store.submit("ann", task.assignment_id, reply=reply, token=f"token-{n:04d}")
    rows = {r["prompt"]: r for r in store.rankings()}
    for prompt, _answers, question, ranks, response in labels:  # what the export receives, by candidate position
        assert (rows[prompt]["question"], rows[prompt]["ranks"], rows[prompt]["response"]) == (question, ranks,
                                                                                             response)
    return store


def test_pairs_have_a_rank_distance_and_no_margin_unless_asked(tmp_path):
    store = labeled_store(tmp_path / "labels.db", [RANKING, PAIRWISE])
    out = tmp_path / "export"
    export(store, out)
    pairs = read_lines(out / "pairs.jsonl")
    assert not any("margin" in p for p in pairs), "TRL would subtract a margin of 1-3 logits from every pair"
    ranked = {(p["chosen"], p["rejected"]): p for p in pairs if p["question"] == "ranking"}
    assert {k: p["rank_distance"] for k, p in ranked.items()} == {
        ("Red.", "Blue."): 1, ("Red.", "Banana."): 2, ("Blue.", "Banana."): 1}
    assert not any("strength" in p for p in ranked.values())
    import datasets

    pairs_ds = datasets.load_from_disk(str(out / "pairs_ds"))
    assert "margin" not in pairs_ds.column_names and "rank_distance" in pairs_ds.column_names
    assert len(read_preferences(out / "pairs.jsonl")) == len(pairs) == 4


def test_margin_scale_writes_that_many_logits_per_unit_of_strength_or_rank_distance(tmp_path):
    store = labeled_store(tmp_path / "labels.db", [RANKING, PAIRWISE])
    out = tmp_path / "export"
    summary = export(store, out, margin_scale=0.5)
    pairs = read_lines(out / "pairs.jsonl")
    assert {(p["chosen"], p["rejected"], p["rank_distance"], p["margin"]) for p in pairs} == {
        ("Red.", "Blue.", 1, 0.5), ("Red.", "Banana.", 2, 1.0), ("Blue.", "Banana.", 1, 0.5),
        ("Hello there, how can I help?", "Hi.", 1, 1.5)}  # the pairwise pair: 0.5 x strength 3
    assert summary["margin_scale"] == 0.5
    import datasets

    assert datasets.load_from_disk(str(out / "pairs_ds"))["margin"] == [p["margin"] for p in pairs]
    with pytest.raises(InputError, match="margin_scale"):
        export(store, out, margin_scale=-1.0)


def test_the_command_line_passes_margin_scale(tmp_path, capsys):
    store = LabelStore(sqlite_url(tmp_path / "runs" / "r1" / "labels.db"))
    store.add_item("Name a color.", ["Red.", "Blue."], [True, True], "pol-a", 1)
    store.accounts.add("ann", PASSWORD)
    store.submit("ann", store.next_task("ann").assignment_id, [2, 1], token="cli-token-1")
    common = ["--runs_dir", str(tmp_path / "runs"), "--run", "r1"]
    main(["export", *common])
    [pair] = read_lines(tmp_path / "runs" / "r1" / "export" / "pairs.jsonl")
    assert "margin" not in pair and pair["rank_distance"] == 1
    main(["export", *common, "--margin_scale", "0.25"])
    [pair] = read_lines(tmp_path / "runs" / "r1" / "export" / "pairs.jsonl")
    assert pair["margin"] == 0.25
    capsys.readouterr()


def test_a_pairwise_strength_is_the_reward_stages_distance(tmp_path, tiny_llama):
    store = labeled_store(tmp_path / "labels.db", [PAIRWISE, RANKING])
    out = tmp_path / "export"
    export(store, out)
    row = next(r for r in read_lines(out / "rankings.jsonl") if r["question"] == "pairwise")
    assert row["strength"] == 3 and row["ranks"] == [2, 1] and "scores" not in row
    [pair] = [p for p in read_lines(out / "pairs.jsonl") if p["question"] == "pairwise"]
    assert (pair["chosen"], pair["rejected"], pair["strength"], pair["rank_distance"]) == (
        "Hello there, how can I help?", "Hi.", 3, 1)

    # the reward stage on the folder (its rankings.jsonl): the pair's distance is the strength
    rankings, stats = read_rankings(resolve_source(str(out), tmp_path / "none"))
    by_prompt = {r.prompt_key: r for r in rankings}
    assert by_prompt["Say hi."].pairs == [(1, 0, 3.0)] and by_prompt["Say hi."].margins is None
    assert [d for *_, d in by_prompt["Name a color."].pairs] == [1.0, 2.0, 1.0]
    assert stats.pairs_with_strength == 1
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    ds, _ = to_dataset(rankings, tok, max_length=None)
    assert "margin" not in ds.column_names
    batch = RankingCollator(pad_token_id=tok.pad_token_id)([ds[i] for i in range(len(ds))])
    assert sorted(batch["distance"].tolist()) == [1.0, 1.0, 2.0, 3.0] and "margin" not in batch
    # --margin_scale 0.5: margins of 0.5 x distance
    assert pair_margins(0.5, batch["distance"], None).tolist() == (0.5 * batch["distance"]).tolist()
    assert pair_margins(0.0, batch["distance"], batch.get("margin")) is None

    # and on pairs.jsonl alone: the same distances, put back together by ranking_id
    rankings, stats = read_rankings(str(out / "pairs.jsonl"))
    assert {r.prompt_key: sorted(d for *_, d in r.pairs) for r in rankings} == {
        "Say hi.": [3.0], "Name a color.": [1.0, 1.0, 2.0]}
    assert stats.pairs_with_own_margin == 0


def test_an_exported_margin_is_read_as_trl_reads_it(tmp_path, tiny_llama):
    """pairs.jsonl written with margin_scale: the reward stage subtracts each pair's margin as it is
    (in logits), whatever its own --margin_scale; the distance is still strength / rank distance."""
    store = labeled_store(tmp_path / "labels.db", [PAIRWISE, RANKING])
    export(store, tmp_path / "export", margin_scale=0.5)
    rankings, stats = read_rankings(str(tmp_path / "export" / "pairs.jsonl"))
    hi = next(r for r in rankings if r.prompt_key == "Say hi.")
    assert hi.pairs == [(0, 1, 3.0)] and hi.margins == [1.5] and stats.pairs_with_own_margin == 4
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    ds, _ = to_dataset(rankings, tok, max_length=None)
    batch = RankingCollator(pad_token_id=tok.pad_token_id)([ds[i] for i in range(len(ds))])
    assert sorted(pair_margins(0.0, batch["distance"], batch["margin"]).tolist()) == [0.5, 0.5, 1.0, 1.5]
    assert sorted(pair_margins(2.0, batch["distance"], batch["margin"]).tolist()) == [0.5, 0.5, 1.0, 1.5]
    assert sorted(m for r in ungroup(rankings) for m in r.margins) == [0.5, 0.5, 1.0, 1.5]
    # a pair without a margin of its own, batched with one that has: margin_scale x its distance
    mixed = pair_margins(2.0, torch.tensor([3.0, 1.0]), torch.tensor([1.5, math.nan]))
    assert mixed.tolist() == [1.5, 2.0]


def test_a_pairwise_tie_makes_no_pair(tmp_path):
    store = labeled_store(tmp_path / "labels.db", [PAIRWISE_TIE, PAIRWISE])
    out = tmp_path / "export"
    summary = export(store, out, margin_scale=1.0)
    tie = next(r for r in read_lines(out / "rankings.jsonl") if r["prompt"] == "Say bye.")
    assert tie["strength"] == 0 and tie["ranks"] == [1, 1]
    assert [p["prompt"] for p in read_lines(out / "pairs.jsonl")] == ["Say hi."]
    assert summary["tied_pairs"] == 1 and summary["questions"]["pairwise"] == {
        "rankings": 2, "pairs": 1, "tied_pairs": 1, "held_out": 0}
    rankings, stats = read_rankings(str(out / "rankings.jsonl"))
    assert next(r for r in rankings if r.prompt_key == "Say bye.").pairs == [] and stats.tied_pairs == 1


def test_ratings_are_exported_as_scores_and_as_the_rankings_they_imply(tmp_path):
    store = labeled_store(tmp_path / "labels.db", [RATING, RANKING])
    out = tmp_path / "export"
    summary = export(store, out)
    [rating] = read_lines(out / "ratings.jsonl")
    assert set(rating) == {"item_id", "ranking_id", "prompt", "answers", "ended", "scores", "reviewer", "round",
                           "policy", "weight"}
    assert (rating["prompt"], rating["scores"], rating["reviewer"]) == ("Name a fruit.", [5, 7, 5], "ann")
    row = next(r for r in read_lines(out / "rankings.jsonl") if r["question"] == "rating")
    assert row["ranks"] == [2, 1, 2] and row["scores"] == [5, 7, 5] and "strength" not in row
    rated = [p for p in read_lines(out / "pairs.jsonl") if p["question"] == "rating"]
    assert {(p["chosen"], p["rejected"], p["rank_distance"]) for p in rated} == {
        ("Mango, sweet and ripe.", "Apple.", 1), ("Mango, sweet and ripe.", "Pear.", 1)}  # 5 = 5: no pair
    assert summary["ratings"] == 1 and summary["questions"] == {
        "ranking": {"rankings": 1, "pairs": 3, "tied_pairs": 0, "held_out": 0},
        "rating": {"rankings": 1, "pairs": 2, "tied_pairs": 1, "held_out": 0, "ratings": 1}}
    import datasets

    ds = datasets.load_from_disk(str(out / "rankings_ds"))
    assert sorted(ds["question"]) == ["ranking", "rating"] and [5, 7, 5] in ds["scores"] and None in ds["scores"]
    rankings, _ = read_rankings(resolve_source(str(out), tmp_path / "none"))
    assert sorted(len(r.pairs) for r in rankings) == [2, 3]

    # ratings_as_rankings false: the scores only in ratings.jsonl, nothing of them in what trains a reward model
    summary = export(store, out, ratings_as_rankings=False)
    assert read_lines(out / "ratings.jsonl") == [rating]
    assert [r["question"] for r in read_lines(out / "rankings.jsonl")] == ["ranking"]
    assert {p["question"] for p in read_lines(out / "pairs.jsonl")} == {"ranking"}
    assert summary["rankings"] == 1 and summary["ratings"] == 1 and summary["questions"]["rating"]["rankings"] == 0
    assert any("ratings.jsonl only" in n for n in summary["notes"])


def test_a_plain_ranking_export_has_an_empty_ratings_file(tmp_path):
    store = labeled_store(tmp_path / "labels.db", [RANKING])
    summary = export(store, tmp_path / "export")
    assert (tmp_path / "export" / "ratings.jsonl").read_text() == ""
    assert summary["questions"] == {"ranking": {"rankings": 1, "pairs": 3, "tied_pairs": 0, "held_out": 0}}
    assert read_lines(tmp_path / "export" / "rankings.jsonl")[0]["question"] == "ranking"


@pytest.mark.parametrize("record, message", [
    ({"prompt": "p", "answers": ["a", "b", "c"], "ranks": [1, 2, 3], "strength": 2}, "needs 2 answers"),
    ({"prompt": "p", "answers": ["a", "b"], "ranks": [1, 2], "strength": 0}, "goes with a tie"),
    ({"prompt": "p", "answers": ["a", "b"], "ranks": [1, 1], "strength": 2}, "goes with a tie"),
    ({"prompt": "p", "answers": ["a", "b"], "ranks": [1, 2], "strength": "much"}, "field 'strength'"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "strength": 0}, "field 'strength': expected a finite number > 0"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "rank_distance": -1}, "field 'rank_distance'"),
])
def test_the_reward_reader_checks_strength_and_rank_distance(tmp_path, record, message):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(InputError, match=message):
        read_rankings(str(path))


def test_the_trainer_subtracts_a_pairs_own_margin(tiny_llama, tmp_path):
    """End to end through reward/train.py: a `margin` column reaches the loss (the learning rate is 0,
    so the loss is the untrained model's, shifted by the margin of 20 logits)."""
    from test_reward import keyword_task, run_reward, write_jsonl

    pairs = [r for r in keyword_task(16) if "chosen" in r]
    runs = {}
    for name, margin in (("plain", None), ("margin", 20.0)):
        data = write_jsonl(tmp_path / f"{name}.jsonl",
                           [{**p, "rank_distance": 1} | ({"margin": margin} if margin else {}) for p in pairs])
        run_reward(tiny_llama, data, tmp_path / "runs", "--learning_rate", "0", "--num_train_epochs", "1",
                   "--eval_fraction", "0", "--eval_strategy", "no", run=name)
        runs[name] = json.loads((tmp_path / "runs" / name / "reward" / "metrics.json").read_text())
    assert runs["margin"]["data_stats"]["pairs_with_own_margin"] == len(pairs)
    assert runs["plain"]["train_loss"] < 2 and runs["margin"]["train_loss"] > 15
