"""Reproducible randomness for samplers: device generators derived from the selector's CPU generator, Beta draws."""

from __future__ import annotations

import torch
from torch import Tensor

_UNCONDITIONAL_ROUNDS = 6  # rejection rounds run without looking: P(a draw still pending) < 0.05**6


def derive_generator(generator: torch.Generator, device: torch.device | str) -> torch.Generator:
    """A generator on `device`, seeded from one draw of the CPU `generator` (so its state stays the only state).

    Draws then happen where the beliefs live (no host-device copies); the same seed and device type give the same
    numbers on every rank.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def sample_log_gamma(shape: Tensor, generator: torch.Generator) -> Tensor:
    """log of Gamma(shape, 1) draws (Marsaglia and Tsang 2000), vectorised, from an explicit generator; shape > 0.

    Working in log space keeps draws for tiny shapes (which underflow to 0 as plain numbers) usable in ratios.
    """
    boost = shape < 1  # Gamma(a) = Gamma(a + 1) * U^(1/a) for a < 1
    a = torch.where(boost, shape + 1, shape)
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    log_out = torch.zeros_like(a)
    pending = torch.ones_like(a, dtype=torch.bool)
    rounds = 0
    # Each round accepts > 95% of the pending draws; after a few unconditional rounds one check ends the loop.
    while rounds < _UNCONDITIONAL_ROUNDS or bool(pending.any()):
        x = torch.randn(a.shape, generator=generator, device=a.device, dtype=a.dtype)
        u = torch.rand(a.shape, generator=generator, device=a.device, dtype=a.dtype)
        v = (1 + c * x) ** 3
        log_v = torch.log(v.clamp(min=1e-300))
        accept = pending & (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * log_v)
        log_out = torch.where(accept, torch.log(d) + log_v, log_out)
        pending = pending & ~accept
        rounds += 1
    u = torch.rand(a.shape, generator=generator, device=a.device, dtype=a.dtype)
    return torch.where(boost, log_out + torch.log(u) / shape, log_out)


def sample_beta(alpha: Tensor, beta: Tensor, generator: torch.Generator) -> Tensor:
    """Beta(alpha, beta) draws as X / (X + Y) with X ~ Gamma(alpha), Y ~ Gamma(beta), computed in log space."""
    return torch.sigmoid(sample_log_gamma(alpha, generator) - sample_log_gamma(beta, generator))
