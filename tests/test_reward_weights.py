"""Reliability-weighted and consensus rankings in the reward stage: the weighted losses against
values worked out by hand, a weight-0 ranking that teaches nothing, the reader's checks of `weight`,
`--label_weighting consensus` reading the export's consensus.jsonl, and `--label_weighting
reliability` end to end ignoring reviewers of weight 0 that `all` learns from."""

import json
import math
import random
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer

from ranktune.scoring import RewardScorer
from reward.collator import RankingCollator
from reward.config import RewardScriptArguments
from reward.data import to_dataset, ungroup
from reward.losses import listwise_loss, pairwise_loss
from reward.records import Ranking, read_rankings, resolve_source
from reward.train import load_data
from reward.train import main as reward_main
from test_reward import keyword_task, run_reward, write_jsonl

# -log sigmoid(x) = log(1 + e^-x)
SP = {1.0: 0.3132616875182228, 2.0: 0.1269280110429725, -1.0: 1.3132616875182228}


# ---------------------------------------------------------------- losses


def _pairwise_batch():
    # ranking 0: r=(2, 1, 0), pairs 0>1, 0>2; ranking 1: a full tie (no pair); ranking 2: r=(0.5, 1.5), 0>1.
    rewards = torch.tensor([2.0, 1.0, 0.0, 0.3, 0.3, 0.5, 1.5])
    group = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    return rewards, torch.tensor([0, 0, 5]), torch.tensor([1, 2, 6]), group


def test_weighted_pairwise_loss_is_the_plain_one_with_weights_1_and_a_weighted_mean_otherwise():
    rewards, better, worse, group = _pairwise_batch()
    plain = pairwise_loss(rewards, better, worse, group)
    assert torch.equal(pairwise_loss(rewards, better, worse, group, weights=torch.ones(3)), plain)
    first, last = (SP[1.0] + SP[2.0]) / 2, SP[-1.0]
    # the tie has no loss term, so its weight (5) must not enter the denominator either
    by_hand = (3 * first + 1 * last) / (3 + 1)
    weighted = pairwise_loss(rewards, better, worse, group, weights=torch.tensor([3.0, 5.0, 1.0]))
    assert weighted.item() == pytest.approx(by_hand, abs=1e-6)
    assert by_hand == pytest.approx(0.49338655884000393)
    margin = torch.tensor([0.5, 0.5, 1.0])
    with_margin = ((3 * (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(-1.5))) / 2
                    + 1 * math.log1p(math.exp(2.0))) / 4)
    assert pairwise_loss(rewards, better, worse, group, margin, torch.tensor([3.0, 5.0, 1.0])).item() == \
        pytest.approx(with_margin, abs=1e-6)


def test_weighted_listwise_loss_is_the_plain_one_with_weights_1_and_a_weighted_mean_otherwise():
    rewards = torch.tensor([0.3, -0.4, 2.0, 1.0, 0.0])
    group, ranks = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([1, 2, 1, 2, 3])
    plain = listwise_loss(rewards, ranks, group)
    assert torch.equal(listwise_loss(rewards, ranks, group, torch.ones(2)), plain)
    pair, three_way = math.log1p(math.exp(-0.7)), 0.36043382598130147  # see tests/test_reward.py
    weighted = listwise_loss(rewards, ranks, group, torch.tensor([0.25, 1.0]))
    assert weighted.item() == pytest.approx((0.25 * pair + three_way) / 1.25, abs=1e-6)


@pytest.mark.parametrize("loss_type", ["pairwise", "listwise"])
def test_a_weight_0_ranking_contributes_nothing(loss_type):
    rewards, better, worse, group = _pairwise_batch()
    ranks = torch.tensor([1, 2, 3, 1, 1, 1, 2])
    weights = torch.tensor([0.0, 1.0, 0.7])

    def loss(r, g, b, w, rk, wt):
        return listwise_loss(r, rk, g, wt) if loss_type == "listwise" else pairwise_loss(r, b, w, g, weights=wt)

    rewards.requires_grad_(True)
    total = loss(rewards, group, better, worse, ranks, weights)
    total.backward()
    assert torch.count_nonzero(rewards.grad[:3]) == 0, "the weight-0 ranking's answers get no gradient"
    assert torch.count_nonzero(rewards.grad[5:]) == 2
    # and it is as if that ranking were not in the batch
    rest = rewards.detach()[3:]
    without = loss(rest, group[3:] - 1, better[2:] - 3, worse[2:] - 3, ranks[3:], weights[1:])
    assert total.item() == pytest.approx(without.item(), abs=1e-6)
    # a batch of weight-0 rankings only: a loss of 0, not 0/0
    zero = loss(rewards, group, better, worse, ranks, torch.zeros(3))
    assert zero.item() == 0.0


