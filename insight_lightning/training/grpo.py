"""Pure GRPO math: group advantages, the clipped policy loss, the k3 KL estimator and loss aggregation.

Shapes: P prompts, K completions per prompt, B = P * K sequences (rows), T response tokens per row.
Every function here is pure torch on tensors; the learner (learner.py) orchestrates, it computes no formula inline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "LOSS_AGGREGATIONS",
    "LossAggregation",
    "TokenLoss",
    "aggregate_loss",
    "group_advantages",
    "grpo_token_loss",
    "kl_k3",
    "loss_normalizer",
    "masked_mean",
    "policy_loss",
    "register_loss_aggregation",
    "rollout_correction_weights",
]

_LOG_RATIO_LIMIT = 20.0  # |log pi - log pi_old| is clamped here before exp (as verl does), so exp never overflows


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of x over the positions where mask is true (0 where the mask is empty), over all or one dim."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def group_advantages(rewards: Tensor, normalize_std: bool = True, eps: float = 1e-6) -> Tensor:
    """GRPO advantages: reward minus its group mean, over (unbiased group std + eps) when normalize_std."""
    # rewards: [P, K] (one row per prompt, K completions each) -> advantages [P, K]
    # The std is torch.std's default, unbiased (Bessel, divide by K - 1), as in TRL and verl; normalize_std=False
    # is Dr.GRPO (no division). A group whose rewards are all equal gets exactly 0 (not a rounding residue), and so
    # does a group of K = 1 (its unbiased std is undefined).
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_prompts, K], got shape {tuple(rewards.shape)}")
    rewards = rewards.float()
    centered = rewards - rewards.mean(dim=-1, keepdim=True)  # [P, K]
    if normalize_std and rewards.shape[-1] > 1:
        centered = centered / (rewards.std(dim=-1, keepdim=True) + eps)  # [P, K]
    constant = rewards.amax(dim=-1, keepdim=True) == rewards.amin(dim=-1, keepdim=True)  # [P, 1]
    return centered.masked_fill(constant, 0.0)


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = None,
) -> tuple[Tensor, Tensor]:
    """PPO clipped surrogate per token, clip-higher (DAPO) and optional dual-clip (verl); returns (loss, clipped)."""
    # logp, old_logp: [B, T] log-probs of the sampled tokens under the current / behaviour policy
    # advantages: [B] (one per sequence, broadcast over its tokens)
    # returns loss [B, T] (to be aggregated with a mask) and clipped [B, T] bool: tokens whose gradient a clip cut
    # (the clipped branch of the min was active, or the dual-clip bound for A < 0), the numerator of clip_frac.
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (verl uses 3, the paper setup 10), got {dual_clip}")
    adv = advantages.to(logp.dtype).unsqueeze(-1)  # [B, 1]
    log_ratio = (logp - old_logp).clamp(-_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT)  # [B, T]
    ratio = torch.exp(log_ratio)  # [B, T]
    unclipped = -adv * ratio  # [B, T]
    clipped_loss = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)  # [B, T]
    loss = torch.maximum(unclipped, clipped_loss)  # [B, T]: -min(r A, clip(r) A)
    clipped = clipped_loss > unclipped  # [B, T]
    if dual_clip is not None:
        bound = -adv * dual_clip  # [B, 1]: for A < 0 the loss may not exceed -dual_clip * A
        dual_active = (adv < 0) & (loss > bound)  # [B, T]
        loss = torch.where(dual_active, bound.expand_as(loss), loss)
        clipped = clipped | dual_active
    return loss, clipped


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(pi || ref) per token: exp(ref - logp) - (ref - logp) - 1, never negative."""
    # logp, ref_logp: [B, T] -> [B, T]; unbiased for KL(pi || ref) when tokens are sampled from pi
    log_ratio = (ref_logp - logp).clamp(-_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT)  # [B, T]
    return torch.exp(log_ratio) - log_ratio - 1.0


