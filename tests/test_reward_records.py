"""Preference data of every accepted shape -> rankings, and bad input -> one line and exit 2 from
`python -m reward`, before any model loads and without leaving a reward folder behind."""

import json
import subprocess
import sys

import pytest

from reward.records import read_rankings, resolve_source
from reward.train import main as reward_main


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_every_record_shape_becomes_a_ranking(tmp_path):
    exported = [  # labeling export pairs.jsonl of one ranking with ranks (1, 2, 2, 3): the tie made no pair
        {"prompt": "p4", "chosen": "A", "rejected": "B", "rank_distance": 1, "reviewer": "ann", "ranking_id": 7},
        {"prompt": "p4", "chosen": "A", "rejected": "C", "rank_distance": 1, "reviewer": "ann", "ranking_id": 7},
        {"prompt": "p4", "chosen": "A", "rejected": "D", "rank_distance": 2, "reviewer": "ann", "ranking_id": 7},
        {"prompt": "p4", "chosen": "B", "rejected": "D", "rank_distance": 1, "reviewer": "ann", "ranking_id": 7},
        {"prompt": "p4", "chosen": "C", "rejected": "D", "rank_distance": 1, "reviewer": "ann", "ranking_id": 7},
    ]
    data = write_jsonl(tmp_path / "mixed.jsonl", [
        {"prompt": "p1", "answers": ["a", "b", "c"], "ranks": [2, 1, 2], "reviewer": "bob", "ranking_id": "r1"},
        {"prompt": "p2", "chosen": "yes", "rejected": "no"},
        {"chosen": [{"role": "user", "content": "p3"}, {"role": "assistant", "content": "good"}],
         "rejected": [{"role": "user", "content": "p3"}, {"role": "assistant", "content": "bad"}]},
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: p5\n\nAssistant: fine answer",
         "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: p5\n\nAssistant: rude answer"},
        *exported,
    ])
    rankings, stats = read_rankings(str(data))
    by_key = {r.prompt_key: r for r in rankings}
    assert len(rankings) == 5 and stats.records == 9
    r1 = by_key["p1"]
    assert r1.pairs == [(1, 0, 1.0), (1, 2, 1.0)] and stats.tied_pairs == 1 and r1.reviewer == "bob"
    assert by_key["p2"].pairs == [(0, 1, 1.0)] and by_key["p2"].ranks == [1, 2]
    assert by_key["user: p3"].answers == ["good", "bad"]
    hh = next(r for r in rankings if "p5" in r.prompt_key)
    assert hh.prompt == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                         {"role": "user", "content": "p5"}]
    assert hh.answers == ["fine answer", "rude answer"]
    regrouped = by_key["p4"]  # the export's pairs put back together as one ranking
    assert regrouped.answers == ["A", "B", "C", "D"] and regrouped.ranks == [1, 2, 2, 3]
    assert len(regrouped.pairs) == 5 and regrouped.ranking_id == "7" and regrouped.reviewer == "ann"
    assert [d for *_, d in regrouped.pairs] == [1.0, 1.0, 2.0, 1.0, 1.0] and regrouped.margins is None
    assert stats.answers_per_ranking == {"3": 1, "2": 3, "4": 1}