def test_weights_travel_from_rankings_to_the_batch(tiny_llama):
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    rankings = [Ranking("p1", ["a", "bb", "ccc"], [(0, 1, 1.0), (0, 2, 2.0), (1, 2, 1.0)], [1, 2, 3], weight=0.25),
                Ranking("p2", ["x", "y"], [(0, 1, 1.0)], [1, 2])]
    ds, _ = to_dataset(rankings, tok, max_length=None)
    assert ds["weight"] == [0.25, 1.0]
    batch = RankingCollator(pad_token_id=tok.pad_token_id)([ds[0], ds[1]])
    assert batch["weight"].shape == (2,) and batch["weight"].tolist() == [0.25, 1.0]
    assert {"input_ids", "attention_mask", "group", "ranks", "better", "worse", "distance"} <= set(batch)
    assert [r.weight for r in ungroup(rankings)] == [0.25, 0.25, 0.25, 1.0]


# ---------------------------------------------------------------- reading weights


def test_the_reader_carries_each_records_weight(tmp_path):
    data = write_jsonl(tmp_path / "mixed.jsonl", [
        {"prompt": "p1", "answers": ["a", "b"], "ranks": [1, 2], "weight": 0.5},
        {"prompt": "p2", "chosen": "yes", "rejected": "no", "weight": 0},
        {"prompt": "p3", "chosen": "A", "rejected": "B", "ranking_id": 7, "weight": 0.8},
        {"prompt": "p3", "chosen": "A", "rejected": "C", "ranking_id": 7, "weight": 0.8},
        {"prompt": "p4", "chosen": "u", "rejected": "v"},
    ])
    rankings, stats = read_rankings(str(data))
    assert {r.prompt_key: r.weight for r in rankings} == {"p1": 0.5, "p2": 0.0, "p3": 0.8, "p4": 1.0}
    assert stats.records_with_weight == 4 and stats.zero_weight_rankings == 1


BAD_WEIGHTS = {  # name: (lines, line and field the message must name)
    "negative": ([{"prompt": "p", "answers": ["a", "b"], "ranks": [1, 2], "weight": 1},
                  {"prompt": "q", "answers": ["a", "b"], "ranks": [1, 2], "weight": -0.5}], 2),
    "a string": ([{"prompt": "p", "chosen": "a", "rejected": "b", "weight": "0.9"}], 1),
    "a bool on a ranking": ([{"prompt": "p", "answers": ["a", "b"], "ranks": [1, 2], "weight": True}], 1),
    "a bool on a pair": ([{"prompt": "p", "chosen": "a", "rejected": "b", "weight": False}], 1),
    "infinite": (['{"prompt": "p", "chosen": "a", "rejected": "b", "weight": 1e999}'], 1),
    "pairs of one ranking disagree": ([{"prompt": "p", "chosen": "a", "rejected": "b", "ranking_id": 1, "weight": 1},
                                       {"prompt": "p", "chosen": "a", "rejected": "c", "ranking_id": 1,
                                        "weight": 0.5}], 2),
}


