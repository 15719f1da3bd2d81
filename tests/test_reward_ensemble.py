"""Ensemble reward models (`python -m reward --ensemble_size N`): N score-head rows on one shared base,
each member trained on its own bootstrap weighting of the rankings. Members differ after training,
their spread is zero when they agree, the aggregations order as they should, a resumed run is the
uninterrupted one member by member, N = 1 is the single model it always was, and the server returns
the spread."""

import json
import statistics

import httpx
import pytest
import torch
import transformers

from ranktune.aggregation import aggregate
from ranktune.errors import InputError
from ranktune.models import load_sequence_classifier, load_tokenizer
from ranktune.remote_scoring import RemoteRewardScorer
from ranktune.scoring import NORMALIZATION_FILE, RewardScorer, read_member_normalization, read_normalization_settings
from reward.data import bootstrap_counts, to_dataset
from reward.losses import ensemble_loss, pairwise_loss
from reward.records import Ranking
from reward.trainer import RankingRewardConfig
from test_reward import keyword_task, run_reward, sft_style_answers, write_jsonl
from test_reward_serve import ANSWERS, ENDED, PROMPTS, serving

MEMBER_NORMS = [{"gain": 1.0, "bias": 0.0}, {"gain": 2.0, "bias": -0.5}, {"gain": 0.5, "bias": 0.25}]


def _ranking(i: int) -> Ranking:
    return Ranking(f"prompt {i}", [f"good {i}", f"bad {i}"], [(0, 1, 1.0)], [1, 2], "ann", f"r{i}")


# ---------------------------------------------------------------- bootstrap weights and the loss

def test_bootstrap_counts_are_poisson_1_and_depend_only_on_the_seed_and_the_ranking():
    rankings = [_ranking(i) for i in range(400)]
    counts = [bootstrap_counts(r, 4, seed=0) for r in rankings]
    assert counts == [bootstrap_counts(r, 4, seed=0) for r in rankings], "a rerun draws the same counts"
    assert counts[::-1] == [bootstrap_counts(r, 4, seed=0) for r in rankings[::-1]], "whatever the order"
    assert counts != [bootstrap_counts(r, 4, seed=1) for r in rankings], "another seed, another sample"
    flat = [c for row in counts for c in row]
    assert all(isinstance(c, int) and c >= 0 for c in flat)
    assert statistics.fmean(flat) == pytest.approx(1.0, abs=0.1)  # Poisson(1): mean 1, variance 1
    assert statistics.pvariance(flat) == pytest.approx(1.0, abs=0.15)
    assert 0.30 < flat.count(0) / len(flat) < 0.44  # P(0) = e^-1 = 0.37
    assert len({tuple(row) for row in counts}) > 50, "members get different samples"


def test_only_an_ensembles_dataset_has_a_bootstrap_column(tiny_llama):
    tok = load_tokenizer(str(tiny_llama))
    rankings = [_ranking(i) for i in range(6)]
    single, _ = to_dataset(rankings, tok, 32)
    assert "bootstrap" not in single.column_names
    ensemble, _ = to_dataset(rankings, tok, 32, ensemble_size=3, seed=5)
    assert ensemble["bootstrap"] == [bootstrap_counts(r, 3, 5) for r in rankings]
    assert ensemble.remove_columns("bootstrap").to_list() == single.to_list()


