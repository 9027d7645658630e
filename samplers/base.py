"""The Sampler interface: candidates and beliefs in, the step's prompt ids out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from samplers.posterior import BetaPosterior


@dataclass
class Choice:
    """A sampler's pick from one candidate set, and the scores it ranked them by."""

    ids: Tensor  # [k] int64, CPU: the chosen prompt ids, best first
    scores: Tensor | None  # [C] the score of every candidate (None: a sampler that overrides select())


class Sampler:
    """Picks the prompts to roll out each step from a candidate set drawn from the reshuffled pool stream.

    Subclasses either implement `score` (higher is better; the base `select` keeps the top-k, ties broken by the
    random candidate order) or override `select`. They are framework-free: tensors in, prompt ids out.

    Args:
        candidate_multiplier: candidates scored per selected prompt (Mhat = candidate_multiplier * M).
        prior: Beta prior (alpha0, beta0) of every prompt's success rate.
        forgetting: forgetting factor lambda of the posterior update (1.0 = pure accumulation).
    """

    name: ClassVar[str] = ""
    max_extra_rounds: int = 0
    """Extra generation rounds a step may ask for to collect informative groups (0: the selection is final)."""
    screening: int = 0
    """Completions per prompt of a screening round, used when data.screening is unset (0: no screening)."""

    def __init__(
        self, candidate_multiplier: int = 1, prior: tuple[float, float] = (1.0, 1.0), forgetting: float = 1.0
    ) -> None:
        if candidate_multiplier < 1:
            raise ValueError(f"candidate_multiplier={candidate_multiplier} must be >= 1")
        self.candidate_multiplier = candidate_multiplier
        self.prior = (float(prior[0]), float(prior[1]))
        self.forgetting = float(forgetting)
        self.group_size = 1

    def setup(self, pool_size: int, batch_size: int, group_size: int) -> None:
        """Called once before the first selection with the pool size N, the batch M and the group size K."""
        self.group_size = group_size

    def make_posterior(self, pool_size: int, device: torch.device | str | None = None) -> BetaPosterior:
        return BetaPosterior(pool_size, prior=self.prior, forgetting=self.forgetting, device=device)

    def score(self, candidate_ids: Tensor, posterior: BetaPosterior, generator: torch.Generator) -> Tensor:
        """Acquisition score per candidate ([C] on the posterior's device); higher is picked first."""
        raise NotImplementedError(f"{type(self).__name__} must implement score() or select()")

    def select(self, candidate_ids: Tensor, posterior: BetaPosterior, k: int, generator: torch.Generator) -> Tensor:
        """The k best candidates by score ([k] int64, CPU); equal scores keep the (random) candidate order."""
        return self._top_k_by_score(candidate_ids, posterior, k, generator).ids

    def choose(self, candidate_ids: Tensor, posterior: BetaPosterior, k: int, generator: torch.Generator) -> Choice:
        """What the selector calls: select()'s ids, with the candidates' scores when the sampler ranks by score()."""
        if type(self).select is not Sampler.select:  # a sampler with its own select() keeps its own rule
            return Choice(self.select(candidate_ids, posterior, k, generator), None)
        return self._top_k_by_score(candidate_ids, posterior, k, generator)

    def _top_k_by_score(self, candidate_ids: Tensor, posterior: BetaPosterior, k: int, generator) -> Choice:
        scores = self.score(candidate_ids.to(posterior.device), posterior, generator)  # [C]
        return Choice(candidate_ids[top_k_first_wins(scores, k).cpu()], scores)

    def informative(self, rewards: Tensor) -> Tensor:
        """Which groups of rewards [b, K] are worth training on ([b] bool); used when max_extra_rounds > 0."""
        return torch.ones(rewards.shape[0], dtype=torch.bool, device=rewards.device)

    def update(self, ids: Tensor, successes: Tensor, trials: Tensor, posterior: BetaPosterior) -> None:
        """Fold a step's outcomes into the beliefs; override to keep extra statistics."""
        posterior.update(ids, successes, trials)

    def state_dict(self) -> dict:
        """State beyond the posterior (none by default)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, but the checkpoint holds {sorted(state)}")


def mixed_groups(rewards: Tensor) -> Tensor:
    """Groups whose (shaped) rewards are not all equal, [b] bool from rewards [b, K]: GRPO's advantage is not 0."""
    return rewards.amax(dim=-1) > rewards.amin(dim=-1)


def top_k_first_wins(scores: Tensor, k: int) -> Tensor:
    """Positions of the k highest scores, best first; among equal scores the earlier position wins.

    Candidates arrive in a random order, so this breaks ties at random, never by prompt index. One topk finds the
    k-th best value; only the (usually few) candidates tied with it are resolved by position.
    """
    k = min(k, scores.numel())
    threshold = torch.topk(scores, k).values[-1]
    above = torch.nonzero(scores > threshold).squeeze(-1)  # positions in candidate order
    tied = torch.nonzero(scores == threshold).squeeze(-1)[: k - above.numel()]
    chosen = torch.cat([above, tied])
    order = torch.sort(scores[chosen], descending=True, stable=True).indices
    return chosen[order]
