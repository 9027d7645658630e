"""The learner's update is the gradient of the GRPO objective, whatever the micro-batch and rank split."""

import subprocess
import sys

import pytest
import torch
from conftest import TESTS, subprocess_env
from learner_probe import GROUPS, K, fixed_rollouts, probe_policy, surrogate
from torch import nn


def run_probe(tmp_path, name: str, *args: str) -> dict:
    out = tmp_path / f"{name}.pt"
    result = subprocess.run(
        [sys.executable, str(TESTS / "learner_probe.py"), str(out), *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out)


def step_of(probe: dict) -> dict[str, torch.Tensor]:
    """The weight change of the SGD(lr=1) step: minus the gradient the learner applied."""
    return {name: probe["after"][name] - probe["before"][name] for name in probe["before"]}


def gradient(loss_of_policy) -> dict[str, torch.Tensor]:
    policy = probe_policy()
    loss_of_policy(policy).backward()
    return {n: p.grad for n, p in policy.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return run_probe(tmp_path_factory.mktemp("learner"), "single")


def test_one_update_is_the_gradient_step_of_the_token_mean_objective(single):
    rollout, advantages = fixed_rollouts()
    expected = gradient(lambda policy: surrogate(policy, rollout, advantages))
    step = step_of(single)
    assert step.keys() == expected.keys() and any(g.abs().sum() > 0 for g in expected.values())
    for name, grad in expected.items():
        torch.testing.assert_close(step[name], -grad, rtol=1e-4, atol=1e-7)
    before, after = single["objective"]
    assert after > before
    # train/grad_norm is the true global norm although clipping is off (max_grad_norm=0) in the probe
    true_norm = torch.sqrt(sum((g.double() ** 2).sum() for g in expected.values())).item()
    assert single["grad_norm"] == pytest.approx(true_norm, rel=1e-4) and true_norm > 0


def test_micro_batches_accumulate_to_the_same_update(single, tmp_path):
    micro = run_probe(tmp_path, "micro", "--micro-batch-size=1")
    for name, delta in step_of(single).items():
        torch.testing.assert_close(step_of(micro)[name], delta, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_token_mean_over_two_ranks_equals_one_process_on_the_union(single, tmp_path):
    ddp = run_probe(tmp_path, "ddp", "--devices=2")
    two_ranks, one_process = step_of(ddp), step_of(single)
    for name, delta in one_process.items():
        torch.testing.assert_close(two_ranks[name], delta, rtol=1e-4, atol=1e-7)

    # The test can tell: the mean of per-rank token means (the rank with 2-token completions weighs 6x more per
    # token) is a different update.
    rollout, advantages = fixed_rollouts()
    halves = torch.arange(GROUPS * K).reshape(2, -1)

    def mean_of_rank_means(policy: nn.Module) -> torch.Tensor:
        return sum(surrogate(policy, rollout.select(r), advantages[r]) for r in halves) / 2

    biased = gradient(mean_of_rank_means)
    gap = sum((two_ranks[n] + biased[n]).abs().sum() for n in biased) / sum(biased[n].abs().sum() for n in biased)
    assert gap > 0.05
