"""Baselines that rank candidates by one statistic of the Beta belief (paper.md section 4)."""

from __future__ import annotations

import torch
from torch import Tensor

from samplers.base import Sampler
from samplers.posterior import BetaPosterior
from samplers.registry import register_sampler


@register_sampler("expected_difficulty")
class ExpectedDifficultySampler(Sampler):
    """Top-M candidates by -(phibar - target)^2: MoPPS with the posterior mean instead of a draw.

    Args:
        target: success rate to aim for.
        candidate_multiplier: candidates scored per selected prompt (Mhat = candidate_multiplier * M).
        prior: Beta prior (alpha0, beta0) of every prompt.
        forgetting: forgetting factor lambda of the posterior update.
    """

    def __init__(
        self,
        target: float = 0.5,
        candidate_multiplier: int = 16,
        prior: tuple[float, float] = (1.0, 1.0),
        forgetting: float = 1.0,
    ) -> None:
        super().__init__(candidate_multiplier=candidate_multiplier, prior=prior, forgetting=forgetting)
        self.target = float(target)

    def score(self, candidate_ids: Tensor, posterior: BetaPosterior, generator: torch.Generator) -> Tensor:
        return -((posterior.mean[candidate_ids] - self.target) ** 2)


@register_sampler("inverse_evidence")
class InverseEvidenceSampler(Sampler):
    """Top-M candidates by 1 / n (n = alpha + beta): the least-observed prompts first.

    Args:
        candidate_multiplier: candidates scored per selected prompt (Mhat = candidate_multiplier * M).
        prior: Beta prior (alpha0, beta0) of every prompt.
        forgetting: forgetting factor lambda of the posterior update.
    """

    def __init__(
        self, candidate_multiplier: int = 16, prior: tuple[float, float] = (1.0, 1.0), forgetting: float = 1.0
    ) -> None:
        super().__init__(candidate_multiplier=candidate_multiplier, prior=prior, forgetting=forgetting)

    def score(self, candidate_ids: Tensor, posterior: BetaPosterior, generator: torch.Generator) -> Tensor:
        return 1.0 / posterior.evidence[candidate_ids]