class TokenLoss(NamedTuple):
    """The per-token GRPO objective and its terms, [B, T] each (aggregate with a mask)."""

    loss: Tensor
    """pg + kl_coef * kl - entropy_coef * entropy: what is minimised."""
    pg: Tensor
    """The clipped policy-gradient surrogate."""
    clipped: Tensor
    """bool: tokens whose gradient a clip cut."""
    kl: Tensor
    """k3 estimate of KL(pi || ref) (zeros without a KL term)."""


def grpo_token_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    entropy: Tensor,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None = None,
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
    entropy_coef: float = 0.0,
    rollout_weights: Tensor | None = None,
) -> TokenLoss:
    """The GRPO objective per token: clipped surrogate (times the rollout correction's weights, if any), plus a k3 KL
    penalty, minus an entropy bonus."""
    # logp, old_logp, entropy, ref_logp, rollout_weights: [B, T]; advantages: [B]
    pg, clipped = policy_loss(logp, old_logp, advantages, clip_low, clip_high, dual_clip)  # [B, T]
    loss = pg if rollout_weights is None else pg * rollout_weights
    kl = torch.zeros_like(pg)
    if kl_coef > 0:
        if ref_logp is None:
            raise ValueError("kl_coef > 0 needs the reference log-probs (ref_logp)")
        kl = kl_k3(logp, ref_logp)
        loss = loss + kl_coef * kl
    if entropy_coef > 0:
        loss = loss - entropy_coef * entropy
    return TokenLoss(loss, pg, clipped, kl)


# ----------------------------------------------------------------------------------------------------------------
# Rollout correction. An engine other than the trainer's forward (vLLM: other kernels, other precision, a LoRA served
# by other code) samples from pi_behaviour, not exactly from pi_old, the trainer's own distribution at rollout time.
# Token-level truncated importance sampling (TIS, as TRL and verl) weights each token's policy-gradient term by
# min(pi_old / pi_behaviour, cap); masking drops the term of tokens whose ratio lies outside [low, high].
# ----------------------------------------------------------------------------------------------------------------

RolloutCorrection = Literal["auto", "none", "tis", "mask"]


def rollout_correction_weights(
    old_logp: Tensor, behaviour_logp: Tensor, mode: str, cap: float = 2.0, band: tuple[float, float] = (0.5, 2.0)
) -> tuple[Tensor | None, Tensor]:
    """(weights of the pg term or None for mode none, the ratio pi_old / pi_behaviour) per token."""
    # old_logp, behaviour_logp: [B, T] (detached) -> weights [B, T] or None, ratio [B, T]
    log_ratio = (old_logp - behaviour_logp).clamp(-_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT)
    ratio = torch.exp(log_ratio)  # [B, T]
    if mode == "none":
        return None, ratio
    if mode == "tis":
        return ratio.clamp(max=cap), ratio
    if mode == "mask":
        low, high = band
        return ((ratio >= low) & (ratio <= high)).to(ratio.dtype), ratio
    raise ValueError(f"rollout correction must be none, tis or mask, got '{mode}'")


# ----------------------------------------------------------------------------------------------------------------
# Loss aggregation. A mini-batch of B rows is split into micro-batches for gradient accumulation; the loss of the
# mini-batch must not depend on that split. Each mode is therefore "a sum over rows and tokens" divided by a
# normalizer that is computed once over the whole mini-batch:
#     norm = loss_normalizer(mask_of_minibatch, mode, max_response_length)
#     for micro in micro_batches: aggregate_loss(per_token_micro, mask_micro, mode, norm).backward()
# and the micro-batch losses sum exactly to the single-shot loss of the mini-batch.
# ----------------------------------------------------------------------------------------------------------------


class LossAggregation(NamedTuple):
    """A loss aggregation mode: an additive numerator and the mini-batch normalizer it is divided by."""

    numerator: Callable[[Tensor, Tensor], Tensor]
    """(per_token [b, T], mask [b, T] float) -> scalar sum, additive over micro-batches."""
    normalizer: Callable[[Tensor, int | None], float]
    """(mask of the whole mini-batch [B, T], max_response_length) -> float."""


