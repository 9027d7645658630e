"""The training step's collection of rollouts under dynamic sampling (DAPO DS), with a scripted policy and task."""

from types import SimpleNamespace

import torch

from insight_lightning.config import GRPOConfig
from insight_lightning.data import PromptBatch
from insight_lightning.module import GRPOModule
from insight_lightning.rollout import RolloutBatch
from samplers import build_sampler
from tasks import Score, Task


class ScriptedTask(Task):
    """Prompts whose id is a multiple of 3 get mixed rewards (informative); all others get the same reward."""

    def build_examples(self, split):
        return [{} for _ in range(100)]

    def prompt(self, example):
        return "p"

    def score(self, completion, example):
        prompt_id, sample = map(int, completion.split(":"))
        correct = prompt_id % 3 == 0 and sample % 2 == 0
        return Score(1.0 if correct else 0.0, correct)


class ScriptedSelection:
    """Hands out the pool in order, M prompts per draw, and counts the draws."""

    def __init__(self, examples, m, sampler):
        self.examples, self.m, self.draws = examples, m, 0
        self.selector = SimpleNamespace(sampler=sampler)

    def draw(self):
        self.draws += 1
        return self.examples[self.draws * self.m : (self.draws + 1) * self.m]


def scripted_module(k=4):
    task = ScriptedTask()
    module = GRPOModule(grpo=GRPOConfig(group_size=k), task=task)
    module.tokenizer = SimpleNamespace(pad_token_id=0)

    def sample(examples, n, params):
        rows = len(examples) * n
        ones = torch.ones(rows, 3, dtype=torch.long)
        rollout = RolloutBatch(ones, ones, ones * 5, ones)
        return rollout, [f"{e['id']}:{j}" for e in examples for j in range(n)]

    module.sample = sample
    return module, task


def run_step(max_extra_rounds, m=6):
    module, task = scripted_module()
    examples = task.examples("train")
    sampler = build_sampler("dynamic_sampling", max_extra_rounds=max_extra_rounds)
    selection = ScriptedSelection(examples, m, sampler)
    step = module._collect_rollouts(PromptBatch(examples[:m], selection))
    return step, selection


def test_dynamic_sampling_trains_only_on_informative_groups_once_it_has_enough():
    step, selection = run_step(max_extra_rounds=10)
    # ids 0..5 hold two informative prompts (0, 3); 6..11 two more (6, 9); 12..17 two more (12, 15): 3 draws in all
    assert selection.draws == 2
    assert [e["id"] for e in step.examples] == [0, 3, 6, 9, 12, 15]
    assert bool((step.scores.rewards.amax(1) > step.scores.rewards.amin(1)).all())
    assert step.rollout.completion_ids.shape[0] == 6 * 4
    # every group rolled out reaches the beliefs, the discarded ones too; the extra rollouts are counted
    assert step.outcomes["ids"].tolist() == list(range(18))
    assert step.extra_metrics["selection/extra_rollouts"].item() == 12 * 4
    assert step.extra_metrics["selection/extra_rounds"].item() == 2


def test_dynamic_sampling_respects_its_cap_and_fills_with_uninformative_groups():
    step, selection = run_step(max_extra_rounds=1)
    assert selection.draws == 1
    ids = [e["id"] for e in step.examples]
    assert ids[:4] == [0, 3, 6, 9] and len(ids) == 6  # the informative ones first, then uninformative fill
    assert step.outcomes["ids"].numel() == 12


def test_samplers_without_extra_rounds_roll_out_the_selection_as_it_is():
    module, task = scripted_module()
    examples = task.examples("train")
    selection = ScriptedSelection(examples, 6, build_sampler("uniform"))
    step = module._collect_rollouts(PromptBatch(examples[:6], selection))
    assert selection.draws == 0 and [e["id"] for e in step.examples] == list(range(6))
    assert step.extra_metrics == {}