def test_ensemble_loss_is_the_mean_of_each_members_bootstrap_weighted_loss():
    torch.manual_seed(0)
    group = torch.tensor([0, 0, 1, 1, 2, 2])
    better, worse = torch.tensor([0, 2, 4]), torch.tensor([1, 3, 5])
    weights = torch.tensor([1.0, 0.5, 2.0])

    def loss_of(rewards, w):
        return pairwise_loss(rewards, better, worse, group, None, w)

    logits = torch.randn(6, 3)
    bootstrap = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0], [1.0, 3.0, 0.0]])
    got = ensemble_loss(logits, weights, bootstrap, loss_of)
    by_hand = sum(loss_of(logits[:, m], weights * bootstrap[:, m]) for m in range(3)) / 3
    assert got.item() == pytest.approx(by_hand.item(), rel=1e-6)
    # member 0 never sees ranking 1: its loss is that of rankings 0 and 2 alone
    alone = pairwise_loss(logits[[0, 1, 4, 5], 0], torch.tensor([0, 2]), torch.tensor([1, 3]),
                          torch.tensor([0, 0, 1, 1]), None, torch.tensor([1.0, 2.0]))
    assert loss_of(logits[:, 0], weights * bootstrap[:, 0]).item() == pytest.approx(alone.item(), rel=1e-6)
    same = logits[:, :1].repeat(1, 3)
    assert ensemble_loss(same, weights, torch.ones(3, 3), loss_of).item() == pytest.approx(
        loss_of(same[:, 0], weights).item(), rel=1e-6)
    one = logits[:, :1]
    assert torch.equal(ensemble_loss(one, weights, bootstrap, loss_of), loss_of(one[:, 0], weights)), \
        "one member: exactly the single model's loss, no bootstrap"


def test_an_ensemble_size_below_1_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(ValueError, match="ensemble_size must be a whole number of at least 1, got 0"):
        RankingRewardConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, ensemble_size=0)
    data = write_jsonl(tmp_path / "r.jsonl", keyword_task(8))
    with pytest.raises(SystemExit) as err:
        run_reward("unused-model", data, tmp_path / "runs", "--ensemble_size", "0")
    assert err.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and "ensemble_size must be" in message and "\n" not in message


# ---------------------------------------------------------------- scoring an ensemble folder

@pytest.fixture(scope="module")
def random_ensemble(tiny_llama, tmp_path_factory):
    """A 3-member classifier over the tiny policy with its own random head rows and per-member normalisation."""
    folder = tmp_path_factory.mktemp("tiny-ensemble")
    torch.manual_seed(3)
    model, tokenizer = load_sequence_classifier(str(tiny_llama), num_labels=3)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / NORMALIZATION_FILE).write_text(json.dumps({"gain": 1.5, "bias": 0.1, "max_length": 64,
                                                         "members": MEMBER_NORMS}))
    return folder


def test_an_ensemble_folder_loads_with_its_members_and_their_normalisation(random_ensemble, tiny_llama):
    scorer = RewardScorer.load(random_ensemble)
    assert scorer.members == 3 and scorer.model.config.num_labels == 3
    assert read_normalization_settings(random_ensemble) == (1.5, 0.1, 64)
    assert read_member_normalization(random_ensemble) == [(m["gain"], m["bias"]) for m in MEMBER_NORMS]
    raw = scorer.score_members(PROMPTS, ANSWERS, ENDED, batch_size=3, raw=True)
    members = scorer.score_members(PROMPTS, ANSWERS, ENDED, batch_size=3)
    assert raw.shape == members.shape == (len(ANSWERS), 3)
    gains = torch.tensor([m["gain"] for m in MEMBER_NORMS])
    biases = torch.tensor([m["bias"] for m in MEMBER_NORMS])
    assert torch.allclose(members, gains * raw + biases, atol=1e-6), "each member with its own gain and bias"
    assert scorer.score(PROMPTS, ANSWERS, ENDED) == pytest.approx(members.mean(-1).tolist(), abs=1e-5)
    assert scorer.score(PROMPTS, ANSWERS, ENDED, raw=True) == pytest.approx(raw.mean(-1).tolist(), abs=1e-5)
    with pytest.raises(InputError, match="3 output"):
        load_sequence_classifier(str(random_ensemble), num_labels=1)
    model, _ = load_sequence_classifier(str(tiny_llama), num_labels=4)
    assert model.config.num_labels == 4 and model.score.weight.shape[0] == 4


