"""The two ways to learn a reward from a ranking, written out.

r is the reward model's score of each answer (one scalar, read at the answer's final EOS).

pairwise (InstructGPT eq. 1): for a ranking with pairs (w better than l),
    loss(ranking) = mean over its pairs of  -log sigmoid(r_w - r_l - margin)
and each ranking counts once in the batch mean, however many pairs it has.

Both take optional per-ranking weights w (the reviewer's reliability) and then return the weighted
mean over rankings, sum_g w_g loss_g / sum_g w_g: a weight-0 ranking teaches nothing, and with
every weight 1 the result is the plain mean.

listwise (Plackett-Luce): the ranking is read as choosing, best first, which answer comes next
from those not yet placed: P = prod_k exp(r_k) / sum_{j placed at k or later} exp(r_j).
Tied answers form one group (Breslow's approximation, as for ties in Cox regression): a group G
chosen from the remaining set R costs  -(sum_{a in G} r_a - |G| * logsumexp_{j in R} r_j).
The sum over groups is divided by K - 1, so a 2-answer ranking gives exactly the pairwise loss.
Unlike the pairwise loss, a tie still teaches something here: the last group's term is smallest
when its answers score the same, so "equally good" pulls their scores together.

An ensemble (M members, one score each per answer) is trained with the mean over members of each
member's loss, member m weighing ranking g by w_g * c_gm, where c_gm ~ Poisson(1) is how often g is in
m's bootstrap sample (reward.data.bootstrap_counts): the members see different data as well as
starting from different heads.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def _mean_over_rankings(per_ranking: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_ranking.mean()
    weights = weights.to(per_ranking.dtype)
    # clamped so that a batch of weight-0 rankings gives a loss of 0 (and zero gradients), not 0/0
    return (per_ranking * weights).sum() / weights.sum().clamp_min(torch.finfo(per_ranking.dtype).tiny)


def pairwise_loss(rewards: torch.Tensor, better: torch.Tensor, worse: torch.Tensor, group: torch.Tensor,
                  margin: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
    """rewards (N,) answer scores; better/worse (P,) answer indices; group (N,) ranking of each answer;
    weights (G,) of each ranking (None = all 1)."""
    diff = rewards[better] - rewards[worse]  # (P,)
    if margin is not None:
        diff = diff - margin
    per_pair = -F.logsigmoid(diff)  # (P,)
    if per_pair.numel() == 0:  # every ranking in the batch was a full tie
        return rewards.sum() * 0.0
    pair_group = group[better]  # (P,)
    n_groups = int(group.max()) + 1
    pairs_per_group = torch.bincount(pair_group, minlength=n_groups)  # (G,)
    per_group = torch.zeros(n_groups, dtype=per_pair.dtype, device=per_pair.device).index_add(
        0, pair_group, per_pair)  # (G,) summed loss of each ranking
    has_pairs = pairs_per_group > 0  # (G,) a full tie has no loss term, so no weight in the mean either
    return _mean_over_rankings(per_group[has_pairs] / pairs_per_group[has_pairs],
                               None if weights is None else weights[has_pairs])


def plackett_luce_nll(rewards: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of one ranking, per placement; rewards (K,), ranks (K,) dense, 1 = best."""
    total = rewards.new_zeros(())
    for level in torch.unique(ranks):  # ascending: best group first
        tied = ranks == level  # (K,) this group
        remaining = ranks >= level  # (K,) this group and everything ranked below it
        total = total - (rewards[tied].sum() - tied.sum() * torch.logsumexp(rewards[remaining], dim=0))
    return total / max(1, rewards.numel() - 1)


def listwise_loss(rewards: torch.Tensor, ranks: torch.Tensor, group: torch.Tensor,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Plackett-Luce NLL over the rankings of a batch; rewards/ranks/group (N,); weights (G,) of
    each ranking (None = all 1)."""
    present = torch.unique(group)  # (G',) ascending
    losses = [plackett_luce_nll(rewards[group == g], ranks[group == g]) for g in present]
    return _mean_over_rankings(torch.stack(losses), None if weights is None else weights[present])


def member_weights(weights: torch.Tensor | None, bootstrap: torch.Tensor | None, m: int) -> torch.Tensor | None:
    """(B,) member m's weight of each ranking: the ranking's weight times its bootstrap count (B, M)."""
    if bootstrap is None:
        return weights
    counts = bootstrap[:, m]
    return counts if weights is None else weights * counts


def ensemble_loss(logits: torch.Tensor, weights: torch.Tensor | None, bootstrap: torch.Tensor | None,
                  loss_of: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]) -> torch.Tensor:
    """logits (N, M): M members' scores of N answers; `loss_of(rewards (N,), weights (B,) or None)` is one
    member's loss. One member: exactly `loss_of` (the bootstrap, if any, is not used). Else the members' mean."""
    if logits.shape[-1] == 1:
        return loss_of(logits.squeeze(-1), weights)
    return torch.stack([loss_of(logits[:, m], member_weights(weights, bootstrap, m))
                        for m in range(logits.shape[-1])]).mean()