def test_an_export_folder_means_its_rankings(tmp_path):
    (tmp_path / "export").mkdir()
    write_jsonl(tmp_path / "export" / "pairs.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert resolve_source(None, tmp_path / "export").endswith("pairs.jsonl")
    write_jsonl(tmp_path / "export" / "rankings.jsonl", [{"prompt": "p", "answers": ["a", "b"], "ranks": [1, 2]}])
    assert resolve_source(str(tmp_path / "export"), tmp_path / "x").endswith("rankings.jsonl")


GOOD = {"prompt": "p", "chosen": "a", "rejected": "b"}
BAD_INPUT = {  # name: (lines of the file, line and field the message must name, or None)
    "empty file": ([], None, None),
    "one-sided pair": ([GOOD, {"prompt": "q", "chosen": "a"}], 2, "rejected"),
    "empty rejected": ([{"prompt": "q", "chosen": "a", "rejected": "  "}], 1, "rejected"),
    "chosen == rejected": ([GOOD, GOOD, {"prompt": "q", "chosen": "same", "rejected": " same"}], 3, "rejected"),
    "missing prompt": ([{"chosen": "a", "rejected": "b"}], 1, "prompt"),
    "bad JSON": (['{"prompt": "p", "chosen": "a", "rejected": "b"', GOOD], 1, None),
    "ranks do not match answers": ([{"prompt": "p", "answers": ["a", "b"], "ranks": [1]}], 1, "ranks"),
    "ranks with a gap": ([{"prompt": "p", "answers": ["a", "b"], "ranks": [1, 3]}], 1, "ranks"),
    "empty answer the model did not end": (
        [{"prompt": "p", "answers": ["a", ""], "ranks": [1, 2], "ended": [True, False]}], 1, "answers[1]"),
    "empty answer, no ended": ([{"prompt": "p", "answers": ["", "b"], "ranks": [2, 1]}], 1, "answers[0]"),
    "HH transcript without its last turn": (
        [{"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "just b"}], 1, "rejected"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_naming_file_line_and_field(case, tmp_path, capsys):
    lines, line, field = BAD_INPUT[case]
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    with pytest.raises(SystemExit) as exit_info:
        reward_main(["--config", "configs/reward.yaml", "--data", str(data), "--runs_dir", str(tmp_path / "runs"),
                     "--run", "x", "--model_name_or_path", str(tmp_path / "no-model-needed")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {data}")
    if line is not None:
        assert err.startswith(f"error: {data}:{line}: ")
    if field is not None:
        assert f"field '{field}'" in err
    assert not (tmp_path / "runs" / "x" / "reward").exists()
    assert not (tmp_path / "runs" / "x" / "reward.work").exists()


def test_settings_the_data_cannot_support_are_one_line_errors(tmp_path, capsys):
    partial = write_jsonl(tmp_path / "partial.jsonl", [  # a > b > c without a > c: not a full order
        {"prompt": "p", "chosen": "a", "rejected": "b", "ranking_id": 1},
        {"prompt": "p", "chosen": "b", "rejected": "c", "ranking_id": 1},
        {"prompt": "q", "chosen": "a", "rejected": "b"}])
    ties = write_jsonl(tmp_path / "ties.jsonl", [{"prompt": f"p{i}", "answers": ["a", "b"], "ranks": [1, 1]}
                                                   for i in range(4)])
    for data, extra, expected in ((partial, ["--loss_type", "listwise"], "not a complete order"),
                                  (ties, [], "full tie"),
                                  (partial, ["--eval_fraction", "0", "--eval_strategy", "steps"], "eval_strategy"),
                                  (partial, ["--loss_type", "ranknet"], "loss_type")):
        with pytest.raises(SystemExit) as exit_info:
            reward_main(["--config", "configs/reward.yaml", "--data", str(data), "--runs_dir", str(tmp_path / "runs"),
                         "--run", "x", "--eval_fraction", "0.3",
                         "--model_name_or_path", str(tmp_path / "no-model-needed"), *extra])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and expected in err, err
    assert not (tmp_path / "runs" / "x" / "reward").exists()


def test_python_m_reward_on_bad_input_prints_no_traceback(tmp_path, repo_root):
    data = write_jsonl(tmp_path / "prefs.jsonl", [GOOD, {"prompt": "q", "chosen": "a", "rejected": "a"}])
    proc = subprocess.run(
        [sys.executable, "-m", "reward", "--config", str(repo_root / "configs" / "reward.yaml"), "--data", str(data),
         "--runs_dir", str(tmp_path / "runs"), "--run", "x"],
        cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {data}:2: field 'rejected': is the same text as 'chosen': "
                                   "a pair needs two different answers")
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "runs" / "x" / "reward").exists()


def test_answers_cut_off_by_the_generator_get_no_eos(tmp_path, tiny_llama):
    """The export says which answers the model ended itself; the reward model must see a cut-off
    answer without EOS, exactly as `RewardScorer` will show it the policy's cut-off answers in PPO."""
    from ranktune.models import load_tokenizer
    from ranktune.scoring import RewardScorer
    from reward.data import model_texts

    path = tmp_path / "rankings.jsonl"
    path.write_text(json.dumps({"prompt": "p", "answers": ["Done.", "And then"], "ranks": [1, 2],
                                "ended": [True, False]}) + "\n")
    (ranking,), _ = read_rankings(str(path))
    assert ranking.answer_ended() == [True, False]
    tokenizer = load_tokenizer(str(tiny_llama))
    texts = model_texts(tokenizer, ranking)
    assert texts[0].endswith("Done." + tokenizer.eos_token) and texts[1].endswith("And then")
    scorer = RewardScorer(model=torch_module_stub(), tokenizer=tokenizer)
    assert scorer.texts(["p", "p"], ["Done.", "And then"], [True, False]) == texts

    path.write_text(json.dumps({"prompt": "p", "answers": ["a", "b"], "ranks": [1, 2], "ended": [True]}) + "\n")
    with pytest.raises(SystemExit):
        reward_main(["--run", "x", "--runs_dir", str(tmp_path / "runs"), "--data", str(path)])


def torch_module_stub():
    import torch

    return torch.nn.Linear(1, 1)


def test_an_empty_answer_the_model_ended_is_a_ranked_answer(tmp_path, tiny_llama):
    """A policy that stops at once gives the labeling app an empty answer; the export keeps it with
    ended=true, and the reward stage must train on that ranking (it is usually the worst answer),
    not refuse the whole file."""
    from ranktune.models import load_tokenizer
    from reward.data import model_texts

    path = write_jsonl(tmp_path / "rankings.jsonl", [
        {"prompt": "p", "answers": ["Sure: 4.", ""], "ranks": [1, 2], "ended": [True, True]}])
    (ranking,), _ = read_rankings(str(path))
    assert ranking.answers[1] == "" and ranking.answer_ended() == [True, True]
    tokenizer = load_tokenizer(str(tiny_llama))
    texts = model_texts(tokenizer, ranking)
    assert texts[1].endswith(tokenizer.eos_token) and texts[0] != texts[1]
