"""Uniform selection: a shuffled pass over the pool, M prompts at a time."""

from __future__ import annotations

import torch
from torch import Tensor

from samplers.base import Sampler
from samplers.posterior import BetaPosterior
from samplers.registry import register_sampler


@register_sampler("uniform")
class UniformSampler(Sampler):
    """Random selection without replacement within each pass over the pool (the paper's 'Random' baseline).

    Args:
        prior: Beta prior of the beliefs that are still tracked (for logging) under uniform selection.
        forgetting: forgetting factor lambda of those beliefs.
    """

    def __init__(self, prior: tuple[float, float] = (1.0, 1.0), forgetting: float = 1.0) -> None:
        super().__init__(candidate_multiplier=1, prior=prior, forgetting=forgetting)

    def select(self, candidate_ids: Tensor, posterior: BetaPosterior, k: int, generator: torch.Generator) -> Tensor:
        return candidate_ids[:k]
