"""Validation and test scoring: pass@1 over sampled completions, greedy accuracy and mean reward, per split."""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import torch

from insight_lightning.checkpoints.rng import capture_rng_state, restore_rng_state
from insight_lightning.rollout.engine import SamplingParams
from insight_lightning.rollout.scoring import score_completions
from insight_lightning.training.config import ValidationConfig
from insight_lightning.training.policy import Policy
from tasks import Task


@dataclass
class SplitTotals:
    """Counts of one validation split, summed over its batches (and then over ranks)."""

    correct: float = 0.0
    """Correct sampled completions."""
    samples: float = 0.0
    """Sampled completions (problems x samples per problem)."""
    reward: float = 0.0
    """Summed reward of the sampled completions."""
    greedy_correct: float = 0.0
    """Problems solved by greedy decoding."""
    greedy_problems: float = 0.0
    """Problems decoded greedily."""

    def __add__(self, other: SplitTotals) -> SplitTotals:
        return SplitTotals(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def metrics(self, prefix: str) -> dict[str, float]:
        """accuracy (pass@1 over samples), reward, and greedy accuracy when greedy decoding ran."""
        metrics = {f"{prefix}/accuracy": self.correct / self.samples, f"{prefix}/reward": self.reward / self.samples}
        if self.greedy_problems > 0:
            metrics[f"{prefix}/accuracy_greedy"] = self.greedy_correct / self.greedy_problems
        return metrics


VALIDATION_SEED_STRIDE = 1_000_003  # validation.seed * stride + step: distinct streams for steps below a million


class ValidationPass:
    """One validation (or test) pass. It samples from its own copy of the RNG, so that it never changes the training
    trajectory, and sums each split's totals over its batches, then over the ranks."""

    def __init__(self, splits: int, seed: int | None, step: int) -> None:
        self.training_rng = capture_rng_state()
        if seed is not None:
            # a fixed stream per (seed, step): two samplers' runs evaluate a step with the same sampling noise
            torch.manual_seed(seed * VALIDATION_SEED_STRIDE + step)
        self.totals = [SplitTotals() for _ in range(splits)]

    def add(self, split: int, totals: SplitTotals) -> None:
        self.totals[split] = self.totals[split] + totals

    def finish(self, strategy, device: torch.device) -> list[SplitTotals]:
        """Give the training its RNG back; every split's totals, summed over the ranks."""
        restore_rng_state(self.training_rng)
        return sum_over_ranks(self.totals, strategy, device)


def score_batch(
    policy: Policy, task: Task, batch: list[dict], config: ValidationConfig, max_new_tokens: int
) -> SplitTotals:
    """Sample (and decode greedily) every problem of the batch and count what the verifier accepts.

    Rows flagged `_padding` (added so that every rank has as many batches) are generated but not counted.
    """
    n = config.samples_per_problem
    real = torch.tensor([not e.get("_padding", False) for e in batch])  # [b]
    prompts = [task.prompt(e) for e in batch]
    _, completions = policy.sample(prompts, n, SamplingParams(max_new_tokens, config.temperature, config.top_p, 0))
    sampled = score_completions(task, completions, batch, n)  # [b, n]
    totals = SplitTotals(
        correct=float(sampled.correct[real].sum()),
        samples=float(real.sum() * n),
        reward=float(sampled.rewards[real].sum()),
    )
    if config.greedy:
        _, completions = policy.sample(prompts, 1, SamplingParams(max_new_tokens, 0.0))
        greedy = score_completions(task, completions, batch, 1)  # [b, 1]
        totals.greedy_correct = float(greedy.correct[real].sum())
        totals.greedy_problems = float(real.sum())
    return totals


def sum_over_ranks(totals: list[SplitTotals], strategy, device: torch.device) -> list[SplitTotals]:
    """Every split's totals summed over all ranks, in one collective."""
    stacked = torch.tensor([astuple(t) for t in totals], dtype=torch.float64, device=device)  # [splits, fields]
    reduced = strategy.reduce(stacked, reduce_op="sum").cpu()
    return [SplitTotals(*row.tolist()) for row in reduced.reshape(len(totals), len(fields(SplitTotals)))]


def split_metrics(prefix: str, names: list[str], totals: list[SplitTotals]) -> dict[str, float]:
    """All splits together (weighted by their problems) under prefix/; with several splits also each under
    prefix/name/."""
    overall = SplitTotals()
    for split in totals:
        overall = overall + split
    metrics = overall.metrics(prefix)
    if len(names) > 1:
        for name, split in zip(names, totals):
            metrics.update(split.metrics(f"{prefix}/{name}"))
    return metrics
