"""MoPPS (Qu et al. 2025): Thompson-sample each candidate's success rate and keep those nearest a target rate."""

from __future__ import annotations

import torch
from torch import Tensor

from samplers.base import Sampler
from samplers.posterior import BetaPosterior
from samplers.randomness import derive_generator, sample_beta
from samplers.registry import register_sampler


@register_sampler("mopps")
class MoPPSSampler(Sampler):
    """Top-M candidates by -(phihat - target)^2 with phihat ~ Beta(alpha, beta), or random M inside a band.

    Args:
        target: success rate to aim for.
        band: (low, high): keep random M candidates whose draw lies in [low, high] (MoPPS' band variant), filling
            up with those nearest the band when fewer lie inside; null ranks by distance to target.
        candidate_multiplier: candidates scored per selected prompt (Mhat = candidate_multiplier * M).
        prior: Beta prior (alpha0, beta0) of every prompt.
        forgetting: forgetting factor lambda of the posterior update (MoPPS' Countdown runs use 0.5).
    """

    def __init__(
        self,
        target: float = 0.5,
        band: tuple[float, float] | None = None,
        candidate_multiplier: int = 16,
        prior: tuple[float, float] = (1.0, 1.0),
        forgetting: float = 1.0,
    ) -> None:
        super().__init__(candidate_multiplier=candidate_multiplier, prior=prior, forgetting=forgetting)
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"target={target} must be a success rate in [0, 1] (MoPPS)")
        if band is not None and not 0.0 <= band[0] <= band[1] <= 1.0:
            raise ValueError(f"band={band} must satisfy 0 <= low <= high <= 1 (MoPPS)")
        self.target = float(target)
        self.band = None if band is None else (float(band[0]), float(band[1]))

    def score(self, candidate_ids: Tensor, posterior: BetaPosterior, generator: torch.Generator) -> Tensor:
        alpha, beta = posterior.alpha[candidate_ids], posterior.beta[candidate_ids]  # [C]
        device_generator = derive_generator(generator, alpha.device)
        phi = sample_beta(alpha, beta, device_generator)  # [C] Thompson draws
        if self.band is None:
            return -((phi - self.target) ** 2)
        low, high = self.band
        outside = (low - phi).clamp(min=0) + (phi - high).clamp(min=0)  # [C] 0 inside the band
        # Inside the band every candidate ties at 0 and a random key orders them; outside, nearer is better.
        noise = torch.rand(phi.shape, generator=device_generator, device=phi.device, dtype=phi.dtype)
        return torch.where(outside == 0, 1.0 + noise, -outside)
