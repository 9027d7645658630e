"""DAPO's dynamic sampling (DS): roll out, drop groups whose K rewards are all equal, draw more until M remain."""

from __future__ import annotations

import torch
from torch import Tensor

from samplers.base import Sampler, mixed_groups
from samplers.posterior import BetaPosterior
from samplers.registry import register_sampler


@register_sampler("dynamic_sampling")
class DynamicSamplingSampler(Sampler):
    """Uniform prompts, but a step keeps drawing fresh ones until M groups with non-zero reward variance are found.

    The training step asks for up to `max_extra_rounds` more batches of M prompts; if the cap is hit it trains on
    what it has (filled up with uninformative groups, which carry zero advantage). Every extra rollout is counted
    in `selection/extra_rollouts`: that is the price of this oracle.

    Args:
        max_extra_rounds: most extra generation rounds per step (DAPO/paper: 10 on Countdown, 4 on math).
        prior: Beta prior of the beliefs that are still tracked (for logging).
        forgetting: forgetting factor lambda of those beliefs.
    """

    def __init__(
        self, max_extra_rounds: int = 10, prior: tuple[float, float] = (1.0, 1.0), forgetting: float = 1.0
    ) -> None:
        super().__init__(candidate_multiplier=1, prior=prior, forgetting=forgetting)
        if max_extra_rounds < 0:
            raise ValueError(f"max_extra_rounds={max_extra_rounds} must be >= 0")
        self.max_extra_rounds = max_extra_rounds

    def select(self, candidate_ids: Tensor, posterior: BetaPosterior, k: int, generator: torch.Generator) -> Tensor:
        return candidate_ids[:k]

    def informative(self, rewards: Tensor) -> Tensor:
        """Groups whose (shaped) rewards are not all equal, [b] bool from rewards [b, K]; the paper's variance test."""
        return mixed_groups(rewards)
