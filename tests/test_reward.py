"""The reward stage on tiny random models: the losses against values worked out by hand, whole
rankings kept together in a batch, a split that never shares a prompt, and `python -m reward`
end to end (it learns, publishes a folder `RewardScorer.load` reads, normalises, resumes)."""

import json
import math
import random
import statistics

import pytest
import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ranktune.scoring import NORMALIZATION_FILE, RewardScorer
from reward.collator import RankingCollator
from reward.data import split_by_prompt, subsample, to_dataset, ungroup
from reward.evaluate import accuracy_cells, calibration_table, clustered_ratio, pair_metrics
from reward.losses import listwise_loss, pairwise_loss, plackett_luce_nll
from reward.records import Ranking, ranking_pairs
from reward.train import main as reward_main
from test_model_card import assert_model_card

# -log sigmoid(x) = log(1 + e^-x), written out so the expected values below can be checked by hand.
SP = {1.0: 0.3132616875182228, 2.0: 0.1269280110429725, -1.0: 1.3132616875182228}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ---------------------------------------------------------------- losses


def test_pairwise_loss_by_hand_each_ranking_counts_once():
    # ranking 0: answers r=(2, 1, 0), ranks (1, 2, 2): pairs 0>1 and 0>2, none between the tie.
    # ranking 1: r=(0.5, 1.5), the first one better (the model has it the wrong way round).
    rewards = torch.tensor([2.0, 1.0, 0.0, 0.5, 1.5])
    group = torch.tensor([0, 0, 0, 1, 1])
    better, worse = torch.tensor([0, 0, 3]), torch.tensor([1, 2, 4])
    expected = ((SP[1.0] + SP[2.0]) / 2 + SP[-1.0]) / 2  # mean over rankings of the mean over their pairs
    assert pairwise_loss(rewards, better, worse, group).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.7666782683994102)
    # margin = margin_scale * rank distance, subtracted from the score gap
    margin = 0.5 * torch.tensor([1.0, 1.0, 2.0])
    by_hand = ((math.log1p(math.exp(-0.5)) + math.log1p(math.exp(-1.5))) / 2 + math.log1p(math.exp(2.0))) / 2
    assert pairwise_loss(rewards, better, worse, group, margin).item() == pytest.approx(by_hand, abs=1e-6)


def test_pairwise_loss_of_a_batch_without_pairs_is_zero_but_differentiable():
    rewards = torch.tensor([1.0, 1.0], requires_grad=True)
    empty = torch.tensor([], dtype=torch.long)
    loss = pairwise_loss(rewards, empty, empty, torch.tensor([0, 0]))
    loss.backward()
    assert loss.item() == 0.0 and rewards.grad is not None


def test_listwise_loss_by_hand_plackett_luce():
    r = torch.tensor([2.0, 1.0, 0.0])
    # ranks 1,2,3: pick 0 from {0,1,2}, then 1 from {1,2}; the last pick is certain. Divided by K-1 = 2.
    first = -(2 - math.log(math.e**2 + math.e + 1))  # 0.407606
    second = -(1 - math.log(math.e + 1))  # 0.313262
    assert plackett_luce_nll(r, torch.tensor([1, 2, 3])).item() == pytest.approx((first + second) / 2, abs=1e-6)
    assert (first + second) / 2 == pytest.approx(0.36043382598130147)
    # ranks 1,2,2: the tie is one group chosen from {1,2} (Breslow): -(r1 + r2 - 2 logsumexp(r1, r2))
    tied = -((1 + 0) - 2 * math.log(math.e + 1))  # 1.626523
    assert plackett_luce_nll(r, torch.tensor([1, 2, 2])).item() == pytest.approx((first + tied) / 2, abs=1e-6)
    # the order of tied answers does not matter
    assert plackett_luce_nll(torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1, 2, 2])).item() == pytest.approx(
        (first + tied) / 2, abs=1e-6)


