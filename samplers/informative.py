"""Informative-group selection: pick the prompts whose next group of K rewards is most likely to be mixed.

GRPO learns only from a group whose K binary rewards are not all equal (an all-0 or all-1 group has zero
advantage everywhere). Under the Beta(a, b) belief the success count S of the next K rollouts is
BetaBinomial(K, a, b), so

    P(S = 0) = B(a, b + K) / B(a, b),   P(S = K) = B(a + K, b) / B(a, b)
    P_mixed  = 1 - P(S = 0) - P(S = K)                                        (posterior predictive)

InSight's weighted mutual information scores what the group tells us about the prompt; P_mixed scores what the
group gives the gradient. (At a Thompson draw p instead of the predictive, 1 - (1-p)^K - p^K decreases with
|p - 1/2|, so it ranks exactly as MoPPS with target 0.5: the race chose the same prompts. Not a separate sampler.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from samplers.base import Sampler
from samplers.posterior import BetaPosterior
from samplers.registry import register_sampler


def log_beta(a: Tensor, b: Tensor) -> Tensor:
    """ln B(a, b), elementwise."""
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def mixed_group_probability(alpha: Tensor, beta: Tensor, k: int) -> Tensor:
    """P(0 < S < K) for S ~ BetaBinomial(K, alpha, beta), float64, elementwise: the chance a group is informative."""
    if k < 2:
        raise ValueError(f"k={k}: a group needs at least 2 rollouts to be mixed")
    a = torch.as_tensor(alpha, dtype=torch.float64)
    b = torch.as_tensor(beta, dtype=torch.float64, device=a.device)
    base = log_beta(a, b)
    none = torch.exp(log_beta(a, b + k) - base)  # P(S = 0)
    every = torch.exp(log_beta(a + k, b) - base)  # P(S = K)
    return (1.0 - none - every).clamp(min=0.0)  # rounding can leave -1e-16 for near-certain beliefs


@register_sampler("informative_group")
class InformativeGroupSampler(Sampler):
    """Top-M candidates by the probability that their next group of K rewards is mixed (a GRPO learning signal).

    Args:
        k: rollouts per group in the probability (null: the training group size).
        candidate_multiplier: candidates scored per selected prompt (Mhat = candidate_multiplier * M).
        prior: Beta prior (alpha0, beta0) of every prompt.
        forgetting: forgetting factor lambda of the posterior update (below 1: success rates drift as the policy
            learns, so old outcomes count less).
    """

    def __init__(
        self,
        k: int | None = None,
        candidate_multiplier: int = 16,
        prior: tuple[float, float] = (1.0, 1.0),
        forgetting: float = 1.0,
    ) -> None:
        super().__init__(candidate_multiplier=candidate_multiplier, prior=prior, forgetting=forgetting)
        if k is not None and k < 2:
            raise ValueError(f"k={k}: a group needs at least 2 rollouts to be mixed (informative_group)")
        self.k = k

    def score(self, candidate_ids: Tensor, posterior: BetaPosterior, generator: torch.Generator) -> Tensor:
        k = self.k or max(self.group_size, 2)  # the training group size unless set (set up by the selector)
        return mixed_group_probability(posterior.alpha[candidate_ids], posterior.beta[candidate_ids], k)  # [C]
