"""An endless, epoch-wise reshuffled stream of pool indices: the candidate source of every sampler."""

from __future__ import annotations

import torch
from torch import Tensor


class CandidateStream:
    """Yields pool indices without replacement within a pass; each pass is a fresh random permutation.

    A draw never contains the same index twice, also across a pass boundary: indices of the old pass's tail are
    moved to the end of the new permutation, so they are still visited once in that pass.
    """

    def __init__(self, pool_size: int, generator: torch.Generator) -> None:
        if pool_size <= 0:
            raise ValueError(f"pool_size must be positive, got {pool_size}")
        self.pool_size = pool_size
        self.generator = generator
        self.epoch = 0
        self.position = 0
        self.order = torch.randperm(pool_size, generator=generator)  # [N]

    def take(self, n: int) -> Tensor:
        """The next n distinct indices ([n], int64, CPU); the whole pool (freshly permuted) when n >= pool size."""
        if n >= self.pool_size:
            return torch.randperm(self.pool_size, generator=self.generator)
        end = self.position + n
        if end <= self.pool_size:
            out = self.order[self.position : end]
            self.position = end
            return out.clone()
        tail = self.order[self.position :]  # [r]
        fresh = torch.randperm(self.pool_size, generator=self.generator)  # [N]
        in_tail = torch.isin(fresh, tail)
        self.order = torch.cat([fresh[~in_tail], fresh[in_tail]])
        self.epoch += 1
        self.position = n - tail.numel()
        return torch.cat([tail, self.order[: self.position]])

    def state_dict(self) -> dict:
        return {
            "pool_size": self.pool_size,
            "epoch": self.epoch,
            "position": self.position,
            "order": self.order.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        order = state.get("order")
        if (
            state.get("pool_size") != self.pool_size
            or not isinstance(order, Tensor)
            or order.shape != (self.pool_size,)
        ):
            saved = state.get("pool_size")
            raise ValueError(f"Saved candidate stream is for a pool of {saved} prompts, this run has {self.pool_size}.")
        if not torch.equal(torch.sort(order).values, torch.arange(self.pool_size)):
            raise ValueError("Corrupt candidate stream state: 'order' is not a permutation of the pool")
        self.epoch, self.position, self.order = int(state["epoch"]), int(state["position"]), order.clone().long()
