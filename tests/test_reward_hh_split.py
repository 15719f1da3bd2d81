"""benchmarks/reward_hh.py's three prompt-disjoint parts: settings are chosen on validation pairs, the
test pairs (the same ones as before the validation part existed) are scored only with --split test."""

import json

import pytest

from benchmarks.reward_hh import baseline_cells, line_number, split
from ranktune.errors import InputError
from reward.data import split_by_prompt
from reward.records import read_rankings


def write_hh(path, prompts: int = 60, pairs_each: int = 2):
    rows = [{"prompt": f"\n\nHuman: question {p}?\n\nAssistant:", "chosen": f" good answer {p}.{i}",
             "rejected": f" bad answer {p}.{i}"} for p in range(prompts) for i in range(pairs_each)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def trained_prompts(train_file) -> set[str]:
    return {r.prompt_key for r in read_rankings(str(train_file))[0]}


def test_validation_test_and_train_never_share_a_prompt_and_test_is_as_before(tmp_path):
    data = write_hh(tmp_path / "hh.jsonl")
    rankings, _ = read_rankings(str(data))
    _, before = split_by_prompt(rankings, 30 / len(rankings), 42)  # what the benchmark held out until now

    (tmp_path / "v").mkdir()
    train_file, validation = split(str(data), 30, 20, "validation", None, 42, tmp_path / "v")
    (tmp_path / "t").mkdir()
    final_file, test = split(str(data), 30, 20, "test", None, 42, tmp_path / "t")

    assert [line_number(r) for r in test] == [line_number(r) for r in before]
    val_prompts, test_prompts = {r.prompt_key for r in validation}, {r.prompt_key for r in test}
    assert validation and not val_prompts & test_prompts
    train = trained_prompts(train_file)
    assert not train & (val_prompts | test_prompts), "choosing settings trains on neither held-out part"
    final = trained_prompts(final_file)
    assert final == train | val_prompts and not final & test_prompts, "the final run refits on train + validation"
    assert len(train) + len(val_prompts) + len(test_prompts) == 60


def test_a_baseline_pairs_only_with_the_same_held_out_pairs(tmp_path):
    data = write_hh(tmp_path / "hh.jsonl")
    (tmp_path / "v").mkdir()
    _, validation = split(str(data), 30, 20, "validation", None, 42, tmp_path / "v")
    (tmp_path / "t").mkdir()
    _, test = split(str(data), 30, 20, "test", None, 42, tmp_path / "t")
    prompts = {r.prompt_key for r in validation}
    earlier = tmp_path / "results.json"
    earlier.write_text(json.dumps({"split": "validation", "settings": [
        {"setting": "full", "cells": {k: [1.0, 1] for k in prompts}}, {"setting": "lora", "cells": {}}]}))

    name, cells = baseline_cells(str(earlier), "validation", prompts)
    assert name == "full" and set(cells) == prompts
    with pytest.raises(InputError, match="other held-out pairs"):
        baseline_cells(str(earlier), "test", {r.prompt_key for r in test})
    with pytest.raises(InputError, match="other held-out pairs"):
        baseline_cells(str(earlier), "validation", prompts - {next(iter(prompts))})
    earlier.write_text("{}")
    with pytest.raises(InputError, match="results.json"):
        baseline_cells(str(earlier), "validation", prompts)