def _run_expecting_error(data, tmp_path, capsys, *extra) -> str:
    with pytest.raises(SystemExit) as exit_info:
        reward_main(["--config", "configs/reward.yaml", "--data", str(data), "--runs_dir", str(tmp_path / "runs"),
                     "--run", "x", "--model_name_or_path", str(tmp_path / "no-model-needed"), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs" / "x" / "reward").exists()
    return err


@pytest.mark.parametrize("case", list(BAD_WEIGHTS))
def test_a_bad_weight_is_one_line_naming_file_line_and_field(case, tmp_path, capsys):
    lines, line = BAD_WEIGHTS[case]
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    err = _run_expecting_error(data, tmp_path, capsys)
    assert err.startswith(f"error: {data}:{line}: field 'weight': "), err


def test_reliability_needs_a_weight_on_every_record_and_the_setting_is_checked(tmp_path, capsys):
    data = write_jsonl(tmp_path / "prefs.jsonl", [
        {"prompt": f"p{i}", "chosen": "a", "rejected": "b", **({"weight": 1.0} if i != 2 else {})} for i in range(4)])
    err = _run_expecting_error(data, tmp_path, capsys, "--label_weighting", "reliability")
    assert err.startswith(f"error: {data}:3: field 'weight': missing"), err
    err = _run_expecting_error(data, tmp_path, capsys, "--label_weighting", "majority")
    assert "field 'label_weighting'" in err and "reliability" in err, err
    zero = write_jsonl(tmp_path / "zero.jsonl", [{"prompt": f"p{i}", "chosen": "a", "rejected": "b", "weight": 0}
                                                 for i in range(4)])
    err = _run_expecting_error(zero, tmp_path, capsys, "--label_weighting", "reliability")
    assert "field 'weight'" in err and "weight 0" in err, err


# ---------------------------------------------------------------- consensus


def _export_folder(folder, with_consensus: bool):
    folder.mkdir()
    rankings = [{"ranking_id": f"{i}-{who}", "prompt": f"p{i}", "answers": ["good", "bad"], "ended": [True, True],
                 "ranks": [1, 2], "reviewer": who, "weight": 1.0} for i in range(6) for who in ("ann", "bob")]
    write_jsonl(folder / "rankings.jsonl", rankings)
    if with_consensus:
        write_jsonl(folder / "consensus.jsonl", [
            {"ranking_id": f"c{i}", "prompt": f"p{i}", "answers": ["good", "bad", "ok"], "ended": [True] * 3,
             "ranks": [1, 3, 2], "reviewer": "consensus", "reviewers": ["ann", "bob"], "n_reviewers": 2}
            for i in range(5)])
    return folder


def _settings(data, label_weighting):
    script = RewardScriptArguments(data=str(data), label_weighting=label_weighting, eval_fraction=0.2)
    return script, SimpleNamespace(loss_type="pairwise", seed=0, eval_strategy="no")


def test_consensus_trains_on_the_exports_consensus_rankings(tmp_path):
    folder = _export_folder(tmp_path / "export", with_consensus=True)
    assert resolve_source(str(folder), tmp_path / "x").endswith("rankings.jsonl"), "the default is unchanged"
    assert resolve_source(str(folder), tmp_path / "x", consensus=True) == str(folder / "consensus.jsonl")
    train, test, info = load_data(*_settings(folder, "consensus"))
    assert info["data"] == str(folder / "consensus.jsonl") and info["label_weighting"] == "consensus"
    assert len(train) + len(test) == 5 and all(r.reviewer == "consensus" and len(r.answers) == 3 for r in train)
    # a file is used as it is
    _, _, info = load_data(*_settings(folder / "rankings.jsonl", "consensus"))
    assert info["data"] == str(folder / "rankings.jsonl") and info["data_stats"]["rankings"] == 12


def test_consensus_from_an_export_without_it_is_one_line_saying_to_re_export(tmp_path, capsys):
    folder = _export_folder(tmp_path / "export", with_consensus=False)
    err = _run_expecting_error(folder, tmp_path, capsys, "--label_weighting", "consensus")
    assert err.startswith(f"error: {folder}: ") and "consensus.jsonl" in err and "re-export" in err, err


# ---------------------------------------------------------------- python -m reward, end to end


def _reversed(record: dict) -> dict:
    if "answers" in record:
        return {**record, "ranks": [len(record["ranks"]) + 1 - r for r in record["ranks"]]}
    return {**record, "chosen": record["rejected"], "rejected": record["chosen"]}


def _clean_accuracy(final, records) -> float:
    """Pairwise accuracy of a published reward model on keyword-task records never trained on."""
    scorer = RewardScorer.load(final)
    wins = total = 0
    for rec in records:
        answers = rec["answers"] if "answers" in rec else [rec["chosen"], rec["rejected"]]
        ranks = rec["ranks"] if "answers" in rec else [1, 2]
        scores = scorer.score([rec["prompt"]] * len(answers), answers, raw=True)
        for i in range(len(answers)):
            for j in range(len(answers)):
                if ranks[i] < ranks[j]:
                    wins, total = wins + (scores[i] > scores[j]), total + 1
    return wins / total


def test_reliability_learns_from_trusted_reviewers_where_all_learns_from_everyone(tiny_llama, tmp_path):
    """Half the rankings are reversed copies from an unreliable reviewer (weight 0): with them left
    out the model learns the keyword; counted like the others, the two halves cancel out."""
    trusted = keyword_task(64)
    records = [{**r, "weight": 1.0} for r in trusted] + [{**_reversed(r), "weight": 0.0, "reviewer": "eve"}
                                                        for r in trusted]
    random.Random(0).shuffle(records)
    data = write_jsonl(tmp_path / "rankings.jsonl", records)
    fresh = keyword_task(30, seed=5)
    for r in fresh:
        r["prompt"] = "Fresh " + r["prompt"]
    finals = {mode: run_reward(tiny_llama, data, tmp_path / mode, "--label_weighting", mode,
                               "--normalization_samples", "16")
              for mode in ("reliability", "all")}
    accuracy = {mode: _clean_accuracy(final, fresh) for mode, final in finals.items()}
    metrics = {mode: json.loads((final / "metrics.json").read_text()) for mode, final in finals.items()}

    reliable, everyone = metrics["reliability"], metrics["all"]
    assert reliable["label_weighting"] == "reliability" and everyone["label_weighting"] == "all"
    assert reliable["data_stats"]["zero_weight_rankings"] == 64 == everyone["data_stats"]["zero_weight_rankings"]
    left_out = reliable["data_stats"]["zero_weight_rankings_left_out"]
    assert left_out == reliable["train_rankings"] and everyone["train_rankings"] == 2 * left_out
    assert everyone["data_stats"]["zero_weight_rankings_left_out"] == 0
    assert reliable["train_weights"]["min"] == 1.0 and everyone["train_weights"]["min"] == 1.0
    assert reliable["test"]["pairs"] == everyone["test"]["pairs"], "the same held-out set in both settings"

    assert accuracy["reliability"] >= 0.85, accuracy  # chance is 0.5
    assert accuracy["reliability"] > accuracy["all"], accuracy
    # Data that says both things equally often cannot be fitted better than chance, -log sigmoid(0) = log 2;
    # the trusted half alone can. (Where the `all` model's tiny leftover preference points is up to chance.)
    assert everyone["train_loss"] >= math.log(2) - 0.01, everyone["train_loss"]
    assert reliable["train_loss"] < everyone["train_loss"] - 0.05, (reliable["train_loss"], everyone["train_loss"])