def test_aggregations_order_where_members_disagree(random_ensemble):
    scorer = RewardScorer.load(random_ensemble)
    mean, spreads = scorer.score_with_spread(PROMPTS, ANSWERS, ENDED)
    assert min(spreads) > 1e-4, "random heads disagree on every answer"
    assert spreads == pytest.approx(scorer.spread(PROMPTS, ANSWERS, ENDED), abs=1e-6)
    careful = scorer.score(PROMPTS, ANSWERS, ENDED, aggregation="mean_minus_std")
    worst = scorer.score(PROMPTS, ANSWERS, ENDED, aggregation="min")
    assert all(c < m for c, m in zip(careful, mean)), "penalised by the disagreement"
    assert all(w <= m for w, m in zip(worst, mean))
    twice = scorer.score(PROMPTS, ANSWERS, ENDED, aggregation="mean_minus_std", uncertainty_coef=2.0)
    assert twice == pytest.approx([m - 2 * s for m, s in zip(mean, spreads)], abs=1e-5)
    assert scorer.score(PROMPTS, ANSWERS, ENDED, aggregation="mean_minus_std", uncertainty_coef=0.0) == \
        pytest.approx(mean, abs=1e-6)
    with pytest.raises(InputError, match="must be one of"):
        scorer.score(PROMPTS, ANSWERS, ENDED, aggregation="max")


def test_identical_members_have_zero_spread_and_their_mean_is_each_member(random_ensemble):
    scorer = RewardScorer.load(random_ensemble)
    with torch.no_grad():
        scorer.model.score.weight.copy_(scorer.model.score.weight[:1].repeat(3, 1))  # every row is member 0
    scorer.member_gains, scorer.member_biases = [2.0] * 3, [-0.5] * 3
    members = scorer.score_members(PROMPTS, ANSWERS, ENDED)
    assert torch.equal(members, members[:, :1].repeat(1, 3))
    mean, spreads = scorer.score_with_spread(PROMPTS, ANSWERS, ENDED)
    assert spreads == [0.0] * len(ANSWERS)
    assert mean == pytest.approx(members[:, 0].tolist(), abs=1e-6)
    assert scorer.score(PROMPTS, ANSWERS, ENDED, aggregation="mean_minus_std", uncertainty_coef=5.0) == mean
    assert scorer.score(PROMPTS, ANSWERS, ENDED, aggregation="min") == pytest.approx(mean, abs=1e-6)


# ---------------------------------------------------------------- python -m reward --ensemble_size 3