def test_listwise_loss_equals_pairwise_on_pairs_and_averages_rankings():
    rewards = torch.tensor([0.3, -0.4, 2.0, 1.0, 0.0])
    group, ranks = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([1, 2, 1, 2, 3])
    pair_only = listwise_loss(rewards[:2], ranks[:2], group[:2])
    assert pair_only.item() == pytest.approx(math.log1p(math.exp(-0.7)), abs=1e-6)  # -log sigmoid(0.3 + 0.4)
    both = listwise_loss(rewards, ranks, group)
    assert both.item() == pytest.approx((pair_only.item() + 0.36043382598130147) / 2, abs=1e-6)


def test_a_k_way_ranking_gives_all_pairs_and_a_tie_gives_none():
    answers = ["a", "b", "c", "d"]
    pairs, ties, identical = ranking_pairs(answers, [2, 1, 4, 3])
    assert len(pairs) == math.comb(4, 2) and (ties, identical) == (0, 0)
    assert sorted(pairs) == sorted([(1, 0, 1.0), (0, 2, 2.0), (0, 3, 1.0), (1, 2, 3.0), (1, 3, 2.0), (3, 2, 1.0)])
    pairs, ties, _ = ranking_pairs(answers, [1, 2, 2, 3])
    assert ties == 1 and len(pairs) == math.comb(4, 2) - 1
    assert (1, 2) not in {(i, j) for i, j, _ in pairs} and (2, 1) not in {(i, j) for i, j, _ in pairs}
    pairs, _, identical = ranking_pairs(["same", " same ", "x"], [1, 2, 3])
    assert identical == 1 and {(i, j) for i, j, _ in pairs} == {(0, 2), (1, 2)}


# ---------------------------------------------------------------- data and batches


def test_collator_keeps_each_ranking_whole_in_one_batch(tiny_llama):
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    rankings = [Ranking("p1", ["a", "bb", "ccc"], ranking_pairs(["a", "bb", "ccc"], [1, 2, 2])[0], [1, 2, 2]),
                Ranking("p2", ["x", "y"], [(0, 1, 1.0)], [1, 2])]
    ds, cut = to_dataset(rankings, tok, max_length=None)
    assert len(ds) == 2 and cut == 0
    batch = RankingCollator(pad_token_id=tok.pad_token_id)([ds[0], ds[1]])
    assert batch["input_ids"].shape[0] == 5
    assert batch["group"].tolist() == [0, 0, 0, 1, 1]
    assert batch["ranks"].tolist() == [1, 2, 2, 1, 2]
    assert list(zip(batch["better"].tolist(), batch["worse"].tolist())) == [(0, 1), (0, 2), (3, 4)]
    # right padding: every answer's last real token is its EOS, where the score is read
    for row, mask in zip(batch["input_ids"], batch["attention_mask"]):
        assert row[int(mask.sum()) - 1].item() == tok.eos_token_id
    # ungrouped, each pair is its own two-answer ranking
    assert [len(r.answers) for r in ungroup(rankings)] == [2, 2, 2]


def test_truncation_drops_the_start_of_the_prompt_never_the_answer(tiny_llama):
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    ranking = Ranking("hello world " * 40, ["thank you", "terrible"], [(0, 1, 1.0)], [1, 2])
    ds, cut = to_dataset([ranking], tok, max_length=16)
    assert cut == 2
    for ids, answer in zip(ds[0]["answer_ids"], ranking.answers):
        assert len(ids) == 16 and ids[-1] == tok.eos_token_id
        assert tok.decode(ids).endswith(answer + tok.eos_token)