LOSS_AGGREGATIONS: dict[str, LossAggregation] = {}


def register_loss_aggregation(
    name: str, normalizer: Callable[[Tensor, int | None], float]
) -> Callable[[Callable[[Tensor, Tensor], Tensor]], Callable[[Tensor, Tensor], Tensor]]:
    """Decorator registering a numerator function under name, with its mini-batch normalizer."""

    def decorator(numerator: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
        if name in LOSS_AGGREGATIONS:
            raise ValueError(f"loss aggregation {name!r} is already registered")
        LOSS_AGGREGATIONS[name] = LossAggregation(numerator, normalizer)
        return numerator

    return decorator


def _get_aggregation(mode: str) -> LossAggregation:
    """The registered aggregation called mode, or a ValueError naming the known ones."""
    try:
        return LOSS_AGGREGATIONS[mode]
    except KeyError:
        raise ValueError(
            f"unknown loss aggregation {mode!r}; choose one of: {', '.join(sorted(LOSS_AGGREGATIONS))}"
        ) from None


def _count_tokens(mask: Tensor, max_response_length: int | None) -> float:
    """Number of valid tokens."""
    return float(mask.sum())


def _count_sequences(mask: Tensor, max_response_length: int | None) -> float:
    """Number of rows with at least one valid token."""
    return float((mask.sum(-1) > 0).sum())


def _count_token_slots(mask: Tensor, max_response_length: int | None) -> float:
    """Rows times the constant max response length (the padded width when none is given): Dr.GRPO."""
    return float(mask.shape[0] * (max_response_length if max_response_length is not None else mask.shape[-1]))


def _row_token_sums(per_token: Tensor, mask: Tensor) -> Tensor:
    """Per-row sum of the masked per-token values."""
    return (per_token * mask).sum(-1)  # [b]


@register_loss_aggregation("token_mean", normalizer=_count_tokens)
def _token_mean(per_token: Tensor, mask: Tensor) -> Tensor:
    """Sum over all valid tokens (divided by the mini-batch's valid token count): DAPO's token-level loss."""
    return _row_token_sums(per_token, mask).sum()


@register_loss_aggregation("seq_mean_token_mean", normalizer=_count_sequences)
def _seq_mean_token_mean(per_token: Tensor, mask: Tensor) -> Tensor:
    """Sum over rows of each row's token mean (divided by the number of non-empty rows): original GRPO."""
    return (_row_token_sums(per_token, mask) / mask.sum(-1).clamp(min=1.0)).sum()


@register_loss_aggregation("seq_mean_token_sum", normalizer=_count_sequences)
def _seq_mean_token_sum(per_token: Tensor, mask: Tensor) -> Tensor:
    """Sum over rows of each row's token sum (divided by the number of non-empty rows)."""
    return _row_token_sums(per_token, mask).sum()


@register_loss_aggregation("seq_mean_token_sum_norm", normalizer=_count_token_slots)
def _seq_mean_token_sum_norm(per_token: Tensor, mask: Tensor) -> Tensor:
    """Sum over all valid tokens (divided by rows x max response length, a constant): Dr.GRPO."""
    return _row_token_sums(per_token, mask).sum()


def loss_normalizer(mask: Tensor, mode: str, max_response_length: int | None = None) -> float:
    """The denominator of mode over the whole mini-batch (at least 1), computed once before its micro-batches."""
    # mask: [B, T] valid-token mask of the whole mini-batch (all its micro-batches)
    return max(_get_aggregation(mode).normalizer(mask, max_response_length), 1.0)


def aggregate_loss(per_token: Tensor, mask: Tensor, mode: str, normalizer: float) -> Tensor:
    """One micro-batch's share of the mini-batch loss; the shares of all micro-batches sum to the mini-batch loss."""
    # per_token: [b, T], mask: [b, T] (bool or float) -> scalar
    return _get_aggregation(mode).numerator(per_token, mask.to(per_token.dtype)) / normalizer
