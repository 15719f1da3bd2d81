"""PPO's arithmetic, as plain functions on tensors (CleanRL style; shapes in the comments).

B = rollouts in the batch, R = response tokens. `mask` (B, R) is 1 for real response tokens
(up to and including the first EOS) and 0 for padding after it. References:
Ziegler et al. 2019; Ouyang et al. 2022 (InstructGPT); Huang et al. 2024, "The N implementation
details of RLHF with PPO".
"""

from __future__ import annotations

from typing import Callable

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over the masked entries."""
    mean = masked_mean(x, mask)
    n = mask.sum().clamp(min=2)
    return ((x - mean) ** 2 * mask).sum() / (n - 1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  sum_all: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """(x - mean) / std over the masked entries; `shift_mean=False` keeps the mean (for rewards).

    `sum_all` sums a tensor over every process (data-parallel training): the statistics are then
    those of the whole global batch, as one process holding all of it would compute them.
    """
    if sum_all is None:
        mean, var = masked_mean(x, mask), masked_var(x, mask)
    else:
        mask_f = mask.to(x.dtype)
        total, n = sum_all(torch.stack([(x * mask_f).sum(), mask_f.sum()]))
        mean = total / n.clamp(min=1)
        var = sum_all(((x - mean) ** 2 * mask_f).sum()) / (n.clamp(min=2) - 1)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from samples of the policy: (B, R) -> (B, R).

    k1 = log p - log q: unbiased, high variance, can be negative per token.
    k3 = (q/p - 1) - log(q/p): unbiased, never negative, lower variance (Schulman, "Approximating KL").
    """
    log_ratio = logprobs - ref_logprobs  # log p/q
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator '{estimator}' (k1 or k3)")


def shaped_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards (B, R): -kl_coef * KL at every token, plus the score (B,) at the last real token.

    Returns (rewards, non_score_rewards), both zero where `mask` is 0.
    """
    non_score = -kl_coef * kl * mask  # (B, R)
    # The score goes on the last real token (the EOS itself when the answer ended), the action it rewards.
    # Deliberately unlike TRL 1.12, which adds it one position later (on the first padding) when that fits.
    last = mask.sum(dim=1) - 1  # (B,) index of the last real token
    rewards = non_score.clone()
    rewards[torch.arange(len(scores), device=scores.device), last] += scores
    return rewards, non_score


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the response tokens: (advantages, returns), each (B, R).

    The state after the last real token is terminal (value 0); padding contributes nothing.
    """
    # Masked, deliberately unlike TRL 1.12's GAE over the padded width: padding has no value and no reward,
    # and the recursion restarts at the last real token, so padding never leaks into an advantage.
    values = values * mask
    rewards = rewards * mask
    R = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(rewards[:, 0])  # (B,)
    for t in reversed(range(R)):
        next_value = values[:, t + 1] if t + 1 < R else torch.zeros_like(last_gae)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = (delta + gamma * lam * last_gae) * mask[:, t]
        advantages[:, t] = last_gae
    returns = advantages + values
    return advantages, returns


def policy_loss(new_logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped surrogate objective (as a loss to minimise) and its statistics."""
    log_ratio = new_logprobs - old_logprobs  # (B, R)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((clipped > unclipped).float(), mask),
                 "approxkl": 0.5 * masked_mean(log_ratio ** 2, mask),
                 "ratio": masked_mean(ratio, mask)}
    return loss, stats


def value_loss(new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, cliprange_value: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped value loss: new values may not move further than `cliprange_value` from the old ones."""
    clipped_values = old_values + torch.clamp(new_values - old_values, -cliprange_value, cliprange_value)
    unclipped = (new_values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((clipped > unclipped).float(), mask)}
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns): 1 is a perfect critic, 0 no better than a constant."""
    var_returns = masked_var(returns, mask)
    if var_returns.item() < 1e-12:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask) / var_returns)


class AdaptiveKLController:
    """Ziegler et al.'s proportional controller: nudge kl_coef so the measured KL tracks `target`."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


class FixedKLController:
    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass
