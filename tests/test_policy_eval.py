"""The summary every tuned policy is judged by: means over answers, standard errors over prompts."""

import math

import pytest

from ranktune.policy_eval import summarize


def row(prompt, sft_score, ppo_score, sft_gold, ppo_gold, kl=0.5):
    return {"prompt": prompt, "sft_answer": "a b", "ppo_answer": "a b c", "sft_ended": True, "ppo_ended": False,
            "sft_score": sft_score, "ppo_score": ppo_score, "sft_gold": sft_gold, "ppo_gold": ppo_gold, "ppo_kl": kl}


def test_summary_means_win_rate_and_prompt_level_standard_error():
    rows = [row("p1", 0.0, 1.0, 0.0, 2.0), row("p1", 1.0, 1.0, 0.0, 0.0),   # p1: gold gain 1.0
            row("p2", 0.0, -1.0, 1.0, 0.0), row("p2", 0.0, 2.0, 1.0, 1.0)]  # p2: gold gain -0.5
    m = summarize(rows, samples_per_prompt=2)
    assert m["prompts"] == 2 and m["samples_per_prompt"] == 2
    assert m["ppo_score"] == pytest.approx(0.75) and m["sft_score"] == pytest.approx(0.25)
    assert m["win_rate_vs_sft"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert m["ppo_gold"] - m["sft_gold"] == pytest.approx(0.25)
    # two prompt-level gains, 1.0 and -0.5: sample sd 1.0607, s.e. = sd / sqrt(2) = 0.75
    assert m["gold_gain_se"] == pytest.approx(0.75)
    assert m["ppo_ended"] == 0.0 and m["sft_ended"] == 1.0
    assert (m["sft_words"], m["ppo_words"]) == (2, 3)


def test_one_prompt_has_no_standard_error():
    assert math.isnan(summarize([row("p", 0, 1, 0, 1)])["gold_gain_se"])


def _compare(tiny_llama, perturb: float):
    """compare_policies on the tiny model against a copy whose weights are nudged by `perturb`."""
    import contextlib
    import copy

    import torch

    from ranktune.models import load_causal_lm
    from ranktune.policy_eval import compare_policies
    from ranktune.sampling import sampling_config

    policy, tokenizer = load_causal_lm(str(tiny_llama))
    start = copy.deepcopy(policy)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in start.parameters():
            p.add_(perturb * torch.randn(p.shape, generator=g))
    config = sampling_config(tokenizer, max_new_tokens=12, temperature=1.0)
    prompts = [f"Write about topic {i}." for i in range(6)]
    return compare_policies(policy, lambda: contextlib.nullcontext(start), tokenizer,
                            lambda ps, answers, ended: [float(len(a)) for a in answers], prompts, config,
                            temperature=1.0, batch_size=4, samples_per_prompt=2)


def test_both_policies_sample_from_common_random_numbers(tiny_llama):
    """The same policy as its own start answers identically, so the paired gain is exactly 0 with no
    spread (independent draws would differ on a random model sampled at temperature 1); a nearby start
    shares most of its answers, a distant one fewer."""
    metrics, rows = _compare(tiny_llama, 0.0)
    assert all(r["ppo_answer"] == r["sft_answer"] for r in rows) and len({r["ppo_answer"] for r in rows}) > 1
    assert metrics["ppo_score"] == metrics["sft_score"] and metrics["score_gain_se"] == 0.0
    assert all(abs(r["ppo_kl"]) < 1e-5 for r in rows)
    _, near = _compare(tiny_llama, 0.002)
    _, far = _compare(tiny_llama, 0.5)
    same = [sum(r["ppo_answer"] == r["sft_answer"] for r in rs) for rs in (near, far)]
    assert same[0] > len(near) // 2 and same[1] < same[0]
