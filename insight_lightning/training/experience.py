"""A step's experience: roll out the selected prompts K times, score every completion, and (dynamic sampling) roll
out further selections until enough groups are informative, or (screening) complete only the informative ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from insight_lightning.rollout.engine import RolloutBatch, SamplingParams, concat_rollouts
from insight_lightning.rollout.scoring import GroupScores, TimedScoring
from insight_lightning.selection.callback import StepOutcomes
from insight_lightning.selection.data_module import PromptBatch
from samplers import Outcomes
from tasks import Task
from tasks.base import Prompt


class RolloutPolicy(Protocol):
    """What experience collection needs of the policy (insight_lightning.training.policy.Policy is one)."""

    pad_token_id: int

    def sample(self, prompts: list[Prompt], n: int, params: SamplingParams) -> tuple[RolloutBatch, list[str]]: ...


@dataclass
class Experience:
    """What one training step rolled out: the groups to train on, and the outcomes of every group generated."""

    rollout: RolloutBatch  # [b*K] rows of the groups trained on
    completions: list[str]  # [b*K]
    scores: GroupScores  # [b, K]
    examples: list[dict]  # [b]
    outcomes: StepOutcomes  # every group rolled out, extra rounds included, for the beliefs
    generated_tokens: float  # completion tokens of every generated sequence
    verify_s: float = 0.0  # wall-clock time spent in the verifier
    extra_rounds: int = 0  # dynamic sampling, screening: generation rounds after the first
    informative_frac: Tensor | None = None  # dynamic sampling, screening: share of the rounds' groups informative

    @property
    def sequences_generated(self) -> int:
        return int(self.outcomes.outcomes.trials.sum())

    def selection_metrics(self, group_size: int) -> dict[str, Tensor]:
        """Extra generation (dynamic sampling's rounds, screening's discarded rollouts) and its yield (nothing for
        samplers whose selection is final)."""
        if self.informative_frac is None:
            return {}
        discarded = self.sequences_generated - len(self.examples) * group_size
        return {
            "selection/extra_rounds": torch.tensor(float(self.extra_rounds)),
            "selection/extra_rollouts": torch.tensor(float(discarded)),
            "selection/informative_frac": self.informative_frac,
        }


def collect_experience(
    batch: PromptBatch,
    policy: RolloutPolicy,
    task: Task,
    group_size: int,
    params: SamplingParams,
    any_rank_short: Callable[[int], bool] = lambda shortfall: shortfall > 0,
) -> Experience:
    """Roll out the batch's prompts K times each and score them. With a refill, draw and roll out more selections
    until every rank has as many informative groups as prompts, or the round cap is hit (dynamic sampling); with
    screening, rounds roll out N_init < K completions per prompt and the groups kept are then completed to K under
    the same policy (SPEED-RL).

    any_rank_short(shortfall) says whether any rank is still short of informative groups; every rank must take the
    same decision (one collective per round), so that all ranks draw alike.
    """
    k = group_size
    refill = batch.refill
    n = refill.screening if refill is not None and refill.screening else k  # rollouts per prompt in a round
    score = TimedScoring(task)  # counts the verifier's time (time/verify_s)
    examples = list(batch.examples)
    rollout, completions = policy.sample([task.prompt(e) for e in examples], n, params)
    scores = score(completions, examples, n)
    selections = [batch.selection]
    if refill is None:
        outcomes = _outcomes(examples, scores)
        tokens = float(rollout.completion_mask.sum())
        return Experience(
            rollout, completions, scores, examples, StepOutcomes(outcomes, selections), tokens, score.seconds
        )

    wanted, rounds = len(examples), 0
    parts, texts, scored = [rollout], [completions], [scores]
    keep = refill.informative(scores.rewards)  # [b]
    while rounds < refill.max_rounds and any_rank_short(max(0, wanted - int(keep.sum()))):
        more = refill.draw()
        more_rollout, more_texts = policy.sample([task.prompt(e) for e in more.examples], n, params)
        more_scores = score(more_texts, more.examples, n)
        examples += more.examples
        selections.append(more.selection)
        parts.append(more_rollout)
        texts.append(more_texts)
        scored.append(more_scores)
        keep = torch.cat([keep, refill.informative(more_scores.rewards)])
        rounds += 1
    completions = [t for chunk in texts for t in chunk]
    scores = GroupScores.cat(scored)  # [g, n] every group generated
    # Train on `wanted` groups: informative ones first, then (cap hit) uninformative ones, whose advantage is 0.
    groups = torch.sort((~keep).long(), stable=True).indices[:wanted]  # [wanted]
    rows = groups[:, None] * n + torch.arange(n)  # [wanted, n]
    outcomes = _outcomes(examples, scores)  # every group generated reaches the beliefs, the discarded ones too
    kept = [examples[i] for i in groups.tolist()]
    if n < k:  # screening: complete the kept groups with K - n more completions, sampled under the same policy
        completed, more_texts = policy.sample([task.prompt(e) for e in kept], k - n, params)
        more_scores = score(more_texts, kept, k - n)  # [wanted, K-n]
        parts.append(completed)
        rows = torch.cat([rows, len(completions) + torch.arange(wanted * (k - n)).reshape(wanted, k - n)], dim=1)
        completions += more_texts
        outcomes.successes.index_add_(0, groups, more_scores.correct.sum(dim=1))
        outcomes.trials.index_add_(0, groups, torch.full_like(groups, k - n))
        scores = GroupScores.cat([scores.select(groups), more_scores], dim=1)  # [wanted, K]
    else:
        scores = scores.select(groups)  # [wanted, K]
    rollout = concat_rollouts(parts, policy.pad_token_id)
    rows = rows.reshape(-1)  # [wanted*K], each group's K rows together, its screening rows first
    return Experience(
        rollout=rollout.select(rows.to(rollout.prompt_ids.device)),
        completions=[completions[i] for i in rows.tolist()],
        scores=scores,
        examples=kept,
        outcomes=StepOutcomes(outcomes, selections),
        generated_tokens=float(rollout.completion_mask.sum()),
        verify_s=score.seconds,
        extra_rounds=rounds,
        informative_frac=keep.float().mean(),
    )


def _outcomes(examples: list[dict], scores: GroupScores) -> Outcomes:
    ids = torch.tensor([e["id"] for e in examples], dtype=torch.long)
    return Outcomes(ids, scores.correct.sum(dim=1), torch.full_like(ids, scores.correct.shape[1]))
