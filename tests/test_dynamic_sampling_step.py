"""Experience collection under dynamic sampling (DAPO DS), with a scripted policy, task and selection."""

import time

import torch

from insight_lightning.rollout.engine import RolloutBatch, SamplingParams
from insight_lightning.selection.data_module import PromptBatch, Refill
from insight_lightning.training.experience import collect_experience
from samplers import SelectionRecord, build_sampler
from tasks import Score, Task


class ScriptedTask(Task):
    """Prompts whose id is a multiple of 3 get mixed rewards (informative); all others get the same reward."""

    def build_examples(self, split):
        return [{} for _ in range(100)]

    def prompt(self, example):
        return str(example["id"])

    def score(self, completion, example):
        prompt_id, sample = map(int, completion.split(":"))
        assert prompt_id == example["id"]  # completions stay aligned with their prompts
        correct = prompt_id % 3 == 0 and sample % 2 == 0
        return Score(1.0 if correct else 0.0, correct)


class ScriptedPolicy:
    """Completions 'prompt:sample'; the rollout's completion ids carry the prompt id, to check row selection."""

    pad_token_id = 0

    def __init__(self):
        self.calls = 0

    def sample(self, prompts, n, params):
        self.calls += 1
        ids = torch.tensor([int(p) for p in prompts for _ in range(n)])
        ones = torch.ones(ids.numel(), 3, dtype=torch.long)
        rollout = RolloutBatch(ones, ones, ids[:, None].repeat(1, 2), torch.ones(ids.numel(), 2, dtype=torch.long))
        return rollout, [f"{p}:{j}" for p in prompts for j in range(n)]


def record(ids):
    ids = torch.tensor(ids)
    zeros = torch.zeros(len(ids))
    return SelectionRecord(ids, zeros, zeros, zeros.bool(), len(ids), None)


class ScriptedSelection:
    """Hands out the pool in order, M prompts per draw, and counts the draws."""

    def __init__(self, examples, m):
        self.examples, self.m, self.draws = examples, m, 0

    def first(self, sampler=None):
        refill = None
        if sampler is not None and sampler.max_extra_rounds > 0:
            refill = Refill(sampler.max_extra_rounds, sampler.informative, self.draw)
        return PromptBatch(self.examples[: self.m], record(range(self.m)), refill)

    def draw(self):
        self.draws += 1
        part = self.examples[self.draws * self.m : (self.draws + 1) * self.m]
        return PromptBatch(part, record([e["id"] for e in part]))


def run_step(sampler, m=6, k=4):
    task = ScriptedTask()
    selection = ScriptedSelection(task.examples("train"), m)
    policy = ScriptedPolicy()
    experience = collect_experience(selection.first(sampler), policy, task, k, SamplingParams())
    return experience, selection, policy


def test_dynamic_sampling_trains_only_on_informative_groups_once_it_has_enough():
    step, selection, policy = run_step(build_sampler("dynamic_sampling", max_extra_rounds=10))
    # ids 0..5 hold two informative prompts (0, 3); 6..11 two more (6, 9); 12..17 two more (12, 15): 3 draws in all
    assert selection.draws == 2 and policy.calls == 3
    assert [e["id"] for e in step.examples] == [0, 3, 6, 9, 12, 15]
    assert bool((step.scores.rewards.amax(1) > step.scores.rewards.amin(1)).all())
    # the kept rows are those of the kept groups, in the same order as their completions and examples
    assert step.rollout.completion_ids[:, 0].tolist() == [i for i in (0, 3, 6, 9, 12, 15) for _ in range(4)]
    assert [c.split(":")[0] for c in step.completions] == [str(i) for i in (0, 3, 6, 9, 12, 15) for _ in range(4)]
    # every group rolled out reaches the beliefs, the discarded ones too; the extra rollouts are counted
    assert step.outcomes.outcomes.ids.tolist() == list(range(18))
    assert step.outcomes.outcomes.successes.tolist() == [2 if i % 3 == 0 else 0 for i in range(18)]
    assert [r.ids.tolist() for r in step.outcomes.selections] == [
        list(range(0, 6)),
        list(range(6, 12)),
        list(range(12, 18)),
    ]
    metrics = step.selection_metrics(4)
    assert metrics["selection/extra_rollouts"].item() == 12 * 4 and metrics["selection/extra_rounds"].item() == 2
    assert step.sequences_generated == 18 * 4 and step.generated_tokens == 18 * 4 * 2


def test_dynamic_sampling_respects_its_cap_and_fills_with_uninformative_groups():
    step, selection, _ = run_step(build_sampler("dynamic_sampling", max_extra_rounds=1))
    assert selection.draws == 1
    ids = [e["id"] for e in step.examples]
    assert ids[:4] == [0, 3, 6, 9] and len(ids) == 6  # the informative ones first, then uninformative fill
    assert step.outcomes.outcomes.ids.numel() == 12


def test_a_rank_short_of_informative_groups_makes_every_rank_draw_again():
    task = ScriptedTask()
    selection = ScriptedSelection(task.examples("train"), 6)
    sampler = build_sampler("dynamic_sampling", max_extra_rounds=3)
    # this rank has enough after two draws, but another rank is short for one more round (the collective says so)
    shortfalls, answers = [], iter([True, True, True])

    def any_rank_short(shortfall):
        shortfalls.append(shortfall)
        return next(answers)

    step = collect_experience(selection.first(sampler), ScriptedPolicy(), task, 4, SamplingParams(), any_rank_short)
    assert shortfalls == [4, 2, 0] and selection.draws == 3  # the third round: the cap
    assert [e["id"] for e in step.examples] == [0, 3, 6, 9, 12, 15]  # still trains on M groups


def test_samplers_without_extra_rounds_roll_out_the_selection_as_it_is():
    step, selection, policy = run_step(build_sampler("uniform"))
    assert selection.draws == 0 and policy.calls == 1 and [e["id"] for e in step.examples] == list(range(6))
    assert step.selection_metrics(4) == {} and step.outcomes.outcomes.trials.tolist() == [4] * 6


class SlowTask(ScriptedTask):
    """A verifier that takes 2 ms an answer."""

    def score(self, completion, example):
        time.sleep(0.002)
        return super().score(completion, example)


def test_the_verifier_time_of_every_round_is_counted():
    task = SlowTask()
    selection = ScriptedSelection(task.examples("train"), 6)
    batch = selection.first(build_sampler("dynamic_sampling", max_extra_rounds=10))
    step = collect_experience(batch, ScriptedPolicy(), task, 4, SamplingParams())
    assert selection.draws == 2 and step.verify_s >= step.sequences_generated * 0.002  # 3 rounds of 24 answers
