"""PromptSelector: the stream, the beliefs, the sampler and the RNG that together choose each step's prompts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from samplers.base import Sampler
from samplers.stream import CandidateStream

STATE_VERSION = 2
Refresh = Literal["step", "epoch"]
REFRESH_MODES: tuple[str, ...] = ("step", "epoch")


@dataclass
class SelectionRecord:
    """One selection: the prompts picked, and what the selector knew about them before their outcomes arrived."""

    ids: Tensor  # [M] int64, CPU
    prior_mean: Tensor  # [M] posterior mean phibar before the step
    prior_evidence: Tensor  # [M] evidence n before the step
    unseen: Tensor  # [M] bool: never rolled out before
    num_candidates: int  # candidates the sampler ranked for this selection (0: taken from an epoch's fixed order)
    scores: Tensor | None  # [C] the sampler's scores of those candidates (None for samplers that do not score)


@dataclass
class Outcomes:
    """What rollouts said about prompts: for each group, its prompt id, its successes and its trials (K)."""

    ids: Tensor  # [G] int64
    successes: Tensor  # [G] int64
    trials: Tensor  # [G] int64

    @staticmethod
    def cat(parts: list[Outcomes]) -> Outcomes:
        return Outcomes(*(torch.cat([getattr(p, f) for p in parts]) for f in ("ids", "successes", "trials")))


class PromptSelector:
    """Draws candidates from the reshuffled pool stream, lets the sampler keep M, and updates the beliefs.

    refresh="step" (Algorithm 1 of the paper): every selection scores Mhat fresh candidates with the current beliefs.
    refresh="epoch": at the start of each pass over the pool the sampler ranks the whole pool once, and the pass
    takes its prompts in that order, M at a time; the beliefs still update after every step.

    Deterministic given the seed and the sequence of updates, so every rank of a data-parallel run that applies the
    same (all-gathered) updates makes the same selections. All randomness comes from one CPU generator whose state
    is saved with the checkpoint.
    """

    def __init__(
        self,
        sampler: Sampler,
        pool_size: int,
        batch_size: int,
        group_size: int,
        seed: int = 0,
        refresh: Refresh = "step",
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size (prompts per step) must be positive, got {batch_size}")
        if batch_size > pool_size:
            raise ValueError(f"Cannot select {batch_size} prompts per step from a pool of only {pool_size}")
        if refresh not in REFRESH_MODES:
            raise ValueError(f"refresh must be one of {', '.join(REFRESH_MODES)}, got '{refresh}'")
        self.sampler = sampler
        self.pool_size = pool_size
        self.batch_size = batch_size
        self.seed = seed
        self.refresh = refresh
        self.generator = torch.Generator().manual_seed(seed)
        self.stream = CandidateStream(pool_size, self.generator)
        self.posterior = sampler.make_posterior(pool_size)
        sampler.setup(pool_size=pool_size, batch_size=batch_size, group_size=group_size)
        self.steps = 0
        self.pass_order = torch.empty(0, dtype=torch.long)  # [N] epoch mode: this pass's ranking of the pool
        self.pass_position = 0

    def to(self, device: torch.device | str) -> PromptSelector:
        self.posterior.to(device)
        return self

    def select(self, batch_size: int | None = None) -> SelectionRecord:
        """The next M prompt ids (identical on every rank) and what the beliefs said about them."""
        m = batch_size or self.batch_size
        if self.refresh == "epoch":
            ids, num_candidates, scores = self._next_in_pass(m)
        else:
            candidates = self.stream.take(max(m, self.sampler.candidate_multiplier * m))  # [C]
            choice = self.sampler.choose(candidates, self.posterior, m, self.generator)
            ids, num_candidates, scores = choice.ids.cpu(), candidates.numel(), choice.scores  # [M]
        if ids.numel() != m or torch.unique(ids).numel() != m:
            raise RuntimeError(f"{type(self.sampler).__name__}.select must return {m} distinct candidate ids")
        dev_ids = ids.to(self.posterior.device)
        self.steps += 1
        return SelectionRecord(
            ids=ids,
            prior_mean=self.posterior.mean[dev_ids],
            prior_evidence=self.posterior.evidence[dev_ids],
            unseen=self.posterior.visits[dev_ids] == 0,
            num_candidates=num_candidates,
            scores=scores,
        )

    def _next_in_pass(self, m: int) -> tuple[Tensor, int, Tensor | None]:
        """Epoch mode: the next m prompts of the pass's fixed order; a new pass ranks the whole pool once."""
        if self.pass_position + m <= self.pass_order.numel():
            ids = self.pass_order[self.pass_position : self.pass_position + m]
            self.pass_position += m
            return ids.clone(), 0, None
        tail = self.pass_order[self.pass_position :]  # [r] the old pass's last, not yet selected prompts
        candidates = self.stream.take(self.pool_size)  # [N] a fresh random order: ties are broken at random
        choice = self.sampler.choose(candidates, self.posterior, self.pool_size, self.generator)
        ranking = choice.ids.cpu()  # [N] best first
        # As the candidate stream does: the tail is selected now and moves to the end of the new pass's order, so
        # no draw repeats a prompt and every prompt is still visited once per pass.
        in_tail = torch.isin(ranking, tail)
        self.pass_order = torch.cat([ranking[~in_tail], ranking[in_tail]])
        self.pass_position = m - tail.numel()
        return torch.cat([tail, self.pass_order[: self.pass_position]]), candidates.numel(), choice.scores

    def update(self, outcomes: Outcomes) -> None:
        """Fold a step's outcomes (all ranks' together) into the beliefs."""
        self.sampler.update(outcomes.ids, outcomes.successes, outcomes.trials, self.posterior)

    def state_dict(self) -> dict:
        return {
            "version": STATE_VERSION,
            "sampler": self.sampler.name or type(self.sampler).__qualname__,
            "pool_size": self.pool_size,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "refresh": self.refresh,
            "steps": self.steps,
            "generator": self.generator.get_state(),
            "stream": self.stream.state_dict(),
            "posterior": self.posterior.state_dict(),
            "sampler_state": self.sampler.state_dict(),
            "pass_order": self.pass_order.clone(),
            "pass_position": self.pass_position,
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
        if state.get("refresh") != self.refresh:
            raise ValueError(
                f"The checkpoint's selection refreshed every {state.get('refresh')}, this run every {self.refresh}; "
                "resume with the same data.refresh."
            )
        self.posterior.load_state_dict(state["posterior"])
        self.stream.load_state_dict(state["stream"])
        self.sampler.load_state_dict(state.get("sampler_state", {}))
        try:
            self.generator.set_state(state["generator"])
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"Corrupt selection state: cannot restore the random generator ({err})") from None
        order = state.get("pass_order")
        if not isinstance(order, Tensor) or order.numel() not in (0, self.pool_size):
            raise ValueError("Corrupt selection state: 'pass_order' is not an order of the pool")
        self.pass_order, self.pass_position = order.clone().long(), int(state["pass_position"])
        self.steps = int(state["steps"])
