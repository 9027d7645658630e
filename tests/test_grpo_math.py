"""GRPO math against hand-computed values."""

import math

import pytest
import torch

from insight_lightning.training.grpo import (
    LOSS_AGGREGATIONS,
    aggregate_loss,
    group_advantages,
    kl_k3,
    loss_normalizer,
    masked_mean,
    policy_loss,
)

# ---------------------------------------------------------------------------------------------------- advantages


def test_group_advantages_with_std():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    adv = group_advantages(rewards, eps=0.0)
    # group 0: mean 0.25, unbiased std = sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5
    expected = torch.tensor([[1.5, -0.5, -0.5, -0.5], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(adv, expected)


def test_group_advantages_eps_and_without_std():
    rewards = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1]])
    adv = group_advantages(rewards, eps=1e-6)
    std = math.sqrt(4 * 0.25 / 3)  # unbiased std of [1, 1, 0, 0]
    row0 = torch.tensor([0.5, 0.5, -0.5, -0.5]) / (std + 1e-6)
    torch.testing.assert_close(adv[0], row0)
    # the zero-variance group (0.1 does not average exactly in float32) is exactly 0, not a rounding residue
    assert torch.equal(adv[1], torch.zeros(4))
    dr = group_advantages(rewards, normalize_std=False)  # Dr.GRPO
    torch.testing.assert_close(dr[0], torch.tensor([0.5, 0.5, -0.5, -0.5]))
    assert torch.equal(dr[1], torch.zeros(4))


def test_group_advantages_single_completion_is_zero():
    assert torch.equal(group_advantages(torch.tensor([[1.0], [0.0]])), torch.zeros(2, 1))


def test_group_advantages_rejects_flat_rewards():
    with pytest.raises(ValueError, match="num_prompts, K"):
        group_advantages(torch.zeros(8))


# ---------------------------------------------------------------------------------------------------- policy loss


def _ratios_to_logp(ratios):
    """(logp, old_logp) pairs of shape [1, T] whose exp-difference is the given ratios."""
    old = torch.zeros(1, len(ratios))
    return torch.log(torch.tensor([ratios])), old


def test_policy_loss_positive_advantage():
    ratios = [0.5, 1.0, 1.2, 1.5]  # below 1 - 0.2, inside, inside (< 1.28), above 1 + 0.28
    logp, old = _ratios_to_logp(ratios)
    loss, clipped = policy_loss(logp, old, torch.tensor([2.0]), clip_low=0.2, clip_high=0.28)
    # A > 0: loss = -A * min(r, 1.28); a low ratio is not clipped (the min keeps r)
    torch.testing.assert_close(loss, torch.tensor([[-1.0, -2.0, -2.4, -2.56]]))
    assert clipped.tolist() == [[False, False, False, True]]


def test_policy_loss_negative_advantage():
    ratios = [0.5, 1.0, 1.2, 1.5]
    logp, old = _ratios_to_logp(ratios)
    loss, clipped = policy_loss(logp, old, torch.tensor([-2.0]), clip_low=0.2, clip_high=0.28)
    # A < 0: loss = 2 * max(r, 0.8); a high ratio is not clipped (no dual clip)
    torch.testing.assert_close(loss, torch.tensor([[1.6, 2.0, 2.4, 3.0]]))
    assert clipped.tolist() == [[True, False, False, False]]


def test_policy_loss_gradient_is_cut_where_clipped():
    logp = torch.log(torch.tensor([[0.5, 1.0, 1.5]])).requires_grad_()
    loss, clipped = policy_loss(logp, torch.zeros(1, 3), torch.tensor([1.0]))
    loss.sum().backward()
    # d(-r A)/d logp = -r A where unclipped; 0 where clipped
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.5, -1.0, 0.0]]))
    assert clipped.tolist() == [[False, False, True]]


def test_policy_loss_dual_clip():
    ratios = [0.5, 2.0, 5.0]
    logp, old = _ratios_to_logp(ratios)
    adv = torch.tensor([-1.0, 1.0])
    logp, old = logp.expand(2, 3), old.expand(2, 3)
    loss, clipped = policy_loss(logp, old, adv, clip_low=0.2, clip_high=0.28, dual_clip=3.0)
    # A = -1: max(r, 0.8) capped at 3 -> [0.8, 2.0, 3.0]; A = +1: -min(r, 1.28), dual clip does not apply
    torch.testing.assert_close(loss, torch.tensor([[0.8, 2.0, 3.0], [-0.5, -1.28, -1.28]]))
    assert clipped.tolist() == [[True, False, True], [False, True, True]]
    with pytest.raises(ValueError, match="dual_clip"):
        policy_loss(logp, old, adv, dual_clip=1.0)


