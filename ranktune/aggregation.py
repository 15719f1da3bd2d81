"""One reward from an ensemble's member scores: how optimistic the policy may be about them.

members is (B, M): M reward models' normalised scores of B answers (M = 1: a single model, whose
score every aggregation returns unchanged). Coste et al. (ICLR 2024), "Reward Model Ensembles Help
Mitigate Overoptimization": optimising the worst case or an uncertainty-penalised mean keeps the
policy out of regions where the members disagree, which is where a single model's score is least
to be trusted.

    mean             the members' mean
    min              the lowest member's score (worst-case optimisation)
    mean_minus_std   mean - coef * std over members (uncertainty-weighted optimisation)
"""

from __future__ import annotations

import torch

from ranktune.errors import InputError

AGGREGATIONS = ("mean", "min", "mean_minus_std")


def check_aggregation(how: str, coef: float) -> None:
    if how not in AGGREGATIONS:
        raise InputError(f"must be one of {', '.join(AGGREGATIONS)}, got '{how}'", field="reward_aggregation")
    if coef < 0:
        raise InputError(f"must be 0 or more, got {coef}", field="uncertainty_coef")


def spread(members: torch.Tensor) -> torch.Tensor:
    """(B,) the members' standard deviation (population: 0 for one member, and for identical ones)."""
    return members.std(dim=-1, unbiased=False)


def aggregate(members: torch.Tensor, how: str = "mean", coef: float = 1.0) -> torch.Tensor:
    """(B,) one reward per answer from (B, M) member scores."""
    check_aggregation(how, coef)
    if how == "min":
        return members.min(dim=-1).values
    mean = members.mean(dim=-1)
    if how == "mean_minus_std":
        return mean - coef * spread(members)
    return mean
