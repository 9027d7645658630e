"""AdamW over the trainable weights and its learning-rate schedule (linear warm-up, then constant/linear/cosine)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from insight_lightning.training.config import OptimizerConfig


def build_optimizer(
    params: list[torch.nn.Parameter], config: OptimizerConfig, total_steps: int | None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and its per-step schedule; total_steps (trainer.max_steps) sets where the decay ends (None: constant)."""
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, betas=tuple(config.betas))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(config, total_steps))


def learning_rate_factor(config: OptimizerConfig, total_steps: int | None) -> Callable[[int], float]:
    """The multiplier of config.lr after `step` optimizer steps."""
    if config.schedule not in ("constant", "linear", "cosine"):
        raise ValueError(f"optimizer.schedule must be constant, linear or cosine, got '{config.schedule}'")

    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.schedule == "constant" or not total_steps:
            return 1.0
        progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
        shape = 1.0 - progress if config.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * shape

    return factor