def test_policy_loss_extreme_log_ratio_is_finite():
    loss, _ = policy_loss(torch.tensor([[0.0]]), torch.tensor([[-1000.0]]), torch.tensor([-1.0]))
    assert torch.isfinite(loss).all()


# ---------------------------------------------------------------------------------------------------- KL


def test_kl_k3_values():
    logp = torch.tensor([[-1.0, -2.0, -0.5]])
    assert torch.equal(kl_k3(logp, logp), torch.zeros(1, 3))
    ref = torch.tensor([[-1.0 + math.log(2.0), -2.0 - 1.0, -0.5]])
    # log ratio log 2: 2 - log 2 - 1; log ratio -1: e^-1 + 1 - 1
    expected = torch.tensor([[1.0 - math.log(2.0), math.exp(-1.0), 0.0]])
    torch.testing.assert_close(kl_k3(logp, ref), expected)
    assert (kl_k3(torch.randn(4, 8), torch.randn(4, 8)) >= 0).all()
    assert torch.isfinite(kl_k3(torch.tensor([[0.0]]), torch.tensor([[1000.0]]))).all()


# ---------------------------------------------------------------------------------------------------- aggregation

PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0, 9.0], [4.0, 9.0, 9.0, 9.0], [5.0, 6.0, 9.0, 9.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
# valid: row 0 -> 1, 2, 3 (sum 6, mean 2); row 1 -> 4 (sum 4, mean 4); row 2 -> 5, 6 (sum 11, mean 5.5)
HAND = {
    "token_mean": 21.0 / 6.0,
    "seq_mean_token_mean": (2.0 + 4.0 + 5.5) / 3.0,
    "seq_mean_token_sum": 21.0 / 3.0,
    "seq_mean_token_sum_norm": 21.0 / (3.0 * 8.0),  # max_response_length 8
}


def test_registry_holds_the_four_modes():
    assert set(LOSS_AGGREGATIONS) == set(HAND)


@pytest.mark.parametrize("mode", sorted(HAND))
def test_aggregation_by_hand(mode):
    norm = loss_normalizer(MASK, mode, max_response_length=8)
    loss = aggregate_loss(PER_TOKEN, MASK, mode, norm)
    torch.testing.assert_close(loss, torch.tensor(HAND[mode]))


def test_seq_mean_token_sum_norm_defaults_to_padded_width():
    assert loss_normalizer(MASK, "seq_mean_token_sum_norm") == 3.0 * 4.0


@pytest.mark.parametrize("mode", sorted(HAND))
def test_micro_batch_sum_equals_whole_mini_batch(mode):
    g = torch.Generator().manual_seed(0)
    per_token = torch.randn(10, 7, generator=g, dtype=torch.float64)
    mask = torch.rand(10, 7, generator=g) > 0.4
    mask[3] = False  # an empty row must not count as a sequence
    norm = loss_normalizer(mask, mode, max_response_length=16)
    whole = aggregate_loss(per_token, mask, mode, norm)
    parts = sum(aggregate_loss(p, m, mode, norm) for p, m in zip(per_token.split(3), mask.split(3), strict=True))
    torch.testing.assert_close(parts, whole)


def test_empty_mask_gives_zero_loss():
    mask = torch.zeros(2, 3, dtype=torch.bool)
    for mode in HAND:
        assert aggregate_loss(torch.ones(2, 3), mask, mode, loss_normalizer(mask, mode)).item() == 0.0


def test_unknown_mode_lists_names():
    with pytest.raises(ValueError, match="seq_mean_token_mean.*token_mean"):
        loss_normalizer(MASK, "mean")
    with pytest.raises(ValueError, match="unknown loss aggregation 'sum'"):
        aggregate_loss(PER_TOKEN, MASK, "sum", 1.0)


def test_masked_mean():
    torch.testing.assert_close(masked_mean(PER_TOKEN, MASK), torch.tensor(21.0 / 6.0))
    torch.testing.assert_close(masked_mean(PER_TOKEN, MASK, dim=-1), torch.tensor([2.0, 4.0, 5.5]))
    assert masked_mean(PER_TOKEN, torch.zeros_like(MASK)).item() == 0.0