def test_split_by_prompt_never_puts_a_prompt_on_both_sides():
    rng = random.Random(0)
    rankings = [Ranking(f"prompt {rng.randrange(40)}", ["a", "b"], [(0, 1, 1.0)], [1, 2]) for _ in range(300)]
    rankings += [Ranking([{"role": "user", "content": "prompt 3"}], ["a", "b"], [(0, 1, 1.0)], [1, 2])]
    train, test = split_by_prompt(rankings, 0.25, seed=7)
    train_keys, test_keys = {r.prompt_key for r in train}, {r.prompt_key for r in test}
    assert not train_keys & test_keys
    assert len(train) + len(test) == len(rankings)
    assert len(test_keys) == round(0.25 * len(train_keys | test_keys))
    again, _ = split_by_prompt(rankings, 0.25, seed=7)
    assert again == train, "seeded"
    assert subsample(train, 10, seed=1) == subsample(train, 10, seed=1) and len(subsample(train, 10, seed=1)) == 10


def test_calibration_counts_each_pair_both_ways():
    rows, ece = calibration_table([0.0, 0.0], bins=2)
    assert [r["count"] for r in rows] == [0, 4]  # sigmoid(0) = 0.5 falls in the upper bin, twice per pair
    assert rows[1]["observed"] == 0.5 and ece == pytest.approx(0.0)
    metrics = pair_metrics([Ranking("p", ["long answer", "short"], [(0, 1, 1.0)], [1, 2], reviewer="ann")],
                           [[1.0, 2.0]], bins=4)
    assert metrics["accuracy"] == 0.0 and metrics["length_baseline_accuracy"] == 1.0
    assert metrics["accuracy_by_reviewer"] == {"ann": {"pairs": 1, "accuracy": 0.0}}


def test_accuracy_cells_count_each_prompts_pairs_and_give_the_pair_accuracy():
    rankings = [Ranking("p1", ["a", "b", "c"], [(0, 1, 1.0), (0, 2, 2.0), (1, 2, 1.0)], [1, 2, 3]),
                Ranking("p2", ["x", "y"], [(0, 1, 1.0)], [1, 2]),
                Ranking("p1", ["d", "e"], [(1, 0, 1.0)], [2, 1]),
                Ranking("p3", ["s", "t"], [], [1, 1])]  # a tie: no pair, so no cluster
    scores = [[3.0, 1.0, 1.0], [0.0, 0.0], [2.0, 1.0]]
    cells = accuracy_cells(rankings, scores + [[0.0, 0.0]])
    assert cells == {"p1": [2.5, 4], "p2": [0.5, 1]}  # a tied score is half a win
    accuracy, se = clustered_ratio(cells)
    assert accuracy == pytest.approx(pair_metrics(rankings, scores + [[0.0, 0.0]])["accuracy"]) == 0.6
    assert se > 0


# ---------------------------------------------------------------- python -m reward, end to end

FILLER = "quick brown fox jumps over lazy dog sea rain clouds email manager world answer question".split()


def _answer(rng, keyword):
    words = rng.sample(FILLER, rng.randint(2, 6))
    words.insert(rng.randint(0, len(words)), keyword)
    return " ".join(words)


def keyword_task(n_prompts: int, seed: int = 0) -> list[dict]:
    """Better answers say 'thank you', worse ones 'terrible'; lengths are random, so length tells nothing.

    Long prompts (about 60 tokens) so that `--max_length 48` cuts them: what the model scores must
    be what the published folder scores.
    """
    rng = random.Random(seed)
    records = []
    for i in range(n_prompts):
        prompt = f"Question {i}: " + " ".join(rng.choices(FILLER, k=30))
        reviewer = rng.choice(["ann", "bob"])
        if i % 2:
            records.append({"prompt": prompt, "chosen": _answer(rng, "thank you"),
                            "rejected": _answer(rng, "terrible"), "reviewer": reviewer})
        else:  # a 3-way ranking: keyword > neutral > the bad word, shuffled
            answers = [_answer(rng, "thank you"), _answer(rng, "hello"), _answer(rng, "terrible")]
            order = rng.sample(range(3), 3)
            records.append({"prompt": prompt, "answers": [answers[k] for k in order],
                            "ranks": [k + 1 for k in order], "reviewer": reviewer})
    return records


