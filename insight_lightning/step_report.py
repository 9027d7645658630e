"""What a training step reports: its metrics (train/, time/, selection/), their mean over ranks, its text samples."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from insight_lightning.experience import Experience

VERIFIER_PREFIX = "train/verifier_"
"""Per-step counts of verifier faults (timeouts, failures, refused answers), summed over ranks."""


@dataclass
class StepTimes:
    """Where a training step's time went (benchmarks/rollout.py reads the latest)."""

    rollout_s: float
    update_s: float
    sequences: float
    tokens: float

    @property
    def tok_per_s(self) -> float:
        return self.tokens / max(self.rollout_s, 1e-9)


def step_metrics(
    experience: Experience,
    update_metrics: dict[str, Tensor],
    times: StepTimes,
    truncated_prompts: int,
    rollouts_total: int,
    lr: float,
    group_size: int,
    verifier_faults: dict[str, int],
) -> dict[str, Tensor]:
    """Every scalar of one step on this rank; verifier_faults: the verifier's fault counts during the step."""
    scores = experience.scores
    return {
        "train/reward": scores.rewards.mean(),
        "train/accuracy": scores.correct.float().mean(),
        "train/frac_all_correct": scores.correct.all(dim=1).float().mean(),
        "train/frac_all_wrong": (~scores.correct.any(dim=1)).float().mean(),
        "train/response_len": experience.rollout.completion_mask.sum(dim=1).float().mean().cpu(),
        "train/truncated_prompts": torch.tensor(float(truncated_prompts)),
        "train/rollouts_total": torch.tensor(float(rollouts_total)),
        "time/rollout_s": torch.tensor(times.rollout_s),
        "time/update_s": torch.tensor(times.update_s),
        "time/verify_s": torch.tensor(experience.verify_s),
        "time/rollout_tok_per_s": torch.tensor(times.tok_per_s),
        "train/lr": torch.tensor(lr),
        **{f"{VERIFIER_PREFIX}{name}": torch.tensor(float(count)) for name, count in verifier_faults.items()},
        **experience.selection_metrics(group_size),
        **update_metrics,
    }


def mean_over_ranks(metrics: dict[str, Tensor], strategy, world_size: int, device: torch.device) -> dict[str, float]:
    """Each metric averaged over the ranks, in one collective; counts of events (train/verifier_*) summed."""
    keys = list(metrics)
    stacked = torch.stack([torch.as_tensor(metrics[k], dtype=torch.float64).cpu() for k in keys])  # [metrics]
    if world_size > 1:
        stacked = strategy.reduce(stacked.to(device), reduce_op="mean").cpu()
    values = dict(zip(keys, stacked.tolist()))
    for key in keys:
        if key.startswith(VERIFIER_PREFIX):
            values[key] *= world_size
    return values


def sample_rows(experience: Experience, count: int, group_size: int) -> tuple[list[dict], list[str], list[float]]:
    """The first `count` rollouts: their examples, completions and rewards (for the text samples)."""
    shown = range(min(count, len(experience.completions)))
    rewards = experience.scores.rewards.reshape(-1).tolist()
    examples = [experience.examples[i // group_size] for i in shown]
    return examples, [experience.completions[i] for i in shown], rewards[: len(shown)]
