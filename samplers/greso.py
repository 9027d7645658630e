"""GRESO (Infini-AI-Lab/GRESO, 2025): skip, before any rollout, the prompts whose recent groups were all correct or
all wrong, with a skip probability that adapts toward a target share of zero-variance groups.

Per prompt, z_e counts its trailing rolled-out groups that were all correct and z_h those all wrong (a mixed group
resets both, so at most one is non-zero). A candidate is skipped with probability 1 - max(p_e^z_e, floor) (the
easy test first), else with 1 - max(p_h^z_h, floor). After each step, p_e moves by `step` down when the step's
share of all-correct groups reached T/3 and up otherwise, p_h the same against 2T/3 for all-wrong groups, both
clipped to p_range (GRESO's `presampling_selector.py` and `ray_trainer.py`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from samplers.base import Sampler
from samplers.posterior import BetaPosterior
from samplers.registry import register_sampler


@register_sampler("greso")
class GRESOSampler(Sampler):
    """The first M candidates, in stream order, that survive GRESO's skip coins.

    Unlike GRESO's trainer, which pulls more prompts until it has enough survivors, a step looks at its
    candidate_multiplier * M candidates only and fills any shortfall with the skipped ones, in stream order; p_e and
    p_h adapt from the first step on (GRESO waits for its second epoch, before which no prompt has a trace).

    Args:
        target_zero_variance: T, the share of zero-variance groups to aim for: a third all correct, two thirds all
            wrong.
        p_start: starting p_e and p_h.
        step: how far p_e and p_h move after each step.
        p_range: (low, high) bounds of p_e and p_h.
        floor: least keep probability of any candidate (GRESO's 1% exploration).
        candidate_multiplier: candidates looked at per selected prompt (Mhat = candidate_multiplier * M).
        prior: Beta prior (alpha0, beta0) of the beliefs, kept for logging only.
        forgetting: forgetting factor of those beliefs.
    """

    def __init__(
        self,
        target_zero_variance: float = 0.25,
        p_start: float = 0.5,
        step: float = 0.01,
        p_range: tuple[float, float] = (0.05, 0.95),
        floor: float = 0.01,
        candidate_multiplier: int = 2,
        prior: tuple[float, float] = (1.0, 1.0),
        forgetting: float = 1.0,
    ) -> None:
        super().__init__(candidate_multiplier=candidate_multiplier, prior=prior, forgetting=forgetting)
        if not 0.0 <= target_zero_variance <= 1.0:
            raise ValueError(f"target_zero_variance={target_zero_variance} must be a share in [0, 1] (GRESO)")
        if not 0.0 < p_range[0] <= p_range[1] <= 1.0:
            raise ValueError(f"p_range={p_range} must satisfy 0 < low <= high <= 1 (GRESO)")
        if not p_range[0] <= p_start <= p_range[1]:
            raise ValueError(f"p_start={p_start} must lie in p_range={p_range} (GRESO)")
        if not 0.0 <= floor <= 1.0 or step < 0.0:
            raise ValueError(f"floor={floor} must be in [0, 1] and step={step} >= 0 (GRESO)")
        self.target_zero_variance = float(target_zero_variance)
        self.p_range = (float(p_range[0]), float(p_range[1]))
        self.step = float(step)
        self.floor = float(floor)
        self.p_easy = self.p_hard = float(p_start)
        self.easy_run = torch.zeros(0, dtype=torch.long)  # [N] z_e: trailing all-correct groups per prompt
        self.hard_run = torch.zeros(0, dtype=torch.long)  # [N] z_h: trailing all-wrong groups per prompt

    def setup(self, pool_size: int, batch_size: int, group_size: int) -> None:
        super().setup(pool_size, batch_size, group_size)
        if self.easy_run.numel() != pool_size:
            self.easy_run = torch.zeros(pool_size, dtype=torch.long)
            self.hard_run = torch.zeros(pool_size, dtype=torch.long)

    def keep_probabilities(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Per candidate ([C] float64 each): the chance to pass the easy test, and the hard test."""
        easy = (self.p_easy ** self.easy_run[ids].double()).clamp(min=self.floor)
        hard = (self.p_hard ** self.hard_run[ids].double()).clamp(min=self.floor)
        return easy, hard

    def select(self, candidate_ids: Tensor, posterior: BetaPosterior, k: int, generator: torch.Generator) -> Tensor:
        ids = candidate_ids.cpu()
        coins = torch.rand(ids.numel(), 2, generator=generator, dtype=torch.float64)  # [C, 2] easy, hard
        easy, hard = self.keep_probabilities(ids)
        skipped = (coins[:, 0] < 1.0 - easy) | (coins[:, 1] < 1.0 - hard)  # [C]
        order = torch.cat([torch.nonzero(~skipped).squeeze(-1), torch.nonzero(skipped).squeeze(-1)])
        return ids[order[:k]]

    def update(self, ids: Tensor, successes: Tensor, trials: Tensor, posterior: BetaPosterior) -> None:
        posterior.update(ids, successes, trials)
        ids, successes, trials = ids.cpu(), successes.cpu(), trials.cpu()
        all_correct, all_wrong = successes == trials, successes == 0  # [G]
        if ids.unique().numel() == ids.numel():
            self.easy_run[ids] = torch.where(all_correct, self.easy_run[ids] + 1, 0)
            self.hard_run[ids] = torch.where(all_wrong, self.hard_run[ids] + 1, 0)
        else:  # a prompt rolled out twice in one step (extra rounds past the end of a pass): its groups in order
            for i, easy, hard in zip(ids.tolist(), all_correct.tolist(), all_wrong.tolist()):
                self.easy_run[i] = self.easy_run[i] + 1 if easy else 0
                self.hard_run[i] = self.hard_run[i] + 1 if hard else 0
        if ids.numel() == 0:
            return
        target = self.target_zero_variance
        low, high = self.p_range
        easy_share, hard_share = all_correct.double().mean().item(), all_wrong.double().mean().item()
        self.p_easy = min(max(self.p_easy + (-self.step if easy_share >= target / 3 else self.step), low), high)
        self.p_hard = min(max(self.p_hard + (-self.step if hard_share >= 2 * target / 3 else self.step), low), high)

    def state_dict(self) -> dict:
        return {
            "p_easy": self.p_easy,
            "p_hard": self.p_hard,
            "easy_run": self.easy_run.clone(),
            "hard_run": self.hard_run.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            self.p_easy, self.p_hard = float(state["p_easy"]), float(state["p_hard"])
            self.easy_run, self.hard_run = state["easy_run"].clone().long(), state["hard_run"].clone().long()
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"Corrupt GRESO state in the checkpoint (missing or wrong {err})") from None
