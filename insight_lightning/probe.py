"""A probe of a policy on candidate prompts: K samples of each, and the share the verifier accepts.

It says which prompts a policy never solves, always solves, or sometimes solves (only those give GRPO a gradient),
before any training: the composition of a pool, from the weights a race starts from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from insight_lightning.experience import RolloutPolicy
from insight_lightning.rollout import SamplingParams
from insight_lightning.rollout_scoring import score_completions
from tasks import Task


@dataclass
class ProbeResult:
    """What a probe measured of each prompt."""

    solved: Tensor  # [n] int64, samples of each prompt that the verifier accepted
    samples: int  # K_probe, samples drawn of each prompt
    seconds: float  # wall-clock time of the whole probe (generation and verification)

    @property
    def shares(self) -> Tensor:
        """[n] float64: each prompt's solved share, solved / samples."""
        return self.solved.double() / self.samples

    def composition(self) -> dict[str, float | int]:
        """Shares of prompts out of reach (0 of K solved), always solved (K of K) and mixed, and the probe's cost."""
        n = self.solved.numel()
        out_of_reach = int((self.solved == 0).sum())
        solved = int((self.solved == self.samples).sum())
        return {
            "prompts": n,
            "samples": self.samples,
            "out_of_reach": out_of_reach / n,
            "solved": solved / n,
            "mixed": (n - out_of_reach - solved) / n,
            "mean_share": float(self.shares.mean()),
            "seconds_per_1000_prompts": 1000 * self.seconds / n,
        }


def probe(
    policy: RolloutPolicy,
    task: Task,
    examples: list[dict],
    samples: int = 16,
    params: SamplingParams | None = None,
    prompts_per_batch: int = 32,
) -> ProbeResult:
    """Sample every example `samples` times (prompts_per_batch prompts per generate call) and count the solved ones."""
    if samples < 1:
        raise ValueError(f"a probe needs at least one sample per prompt, got {samples}")
    if not examples:
        raise ValueError("a probe needs at least one prompt")
    params = params or SamplingParams()
    started = time.perf_counter()
    solved = []
    for first in range(0, len(examples), prompts_per_batch):
        batch = examples[first : first + prompts_per_batch]
        _, completions = policy.sample([task.prompt(e) for e in batch], samples, params)
        solved.append(score_completions(task, completions, batch, samples).correct.sum(dim=1))  # [b]
    return ProbeResult(torch.cat(solved).long(), samples, time.perf_counter() - started)