def run_reward(model_dir, data, runs_dir, *extra, run="t"):
    return reward_main([
        "--config", "configs/reward.yaml", "--model_name_or_path", str(model_dir), "--data", str(data),
        "--runs_dir", str(runs_dir), "--run", run, "--learning_rate", "1e-3", "--num_train_epochs", "3",
        "--eval_fraction", "0.25", "--max_length", "48", "--per_device_train_batch_size", "8",
        "--gradient_accumulation_steps", "1",
        "--save_steps", "1000", "--disable_tqdm", "true", "--seed", "0", *extra,
    ])


def sft_style_answers(n: int) -> list[dict]:
    """`n` prompt + completion records unlike the training rankings' prompts, to normalise on (seeded)."""
    rng = random.Random(1)
    return [{"prompt": f"Another question {i}: " + " ".join(rng.choices(FILLER, k=30)),
             "completion": _answer(rng, rng.choice(["thank you", "hello", "terrible"]))} for i in range(n)]


@pytest.fixture(scope="module")
def trained(tiny_llama, tmp_path_factory):
    """One pairwise run on the keyword task, with separate SFT-style answers to normalise on."""
    tmp = tmp_path_factory.mktemp("reward")
    data = write_jsonl(tmp / "rankings.jsonl", keyword_task(96))
    sft_answers = sft_style_answers(60)
    norm = write_jsonl(tmp / "sft_answers.jsonl", sft_answers)
    final = run_reward(tiny_llama, data, tmp / "runs", "--normalization_data", str(norm))
    return final, sft_answers


def test_reward_model_learns_the_keyword_and_reports_held_out_metrics(trained):
    final, _ = trained
    assert final.name == "reward" and not final.with_name("reward.work").exists()
    metrics = json.loads((final / "metrics.json").read_text())
    test = metrics["test"]
    assert test["pairs"] >= 40
    assert test["accuracy"] >= 0.9, test  # chance is 0.5
    assert abs(test["length_baseline_accuracy"] - 0.5) < 0.2, "the task is not about length"
    assert set(test["accuracy_by_rank_distance"]) == {"1", "2"}
    assert set(test["accuracy_by_reviewer"]) == {"ann", "bob"}
    assert len(test["calibration"]) == 10 and 0 <= test["expected_calibration_error"] <= 1
    assert metrics["train_answers_cut_to_max_length"] > 0
    assert metrics["data_stats"]["rankings"] == 96 and metrics["train_prompts"] + metrics["test_prompts"] == 96
    for png in ("training.png", "calibration.png"):
        assert (final / png).stat().st_size > 1000
    assert "96 rows" in assert_model_card(final, "reward")  # README.md: base model, data and held-out metrics


def test_published_folder_scores_sft_answers_at_mean_0_std_1(trained):
    final, sft_answers = trained
    model = AutoModelForSequenceClassification.from_pretrained(final)  # plain transformers
    tok = AutoTokenizer.from_pretrained(final)
    assert model.config.num_labels == 1 and tok.pad_token_id != tok.eos_token_id
    assert model.config.pad_token_id == tok.pad_token_id
    stored = json.loads((final / NORMALIZATION_FILE).read_text())
    assert stored["samples"] == len(sft_answers) and stored["max_length"] == 48

    scorer = RewardScorer.load(final)
    assert scorer.max_length == 48, "scores at the length it was trained and normalised at"
    scores = scorer.score([r["prompt"] for r in sft_answers], [r["completion"] for r in sft_answers], batch_size=7)
    assert statistics.fmean(scores) == pytest.approx(0.0, abs=1e-3)
    assert statistics.pstdev(scores) == pytest.approx(1.0, abs=1e-3)
    good, bad = scorer.score(["Question: hi"] * 2, ["quick fox thank you", "quick fox terrible"])
    assert good > bad
    raw = scorer.score(["Question: hi"], ["quick fox thank you"], raw=True)[0]
    assert good == pytest.approx(stored["gain"] * raw + stored["bias"], abs=1e-5)


