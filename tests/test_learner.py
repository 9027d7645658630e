"""The learner's update is the gradient of the GRPO objective, whatever the micro-batch and rank split."""

import subprocess
import sys

import pytest
import torch
from conftest import TESTS, subprocess_env
from learner_probe import (
    GROUPS,
    K,
    behaviour_offset,
    fixed_rollouts,
    probe_policy,
    surrogate,
    with_behaviour,
)
from learner_probe import main as probe_main
from torch import nn


def run_probe(tmp_path, name: str, *args: str) -> dict:
    """The probe's file; one process runs in this one (a fresh interpreter costs ~5 s of imports), two as DDP does."""
    out = tmp_path / f"{name}.pt"
    if "--devices=2" not in args:
        probe_main([str(out), *args])
        return torch.load(out)
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


@pytest.mark.parametrize("mode", ["tis", "mask", "none"])
def test_rollout_correction_weights_each_token_by_its_hand_computed_importance_ratio(mode, tmp_path):
    probe = run_probe(tmp_path, mode, f"--correction={mode}")
    rollout, advantages = fixed_rollouts()
    ratio = torch.exp(-behaviour_offset(rollout))  # pi_old / pi_behaviour per completion token, [B, T]
    hand = {"tis": torch.clamp(ratio, max=2.0), "mask": ((ratio >= 0.5) & (ratio <= 2.0)).float()}.get(mode)
    weights = None if hand is None else torch.cat([torch.zeros(rollout.prompt_ids.shape), hand], dim=1)  # [B, P+T]
    expected = gradient(lambda policy: surrogate(policy, with_behaviour(policy, rollout), advantages, weights))
    unweighted = gradient(lambda policy: surrogate(policy, rollout, advantages))
    step = step_of(probe)
    for name, grad in expected.items():
        torch.testing.assert_close(step[name], -grad, rtol=1e-4, atol=1e-7)
    moved = sum((expected[n] - unweighted[n]).abs().sum() for n in expected)
    assert (moved > 1e-3 * sum(g.abs().sum() for g in unweighted.values())) == (mode != "none")
    scored = rollout.completion_mask.bool()
    diff, ratio = behaviour_offset(rollout)[scored].abs(), ratio[scored]
    hand_metrics = {
        "rollout/logprob_abs_diff": diff.mean(),
        "rollout/logprob_abs_diff_max": diff.max(),
        "rollout/is_ratio": ratio.mean(),
        "rollout/is_ratio_min": ratio.min(),
        "rollout/is_ratio_max": ratio.max(),
    }
    for tag, value in hand_metrics.items():
        assert probe["metrics"][tag] == pytest.approx(float(value), rel=1e-4), tag
