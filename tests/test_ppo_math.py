"""PPO's arithmetic against hand-computed cases."""

import math

import pytest
import torch

from rlhf import ppo_math as M
from ranktune.sampling import response_mask


def test_response_mask_stops_after_first_eos():
    eos, pad = 9, 0
    responses = torch.tensor([[5, 6, eos, pad, pad],
                              [5, 6, 7, 8, 4],      # never ends
                              [eos, pad, pad, pad, pad]])
    mask, ended = response_mask(responses, eos)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert ended.tolist() == [True, False, True]


def test_kl_estimators():
    logp = torch.tensor([[math.log(0.5), math.log(0.2)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.4)]])
    k1 = M.kl_per_token(logp, ref, "k1")
    k3 = M.kl_per_token(logp, ref, "k3")
    assert k1[0].tolist() == pytest.approx([math.log(2), math.log(0.5)])
    # k3 = (q/p - 1) - log(q/p)
    assert k3[0].tolist() == pytest.approx([(0.5 - 1) - math.log(0.5), (2 - 1) - math.log(2)])
    assert (k3 >= 0).all()  # k3 is never negative, k1 can be
    with pytest.raises(ValueError):
        M.kl_per_token(logp, ref, "k2")


def test_k1_and_k3_are_unbiased_estimates_of_the_true_kl():
    torch.manual_seed(0)
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.5, 0.3])
    true_kl = float((p * (p / q).log()).sum())
    draws = torch.multinomial(p, 200_000, replacement=True)
    logp, logq = p.log()[draws], q.log()[draws]
    assert M.kl_per_token(logp, logq, "k1").mean().item() == pytest.approx(true_kl, abs=0.01)
    assert M.kl_per_token(logp, logq, "k3").mean().item() == pytest.approx(true_kl, abs=0.01)


def test_shaped_rewards_put_the_score_on_the_last_real_token():
    scores = torch.tensor([1.0, 2.0])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    rewards, non_score = M.shaped_rewards(scores, kl, mask, kl_coef=0.5)
    assert non_score.flatten().tolist() == pytest.approx([-0.05, -0.1, 0.0, -0.25, -0.25, -0.25])
    assert rewards.flatten().tolist() == pytest.approx([-0.05, 0.9, 0.0, -0.25, -0.25, 1.75])


def test_gae_matches_a_hand_computed_case():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 5.0]])  # the 5.0 is padding and must be ignored
    values = torch.tensor([[0.5, 0.2, 0.4, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    gamma, lam = 0.9, 0.8
    adv, ret = M.gae(rewards, values, mask, gamma, lam)
    # by hand, with the state after the last real token terminal (value 0):
    d2 = 1.0 + 0.0 - 0.4
    d1 = 0.0 + gamma * 0.4 - 0.2
    d0 = 0.0 + gamma * 0.2 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, a2, 0.0])
    assert ret[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.2, a2 + 0.4, 0.0])


def test_gae_with_gamma_and_lambda_one_is_return_minus_value():
    rewards = torch.tensor([[0.1, -0.2, 0.3]])
    values = torch.tensor([[1.0, 2.0, 3.0]])
    mask = torch.ones(1, 3, dtype=torch.long)
    adv, ret = M.gae(rewards, values, mask, 1.0, 1.0)
    assert ret[0].tolist() == pytest.approx([0.2, 0.1, 0.3])  # reward-to-go
    assert adv[0].tolist() == pytest.approx([0.2 - 1.0, 0.1 - 2.0, 0.3 - 3.0])


def test_masked_whiten_ignores_padding():
    x = torch.tensor([[1.0, 3.0, 8.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    std = math.sqrt(((1 - 4) ** 2 + (3 - 4) ** 2 + (8 - 4) ** 2) / 2)  # unbiased, of 1, 3, 8: sqrt(13), not 1
    w = M.masked_whiten(x, mask)
    assert w[0, :3].tolist() == pytest.approx([-3 / std, -1 / std, 4 / std], abs=1e-4)
    assert w[0, 3].item() == 0.0
    kept = M.masked_whiten(x, mask, shift_mean=False)
    assert kept[0, :3].tolist() == pytest.approx([4 - 3 / std, 4 - 1 / std, 4 + 4 / std], abs=1e-4)


def test_policy_loss_clips_the_ratio():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5
    mask = torch.ones(1, 2)
    # positive advantage: the gain from raising the ratio stops at 1 + eps
    loss, stats = M.policy_loss(new, old, torch.tensor([[1.0, 1.0]]), mask, cliprange=0.2)
    assert loss.item() == pytest.approx(-(1.2 + 0.5) / 2)
    assert stats["clipfrac"].item() == pytest.approx(0.5)
    # negative advantage: the pessimistic (larger) loss is kept
    loss, _ = M.policy_loss(new, old, torch.tensor([[-1.0, -1.0]]), mask, cliprange=0.2)
    assert loss.item() == pytest.approx((1.5 + 0.8) / 2)
    # clipped tokens give no gradient
    new = new.clone().requires_grad_(True)
    M.policy_loss(new, old, torch.tensor([[1.0, 0.0]]), mask, cliprange=0.2)[0].backward()
    assert new.grad[0, 0].item() == 0.0


def test_value_loss_clips_the_move_from_old_values():
    old = torch.tensor([[0.0, 0.0]])
    new = torch.tensor([[1.0, 0.1]])
    returns = torch.tensor([[1.0, 1.0]])
    mask = torch.ones(1, 2)
    loss, stats = M.value_loss(new, old, returns, mask, cliprange_value=0.2)
    # token 0: unclipped (1-1)^2 = 0, clipped (0.2-1)^2 = 0.64 -> 0.64; token 1: 0.81 either way
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81) / 2)
    assert stats["clipfrac"].item() == pytest.approx(0.5)


def test_adaptive_kl_controller_moves_toward_target():
    ctl = M.AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl.update(current_kl=12.0, n_steps=10)  # KL too high: coefficient grows, error clipped at 0.2
    assert ctl.value == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    ctl2 = M.AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl2.update(current_kl=3.0, n_steps=10)
    assert ctl2.value < 0.1
    fixed = M.FixedKLController(0.1)
    fixed.update(100.0, 10)
    assert fixed.value == 0.1


def test_explained_variance():
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.ones(1, 4)
    assert M.explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert M.explained_variance(torch.full_like(returns, 2.5), returns, mask) == pytest.approx(0.0)