@pytest.fixture(scope="module")
def trained_ensemble(tiny_llama, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reward-ensemble")
    data = write_jsonl(tmp / "rankings.jsonl", keyword_task(64))
    sft = sft_style_answers(40)
    norm = write_jsonl(tmp / "sft_answers.jsonl", sft)
    final = run_reward(tiny_llama, data, tmp / "runs", "--ensemble_size", "3", "--normalization_data", str(norm))
    return final, sft, keyword_task(64)


def test_an_ensemble_trains_members_that_differ_and_reports_each(trained_ensemble):
    final, _, records = trained_ensemble
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["ensemble_size"] == 3
    members = metrics["test_members"]
    assert [m["member"] for m in members] == [0, 1, 2]
    assert all(m["pairs"] == metrics["test"]["pairs"] > 0 for m in members)
    assert all(0.5 < m["accuracy"] <= 1 and 0 <= m["expected_calibration_error"] <= 1 for m in members)
    assert metrics["test"]["accuracy"] >= 0.8, metrics["test"]  # the members' mean, as for one model
    card = (final / "README.md").read_text()
    assert "ensemble of 3 members" in card

    scorer = RewardScorer.load(final)
    assert scorer.members == 3
    held_out = [r for r in records if "answers" in r][:10]
    prompts = [r["prompt"] for r in held_out for _ in r["answers"]]
    answers = [a for r in held_out for a in r["answers"]]
    raw = scorer.score_members(prompts, answers, raw=True)
    for a in range(3):
        for b in range(a + 1, 3):
            assert (raw[:, a] - raw[:, b]).abs().max() > 1e-3, f"members {a} and {b} score alike"
    good, bad = scorer.score(["Question: hi"] * 2, ["quick fox thank you", "quick fox terrible"])
    assert good > bad


def test_an_ensembles_normalisation_fits_each_member_and_their_raw_mean(trained_ensemble):
    final, sft, _ = trained_ensemble
    stored = json.loads((final / NORMALIZATION_FILE).read_text())
    assert len(stored["members"]) == 3 and stored["samples"] == len(sft)
    scorer = RewardScorer.load(final)
    prompts, answers = [r["prompt"] for r in sft], [r["completion"] for r in sft]
    members = scorer.score_members(prompts, answers, batch_size=7)
    for m in range(3):
        assert statistics.fmean(members[:, m].tolist()) == pytest.approx(0.0, abs=1e-3)
        assert statistics.pstdev(members[:, m].tolist()) == pytest.approx(1.0, abs=1e-3)
    top = [stored["gain"] * x + stored["bias"] for x in scorer.score(prompts, answers, raw=True)]
    assert statistics.fmean(top) == pytest.approx(0.0, abs=1e-3), "an older reader's gain * raw mean + bias"
    assert statistics.pstdev(top) == pytest.approx(1.0, abs=1e-3)
    assert scorer.gain != pytest.approx(stored["members"][0]["gain"])  # the top level is not member 0's


def test_one_member_is_the_single_model_it_always_was(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "rankings.jsonl", keyword_task(16))
    final = run_reward(tiny_llama, data, tmp_path / "runs", "--num_train_epochs", "1", "--normalization_samples", "8")
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["ensemble_size"] == 1 and "test_members" not in metrics
    assert "members" not in json.loads((final / NORMALIZATION_FILE).read_text())
    assert read_member_normalization(final) is None
    assert "ensemble" not in (final / "README.md").read_text()
    scorer = RewardScorer.load(final)
    assert scorer.members == 1 and scorer.model.config.num_labels == 1
    scores = scorer.score(PROMPTS, ANSWERS, ENDED)
    raw = scorer.score(PROMPTS, ANSWERS, ENDED, raw=True)
    assert scores == (scorer.gain * torch.tensor(raw) + scorer.bias).tolist(), "gain * raw + bias, as ever"
    for how in ("min", "mean_minus_std"):
        assert scorer.score(PROMPTS, ANSWERS, ENDED, aggregation=how) == scores, "one model: every aggregation"
    members = scorer.score_members(PROMPTS, ANSWERS, ENDED)
    assert members.shape == (len(ANSWERS), 1) and members[:, 0].tolist() == scores
    assert scorer.score_with_spread(PROMPTS, ANSWERS, ENDED) == (scores, [0.0] * len(ANSWERS))


def test_a_resumed_ensemble_is_the_uninterrupted_one_member_by_member(tiny_llama, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    data = write_jsonl(tmp_path / "rankings.jsonl", keyword_task(24))
    args = ("--ensemble_size", "2", "--num_train_epochs", "2", "--per_device_train_batch_size", "4",
            "--save_steps", "2", "--normalization_samples", "8")
    full = run_reward(tiny_llama, data, tmp_path / "full", *args)

    original = transformers.Trainer.training_step

    def crash_at_step_3(self, *a, **kw):
        if self.state.global_step == 3:
            raise KeyboardInterrupt("simulated crash")
        return original(self, *a, **kw)

    monkeypatch.setattr(transformers.Trainer, "training_step", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        run_reward(tiny_llama, data, tmp_path / "runs", *args)
    assert (tmp_path / "runs" / "t" / "reward.work" / "checkpoint-2").is_dir()
    monkeypatch.setattr(transformers.Trainer, "training_step", original)
    resumed = run_reward(tiny_llama, data, tmp_path / "runs", *args, "--resume", "true")

    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a["score.weight"].shape[0] == 2
    assert not torch.allclose(a["score.weight"][0], a["score.weight"][1]), "two different members"
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name
    untrained = load_file(tiny_llama / "model.safetensors")
    shared = next(name for name in a if name in untrained and name != "score.weight")
    assert not torch.equal(a[shared], untrained[shared]), "the run trained the base (a real comparison)"
    first, second = RewardScorer.load(full), RewardScorer.load(resumed)
    assert torch.allclose(first.score_members(PROMPTS, ANSWERS, ENDED), second.score_members(PROMPTS, ANSWERS, ENDED),
                          atol=1e-5)
    norms = [json.loads((f / NORMALIZATION_FILE).read_text())["members"] for f in (full, resumed)]
    assert [m["gain"] for m in norms[0]] == pytest.approx([m["gain"] for m in norms[1]], rel=1e-4)


# ---------------------------------------------------------------- served

def test_a_served_ensemble_returns_the_spread_and_takes_an_aggregation(random_ensemble):
    local = RewardScorer.load(random_ensemble)
    token = "ens-token"
    with serving(RewardScorer.load(random_ensemble), random_ensemble, token=token, max_batch=4) as url:
        health = httpx.get(f"{url}/health").json()
        assert health["spread"] is True and health["members"] == 3
        auth = {"Authorization": f"Bearer {token}"}
        body = {"prompts": PROMPTS, "answers": ANSWERS, "ended": ENDED}
        answer = httpx.post(f"{url}/v1/score", json={**body, "prompts": PROMPTS[:4], "answers": ANSWERS[:4],
                                                      "ended": ENDED[:4]}, headers=auth).json()
        expected, spreads = local.score_with_spread(PROMPTS, ANSWERS, ENDED)
        assert answer["scores"] == pytest.approx(expected[:4], abs=1e-5)
        assert answer["spread"] == pytest.approx(spreads[:4], abs=1e-5) and min(answer["spread"]) > 0
        empty = httpx.post(f"{url}/v1/score", json={"prompts": [], "answers": []}, headers=auth).json()
        assert empty == {"scores": [], "spread": []}
        for bad, message in (({"aggregation": "max"}, "'aggregation' must be one of mean, min, mean_minus_std"),
                             ({"aggregation": 3}, "'aggregation' must be one of"),
                             ({"aggregation": "mean_minus_std", "uncertainty_coef": -1}, "'uncertainty_coef' must"),
                             ({"uncertainty_coef": "high"}, "'uncertainty_coef' must")):
            response = httpx.post(f"{url}/v1/score", json={**body, "prompts": ["p"], "answers": ["a"], "ended": [True],
                                                           **bad}, headers=auth)
            assert response.status_code == 400 and message in response.json()["error"], response.text
            assert "\n" not in response.json()["error"]

        with RemoteRewardScorer.load(url, token) as remote:
            assert remote.members == 3
            got, got_spread = remote.score_with_spread(PROMPTS, ANSWERS, ENDED)  # two chunks of max_batch 4
            assert got == pytest.approx(expected, abs=1e-5) and got_spread == pytest.approx(spreads, abs=1e-5)
            careful = remote.score(PROMPTS, ANSWERS, ENDED, aggregation="mean_minus_std", uncertainty_coef=0.5)
            assert careful == pytest.approx(local.score(PROMPTS, ANSWERS, ENDED, aggregation="mean_minus_std",
                                                        uncertainty_coef=0.5), abs=1e-5)
            assert all(c < m for c, m in zip(careful, got))
            worst = remote.score(PROMPTS, ANSWERS, ENDED, aggregation="min")
            assert worst == pytest.approx(aggregate(local.score_members(PROMPTS, ANSWERS, ENDED), "min").tolist(),
                                          abs=1e-5)
            assert remote.score(PROMPTS, ANSWERS, ENDED, raw=True) == pytest.approx(
                local.score(PROMPTS, ANSWERS, ENDED, raw=True), abs=1e-5)
