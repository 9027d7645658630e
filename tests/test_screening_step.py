"""Screened rollouts (SPEED-RL): rounds of N_init completions per prompt, the mixed groups completed to K."""

import pytest
import torch
from test_dynamic_sampling_step import ScriptedTask, record

from insight_lightning.rollout.engine import RolloutBatch, SamplingParams
from insight_lightning.selection.data_module import PromptBatch, PromptDataModule, Refill, SelectedBatches
from insight_lightning.training.experience import collect_experience
from samplers import UniformSampler, build_sampler, mixed_groups


class CallNumberingPolicy:
    """Completions 'prompt:sample'; completion ids hold (prompt id, call number), to check which call a row is from."""

    pad_token_id = 0

    def __init__(self):
        self.calls, self.sizes = 0, []

    def sample(self, prompts, n, params):
        self.calls += 1
        self.sizes.append((len(prompts), n))
        ids = torch.tensor([[int(p), self.calls] for p in prompts for _ in range(n)])
        ones = torch.ones(ids.shape[0], 3, dtype=torch.long)
        return RolloutBatch(ones, ones, ids, torch.ones_like(ids)), [f"{p}:{j}" for p in prompts for j in range(n)]


class Screening:
    """Hands out the pool in order, M prompts per draw, under screening with N_init rollouts per prompt."""

    def __init__(self, examples, m, n_init, rounds):
        self.examples, self.m, self.draws = examples, m, 0
        self.refill = Refill(rounds, mixed_groups, self.draw, n_init)

    def first(self):
        return PromptBatch(self.examples[: self.m], record(range(self.m)), self.refill)

    def draw(self):
        self.draws += 1
        part = self.examples[self.draws * self.m : (self.draws + 1) * self.m]
        return PromptBatch(part, record([e["id"] for e in part]))


def screened_step(rounds=10, m=6, n_init=2, k=6):
    task = ScriptedTask()  # ids that are multiples of 3 answer even-numbered samples correctly: mixed groups
    screening = Screening(task.examples("train"), m, n_init, rounds)
    policy = CallNumberingPolicy()
    return collect_experience(screening.first(), policy, task, k, SamplingParams()), screening, policy


def test_screening_completes_only_mixed_groups_to_the_group_size():
    step, screening, policy = screened_step()
    # rounds of 6 prompts x 2 rollouts until 6 mixed ones (0, 3, 6, 9, 12, 15), then one call completing them
    assert screening.draws == 2 and policy.sizes == [(6, 2), (6, 2), (6, 2), (6, 4)]
    kept = [0, 3, 6, 9, 12, 15]
    assert [e["id"] for e in step.examples] == kept
    # each group holds K = 6 rows of its own prompt: its 2 screening rows (rounds 1-3), then its 4 from call 4
    assert step.rollout.completion_ids[:, 0].tolist() == [i for i in kept for _ in range(6)]
    screening_call = {i: 1 + i // 6 for i in kept}
    assert step.rollout.completion_ids[:, 1].tolist() == [c for i in kept for c in [screening_call[i]] * 2 + [4] * 4]
    assert step.completions == [f"{i}:{j}" for i in kept for j in (0, 1, 0, 1, 2, 3)]
    assert step.scores.rewards.shape == (6, 6) and step.scores.correct.sum(1).tolist() == [3] * 6
    # the beliefs get every screened group (2 trials), with the completion's trials added to the kept ones
    outcomes = step.outcomes.outcomes
    assert outcomes.ids.tolist() == list(range(18))
    assert outcomes.trials.tolist() == [6 if i in kept else 2 for i in range(18)]
    assert outcomes.successes.tolist() == [3 if i in kept else 0 for i in range(18)]
    # the discarded screening rollouts are counted: 18 x 2 + 6 x 4 generated, 6 x 6 trained on
    assert step.sequences_generated == 60 and step.generated_tokens == 60 * 2
    metrics = step.selection_metrics(6)
    assert metrics["selection/extra_rollouts"].item() == 24 and metrics["selection/extra_rounds"].item() == 2
    assert metrics["selection/informative_frac"].item() == pytest.approx(6 / 18)


def test_screening_at_its_round_cap_completes_unmixed_groups_too():
    step, screening, policy = screened_step(rounds=1)
    assert screening.draws == 1 and policy.sizes == [(6, 2), (6, 2), (6, 4)]
    assert [e["id"] for e in step.examples] == [0, 3, 6, 9, 1, 2]  # the mixed ones first, then the fill
    assert step.outcomes.outcomes.trials.tolist() == [6, 6, 6, 6, 2, 2, 6, 2, 2, 6, 2, 2]
    assert step.scores.rewards[4:].abs().sum() == 0  # the fill's groups stay all wrong: no advantage


def test_the_screening_option_turns_it_on_for_any_sampler_and_speed_rl_has_it_by_default():
    task = ScriptedTask()
    speed = PromptDataModule(task, "speed_rl", prompts_per_step=6, group_size=8)
    insight = PromptDataModule(task, "insight", prompts_per_step=6, group_size=8, screening=2, screening_rounds=3)
    plain = PromptDataModule(task, "speed_rl", prompts_per_step=6, group_size=8, screening=0)
    assert (speed.screening, speed.screening_rounds, insight.screening, plain.screening) == (4, 10, 2, 0)
    examples = task.examples("train")
    select = iter([record(range(6)), record(range(6, 12)), record(range(12, 18))]).__next__
    batches = SelectedBatches(examples, select, insight.sampler, 0, 1, 2, insight.screening, insight.screening_rounds)
    batch = next(iter(batches))
    assert batch.refill.screening == 2 and batch.refill.max_rounds == 3 and batch.refill.informative is mixed_groups
    assert batch.refill.draw().selection.ids.tolist() == list(range(6, 12))
    plain_batches = SelectedBatches(examples, select, plain.sampler, 0, 1, 2, plain.screening, plain.screening_rounds)
    assert next(iter(plain_batches)).refill is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(sampler="speed_rl", group_size=4), "data.screening=4 (the default of SpeedRLSampler) must be smaller"),
        (dict(screening=8, group_size=8), "data.screening=8 must be smaller than data.group_size=8"),
        (dict(screening=-1), "data.screening=-1 must be >= 0"),
        (dict(screening=2, screening_rounds=-1), "data.screening_rounds=-1 must be >= 0"),
    ],
)
def test_screening_settings_are_checked(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PromptDataModule(ScriptedTask(), **options)


def test_speed_rl_is_uniform_selection_that_screens_with_4_by_default():
    speed = build_sampler("speed_rl")
    assert isinstance(speed, UniformSampler) and speed.name == "speed_rl" and speed.screening == 4
    assert build_sampler("uniform").screening == 0 and speed.max_extra_rounds == 0
