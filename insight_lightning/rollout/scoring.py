"""Scoring a batch of completions with the task's verifier."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from tasks import Task


@dataclass
class GroupScores:
    """Verifier results of b prompts x K completions."""

    rewards: Tensor  # [b, K] float32, the (possibly shaped) training reward
    correct: Tensor  # [b, K] bool, the binary outcome that accuracy and the samplers' beliefs use

    def select(self, groups: Tensor) -> GroupScores:
        return GroupScores(self.rewards[groups], self.correct[groups])

    @staticmethod
    def cat(parts: list[GroupScores], dim: int = 0) -> GroupScores:
        """More groups (dim 0), or more completions of the same groups (dim 1)."""
        return GroupScores(torch.cat([p.rewards for p in parts], dim), torch.cat([p.correct for p in parts], dim))


def score_completions(task: Task, completions: list[str], examples: list[dict], k: int) -> GroupScores:
    """Score completion i against example i // k (completions are example-major)."""
    if len(completions) != len(examples) * k:
        raise ValueError(
            f"expected {len(examples) * k} completions for {len(examples)} prompts, got {len(completions)}"
        )
    scores = task.score_many(completions, [examples[i // k] for i in range(len(completions))])
    rewards = torch.tensor([s.reward for s in scores], dtype=torch.float32).reshape(len(examples), k)
    correct = torch.tensor([s.correct for s in scores], dtype=torch.bool).reshape(len(examples), k)
    return GroupScores(rewards, correct)


@dataclass
class TimedScoring:
    """``score(completions, examples, k)``: score_completions with the task's verifier, its wall-clock time summed."""

    task: Task
    seconds: float = 0.0

    def __call__(self, completions: list[str], examples: list[dict], k: int) -> GroupScores:
        started = time.perf_counter()
        try:
            return score_completions(self.task, completions, examples, k)
        finally:
            self.seconds += time.perf_counter() - started