def test_listwise_with_lora_on_gpt2_publishes_a_plain_model(tiny_gpt2, tmp_path):
    data = write_jsonl(tmp_path / "rankings.jsonl", keyword_task(24))
    final = run_reward(tiny_gpt2, data, tmp_path / "runs", "--loss_type", "listwise", "--num_train_epochs", "1",
                       "--use_peft", "true", "--lora_r", "4", "--lora_target_modules", "c_attn",
                       "--normalization_samples", "16")
    assert not (final / "adapter_config.json").exists(), "the LoRA adapter is merged into a plain model"
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["loss_type"] == "listwise" and metrics["normalization"]["samples"] == 16
    scorer = RewardScorer.load(final)
    assert scorer.tokenizer.pad_token not in (None, scorer.tokenizer.eos_token)
    assert len(scorer.score(["q"], ["a"])) == 1


def test_lora_on_the_top_layer_trains_nothing_below_it_and_still_learns(tiny_llama, tmp_path):
    from safetensors.torch import load_file

    data = write_jsonl(tmp_path / "rankings.jsonl", keyword_task(96))
    final = run_reward(tiny_llama, data, tmp_path / "runs", "--use_peft", "true", "--lora_r", "8",
                       "--lora_alpha", "16", "--lora_target_modules", "all-linear", "--lora_top_layers", "1",
                       "--learning_rate", "3e-3", "--normalization_samples", "16")
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["lora_top_layers"] == 1
    assert metrics["test"]["accuracy"] >= 0.8, metrics["test"]  # chance is 0.5
    published, base = load_file(final / "model.safetensors"), load_file(tiny_llama / "model.safetensors")
    changed = {name for name, tensor in base.items()
               if name in published and not torch.equal(published[name], tensor)}
    assert changed and all(name.startswith("model.layers.1.") for name in changed), changed  # of layers 0 and 1


def test_a_rerun_with_the_same_seed_is_the_same_run(tiny_llama, tmp_path):
    """The new score head is initialised randomly: seeded, two runs publish the same weights."""
    from safetensors.torch import load_file

    data = write_jsonl(tmp_path / "rankings.jsonl", keyword_task(16))
    runs = [run_reward(tiny_llama, data, tmp_path / name, "--num_train_epochs", "1", "--normalization_samples", "8")
            for name in ("a", "b")]
    first, second = (load_file(final / "model.safetensors") for final in runs)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_resume_after_a_crash_reaches_the_same_step_count(tiny_llama, tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "rankings.jsonl", keyword_task(24))
    args = ("--num_train_epochs", "2", "--per_device_train_batch_size", "4", "--save_steps", "2",
            "--normalization_samples", "8")
    full = run_reward(tiny_llama, data, tmp_path / "full", *args)
    expected_steps = json.loads((full / "metrics.json").read_text())["global_step"]
    assert expected_steps == 2 * math.ceil(18 / 4)  # 18 training prompts (25% of 24 held out)

    original = transformers.Trainer.training_step

    def crash_at_step_3(self, *a, **kw):
        if self.state.global_step == 3:
            raise KeyboardInterrupt("simulated crash")
        return original(self, *a, **kw)

    monkeypatch.setattr(transformers.Trainer, "training_step", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        run_reward(tiny_llama, data, tmp_path / "runs", *args)
    run = tmp_path / "runs" / "t"
    assert (run / "reward.work" / "checkpoint-2").is_dir()
    assert not (run / "reward").exists(), "no reward model after a crash"
    steps_run = []

    def count_steps(self, *a, **kw):
        steps_run.append(self.state.global_step)
        return original(self, *a, **kw)

    monkeypatch.setattr(transformers.Trainer, "training_step", count_steps)
    final = run_reward(tiny_llama, data, tmp_path / "runs", *args, "--resume", "true")
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["global_step"] == expected_steps
    assert steps_run[0] == 2 and len(steps_run) == expected_steps - 2, "went on from checkpoint-2"
