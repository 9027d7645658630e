"""InSight with a cap on how often one prompt is drawn: the race's answer to selection that narrows onto few prompts.

On the main Countdown pool (98 prompts, M = 32, 40 steps) uniform draws every prompt 13 times; the two samplers that
aim at success rate one half (MoPPS, informative_group) draw some prompts at every step (40 times) and others once,
and learned more slowly than uniform; InSight draws its favourites about twice as often as uniform. This sampler keeps
InSight's ranking but lets no prompt run ahead of uniform's draw rate by more than `max_rate`:

    allowance_t = max(1, max_rate * (D_t + M) / N)      (D_t: groups drawn before step t; (D_t + M) / N: uniform's
                                                          draws per prompt once step t is drawn)
    eligible_i  = n_i + 1 <= allowance_t                (n_i: groups of prompt i drawn so far)
    score_i     = A_i (InSight's weighted MI, >= 0) if eligible_i, else -(1 + n_i) (least drawn first)

so the top M are InSight's best eligible prompts, filled, when too few are eligible, by the least drawn of the rest.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from samplers.insight import Belief, InSightSampler, Score
from samplers.posterior import BetaPosterior
from samplers.registry import register_sampler


@register_sampler("capped_insight")
class CappedInSightSampler(InSightSampler):
    """InSight's top-M, among the candidates not drawn more than max_rate times as often as uniform would draw them.

    Args:
        max_rate: how many times uniform's draws per prompt one prompt may reach (inf: InSight itself).
        eta: sharpness of the difficulty weight around mu.
        mu: success rate the difficulty weight favours.
        k: rollouts per prompt in the information gain I_K (null: the training group size).
        candidate_multiplier: candidates scored per selected prompt (Mhat = candidate_multiplier * M).
        prior: Beta prior (alpha0, beta0) of every prompt.
        forgetting: forgetting factor lambda of the posterior update (1.0: pure accumulation, as in the paper).
        score: wmi (the method), mi (information gain only) or w (difficulty weight only).
        belief: mean (w at the posterior mean) or sample (w at a Thompson draw).
    """

    def __init__(
        self,
        max_rate: float = 1.5,
        eta: float = 3.0,
        mu: float = 0.3,
        k: int | None = None,
        candidate_multiplier: int = 16,
        prior: tuple[float, float] = (1.0, 1.0),
        forgetting: float = 1.0,
        score: Score = "wmi",
        belief: Belief = "mean",
    ) -> None:
        super().__init__(eta, mu, k, candidate_multiplier, prior, forgetting, score, belief)
        if not max_rate >= 1.0:  # also refuses nan
            raise ValueError(f"max_rate={max_rate} must be >= 1: uniform itself draws each prompt at rate 1")
        self.max_rate = float(max_rate)
        self.batch_size = 1
        self.draws = torch.zeros(0, dtype=torch.long)  # [N] groups of each prompt drawn so far

    def setup(self, pool_size: int, batch_size: int, group_size: int) -> None:
        super().setup(pool_size, batch_size, group_size)
        self.batch_size = batch_size
        if self.draws.numel() != pool_size:
            self.draws = torch.zeros(pool_size, dtype=torch.long)

    def allowance(self) -> float:
        """The most groups one prompt may have once this step is drawn."""
        if math.isinf(self.max_rate):
            return math.inf
        uniform_rate = (int(self.draws.sum()) + self.batch_size) / max(self.draws.numel(), 1)
        return max(1.0, self.max_rate * uniform_rate)

    def score(self, candidate_ids: Tensor, posterior: BetaPosterior, generator: torch.Generator) -> Tensor:
        insight = super().score(candidate_ids, posterior, generator)  # [C], >= 0
        drawn = self.draws[candidate_ids.cpu()].to(insight.device, insight.dtype)  # [C]
        return torch.where(drawn + 1 <= self.allowance(), insight, -(1 + drawn))

    def update(self, ids: Tensor, successes: Tensor, trials: Tensor, posterior: BetaPosterior) -> None:
        super().update(ids, successes, trials, posterior)
        self.draws.index_add_(0, ids.cpu().long(), torch.ones(ids.numel(), dtype=torch.long))

    def state_dict(self) -> dict:
        return {"draws": self.draws.clone()}

    def load_state_dict(self, state: dict) -> None:
        try:
            draws = state["draws"].clone().long()
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"Corrupt capped_insight state in the checkpoint (missing or wrong {err})") from None
        if self.draws.numel() and draws.numel() != self.draws.numel():
            raise ValueError(
                f"The checkpoint's capped_insight counts cover {draws.numel()} prompts, the pool has "
                f"{self.draws.numel()}"
            )
        self.draws = draws
