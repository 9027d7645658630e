"""PromptSelector: the stream, the beliefs, the sampler and the RNG that together choose each step's prompts."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from samplers.base import Sampler
from samplers.stream import CandidateStream

STATE_VERSION = 1


@dataclass
class SelectionRecord:
    """What the selector knew about the prompts it picked, before their outcomes arrived."""

    ids: Tensor  # [M] int64, CPU
    prior_mean: Tensor  # [M] posterior mean phibar before the step
    prior_evidence: Tensor  # [M] evidence n before the step
    unseen: Tensor  # [M] bool: never rolled out before
    num_candidates: int
    scores: Tensor | None  # [C] the sampler's scores of all candidates (None for samplers that do not score)


class PromptSelector:
    """Draws Mhat candidates from the reshuffled pool stream, lets the sampler keep M, and updates the beliefs.

    Deterministic given the seed and the sequence of updates, so every rank of a data-parallel run that applies the
    same (all-gathered) updates makes the same selections. All randomness comes from one CPU generator whose state
    is saved with the checkpoint.
    """

    def __init__(self, sampler: Sampler, pool_size: int, batch_size: int, group_size: int, seed: int = 0) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size (prompts per step) must be positive, got {batch_size}")
        if batch_size > pool_size:
            raise ValueError(f"Cannot select {batch_size} prompts per step from a pool of only {pool_size}")
        self.sampler = sampler
        self.pool_size = pool_size
        self.batch_size = batch_size
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.stream = CandidateStream(pool_size, self.generator)
        self.posterior = sampler.make_posterior(pool_size)
        sampler.setup(pool_size=pool_size, batch_size=batch_size, group_size=group_size)
        self.steps = 0
        self.pending: list[SelectionRecord] = []  # selections whose outcomes have not been folded in yet

    def to(self, device: torch.device | str) -> PromptSelector:
        self.posterior.to(device)
        return self

    @property
    def num_candidates(self) -> int:
        return min(self.pool_size, self.sampler.candidate_multiplier * self.batch_size)

    def next_batch(self, batch_size: int | None = None) -> Tensor:
        """The next step's prompt ids ([M] int64, CPU), identical on every rank."""
        m = batch_size or self.batch_size
        candidates = self.stream.take(max(m, self.sampler.candidate_multiplier * m))  # [C]
        ids = self.sampler.select(candidates, self.posterior, m, self.generator).cpu()  # [M]
        if ids.numel() != m or torch.unique(ids).numel() != m:
            raise RuntimeError(f"{type(self.sampler).__name__}.select must return {m} distinct candidate ids")
        dev_ids = ids.to(self.posterior.device)
        self.pending.append(
            SelectionRecord(
                ids=ids,
                prior_mean=self.posterior.mean[dev_ids],
                prior_evidence=self.posterior.evidence[dev_ids],
                unseen=self.posterior.visits[dev_ids] == 0,
                num_candidates=candidates.numel(),
                scores=self.sampler.last_scores,
            )
        )
        self.steps += 1
        return ids

    def update(self, ids: Tensor, successes: Tensor, trials: Tensor) -> list[SelectionRecord]:
        """Fold the step's outcomes (all ranks' together) into the beliefs; returns the step's selection records."""
        self.sampler.update(ids, successes, trials, self.posterior)
        records, self.pending = self.pending, []
        return records

    def state_dict(self) -> dict:
        return {
            "version": STATE_VERSION,
            "sampler": self.sampler.name or type(self.sampler).__qualname__,
            "pool_size": self.pool_size,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "steps": self.steps,
            "generator": self.generator.get_state(),
            "stream": self.stream.state_dict(),
            "posterior": self.posterior.state_dict(),
            "sampler_state": self.sampler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore everything needed to continue the exact same sequence of selections."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError("Corrupt or incompatible selection state in the checkpoint (unknown format version)")
        expected = self.sampler.name or type(self.sampler).__qualname__
        if state.get("sampler") != expected:
            raise ValueError(
                f"The checkpoint's selection state is for sampler '{state.get('sampler')}', this run uses "
                f"'{expected}'; resume with the same sampler."
            )
        if state.get("pool_size") != self.pool_size:
            raise ValueError(
                f"The checkpoint's selection state covers a pool of {state.get('pool_size')} prompts, this run's pool "
                f"has {self.pool_size}; resume with the same dataset."
            )
        self.posterior.load_state_dict(state["posterior"])
        self.stream.load_state_dict(state["stream"])
        self.sampler.load_state_dict(state.get("sampler_state", {}))
        try:
            self.generator.set_state(state["generator"])
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"Corrupt selection state: cannot restore the random generator ({err})") from None
        self.steps = int(state["steps"])
        self.pending = []
