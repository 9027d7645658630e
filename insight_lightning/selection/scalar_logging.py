"""Writing scalars at an explicit step (the number of RL steps done), on rank 0, to every configured logger."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger


def log_scalars(trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
    """Step 0 is before the first RL update; step k is after k updates (validation and training alike)."""
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)


def tensorboard(trainer: L.Trainer):
    """The SummaryWriter of the first TensorBoard logger on rank 0, or None."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def log_text_samples(trainer: L.Trainer, prompts: list[str], completions: list[str], rewards: list[float], step: int):
    """Prompt, completion and reward of a few rollouts, as one markdown text under the `samples` tag."""
    experiment = tensorboard(trainer)
    if experiment is None:
        return
    rows = [
        f"**reward {reward:.2f}**\n\n```\n{prompt}{completion}\n```"
        for prompt, completion, reward in zip(prompts, completions, rewards)
    ]
    experiment.add_text("samples", "\n\n---\n\n".join(rows), step)
