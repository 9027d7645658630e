"""A step's experience: roll out the selected prompts K times, score every completion, and (dynamic sampling) roll
out further selections until enough groups are informative."""

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
    extra_rounds: int = 0  # dynamic sampling: generation rounds after the first
    informative_frac: Tensor | None = None  # dynamic sampling: share of the generated groups that were informative

    @property
    def sequences_generated(self) -> int:
        return int(self.outcomes.outcomes.trials.sum())

    def selection_metrics(self, group_size: int) -> dict[str, Tensor]:
        """Dynamic sampling's extra generation and its yield (nothing for samplers whose selection is final)."""
        if self.informative_frac is None:
            return {}
        generated = self.outcomes.outcomes.ids.numel()
        return {
            "selection/extra_rounds": torch.tensor(float(self.extra_rounds)),
            "selection/extra_rollouts": torch.tensor(float((generated - len(self.examples)) * group_size)),
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
    """Roll out the batch's prompts K times each and score them; with a refill (dynamic sampling), draw and roll out
    more selections until every rank has as many informative groups as prompts, or the round cap is hit.

    any_rank_short(shortfall) says whether any rank is still short of informative groups; every rank must take the
    same decision (one collective per round), so that all ranks draw alike.
    """
    k = group_size
    score = TimedScoring(task, k)  # counts the verifier's time (time/verify_s)
    examples = list(batch.examples)
    rollout, completions = policy.sample([task.prompt(e) for e in examples], k, params)
    scores = score(completions, examples)
    selections = [batch.selection]
    refill = batch.refill
    if refill is None:
        outcomes = _outcomes(examples, scores, k)
        tokens = float(rollout.completion_mask.sum())
        return Experience(
            rollout, completions, scores, examples, StepOutcomes(outcomes, selections), tokens, score.seconds
        )

    wanted, rounds = len(examples), 0
    parts, texts, scored = [rollout], [completions], [scores]
    keep = refill.informative(scores.rewards)  # [b]
    while rounds < refill.max_rounds and any_rank_short(max(0, wanted - int(keep.sum()))):
        more = refill.draw()
        more_rollout, more_texts = policy.sample([task.prompt(e) for e in more.examples], k, params)
        more_scores = score(more_texts, more.examples)
        examples += more.examples
        selections.append(more.selection)
        parts.append(more_rollout)
        texts.append(more_texts)
        scored.append(more_scores)
        keep = torch.cat([keep, refill.informative(more_scores.rewards)])
        rounds += 1
    rollout = concat_rollouts(parts, policy.pad_token_id)
    completions = [t for chunk in texts for t in chunk]
    scores = GroupScores.cat(scored)
    outcomes = _outcomes(examples, scores, k)  # every group generated reaches the beliefs, the discarded ones too
    tokens = float(rollout.completion_mask.sum())
    # Train on `wanted` groups: informative ones first, then (cap hit) uninformative ones, whose advantage is 0.
    groups = torch.sort((~keep).long(), stable=True).indices[:wanted]  # [wanted]
    rows = (groups[:, None] * k + torch.arange(k)).reshape(-1)  # [wanted*K]
    return Experience(
        rollout=rollout.select(rows.to(rollout.prompt_ids.device)),
        completions=[completions[i] for i in rows.tolist()],
        scores=scores.select(groups),
        examples=[examples[i] for i in groups.tolist()],
        outcomes=StepOutcomes(outcomes, selections),
        generated_tokens=tokens,
        verify_s=score.seconds,
        extra_rounds=rounds,
        informative_frac=keep.float().mean(),
    )


def _outcomes(examples: list[dict], scores: GroupScores, k: int) -> Outcomes:
    ids = torch.tensor([e["id"] for e in examples], dtype=torch.long)
    return Outcomes(ids, scores.correct.sum(dim=1), torch.full_like(ids, k))
