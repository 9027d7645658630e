"""Dataclass settings of the GRPO module; attribute docstrings become `--help`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from insight_lightning.policy.shared_prefix import PrefixSharing
from insight_lightning.training.grpo import LOSS_AGGREGATIONS, RolloutCorrection

Schedule = Literal["constant", "linear", "cosine"]


@dataclass
class GRPOConfig:
    """The GRPO objective and how each step's rollouts are turned into updates."""

    group_size: int = 8
    """Completions sampled per prompt (K)."""
    normalize_std: bool = True
    """Divide advantages by the group's std (false: Dr.GRPO)."""
    clip_low: float = 0.2
    """Lower clip range of the probability ratio (1 - clip_low)."""
    clip_high: float = 0.28
    """Upper clip range of the probability ratio (1 + clip_high; DAPO's clip-higher)."""
    dual_clip: float | None = None
    """Dual-clip constant for negative advantages (e.g. 10; null disables it)."""
    loss_aggregation: str = "token_mean"
    """token_mean, seq_mean_token_mean, seq_mean_token_sum or seq_mean_token_sum_norm (Dr.GRPO)."""
    kl_coef: float = 0.0
    """Weight of the k3 KL penalty to the frozen base (LoRA adapter disabled); 0 skips the reference pass."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus."""
    epochs: int = 1
    """Passes over each step's rollouts."""
    mini_batch_size: int | None = None
    """Prompts per optimizer update on each rank (their K completions go together); null: one update per pass."""
    micro_batch_size: int = 64
    """Sequences per forward/backward pass (gradient accumulation within an update; bounds memory)."""
    max_grad_norm: float = 1.0
    """Gradient clipping by global norm (0 disables clipping)."""
    max_steps_without_signal_at_start: int = 10
    """Stop with advice when the first N steps all lacked a learning signal (equal rewards in every group); 0: never."""
    max_consecutive_skips: int = 3
    """Updates in a row with a non-finite loss or gradient norm (each skipped) after which the run stops."""
    logprob_chunk_size: int | None = None
    """Tokens per chunk of the output head + log-softmax (null: about 64 MB of float32 logits, at most 1024)."""
    prefix_sharing: PrefixSharing = "auto"
    """Run a group's shared prompt once in the update (auto: when it saves compute; never: once per completion)."""
    release_update_memory: bool = False
    """CPU: hand the update's freed tensors back to the OS at once (about half the peak RSS, a slower update)."""
    rollout_correction: RolloutCorrection = "auto"
    """Correct for sampling from pi_engine, not pi_old: auto (tis with vLLM, none with hf), none, tis or mask."""
    tis_cap: float = 2.0
    """tis: each token's policy-gradient term is weighted by min(pi_old / pi_engine, tis_cap)."""
    mask_band: tuple[float, float] = (0.5, 2.0)
    """mask: tokens whose ratio pi_old / pi_engine lies outside [low, high] get no policy-gradient term."""

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(
                f"model.grpo.group_size={self.group_size} must be at least 2: GRPO's advantages compare the "
                "completions of the same prompt"
            )
        if self.loss_aggregation not in LOSS_AGGREGATIONS:
            raise ValueError(
                f"model.grpo.loss_aggregation='{self.loss_aggregation}' is not one of "
                f"{', '.join(sorted(LOSS_AGGREGATIONS))}"
            )
        if self.mini_batch_size is not None and self.mini_batch_size <= 0:
            raise ValueError(f"model.grpo.mini_batch_size={self.mini_batch_size} must be positive or null")
        if self.micro_batch_size <= 0:
            raise ValueError(f"model.grpo.micro_batch_size={self.micro_batch_size} must be positive")
        if self.epochs <= 0:
            raise ValueError(f"model.grpo.epochs={self.epochs} must be positive")
        if self.logprob_chunk_size is not None and self.logprob_chunk_size < 1:
            raise ValueError(f"model.grpo.logprob_chunk_size={self.logprob_chunk_size} must be positive or null")
        if self.tis_cap <= 0:
            raise ValueError(f"model.grpo.tis_cap={self.tis_cap} must be positive")
        if not 0 <= self.mask_band[0] <= 1 <= self.mask_band[1]:
            raise ValueError(f"model.grpo.mask_band={list(self.mask_band)} must be [low, high] with low <= 1 <= high")
        if self.max_consecutive_skips < 1:
            raise ValueError(f"model.grpo.max_consecutive_skips={self.max_consecutive_skips} must be at least 1")


@dataclass
class OptimizerConfig:
    """AdamW with linear warm-up and a decay schedule over the RL steps."""

    lr: float = 1e-6
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    warmup_steps: int = 0
    """Steps of linear warm-up from 0."""
    schedule: Schedule = "constant"
    """After warm-up: constant, linear or cosine decay to min_lr_ratio * lr at trainer.max_steps."""
    min_lr_ratio: float = 0.0
    """Final learning rate of the decaying schedules, as a fraction of lr."""


@dataclass
class ValidationConfig:
    """How the validation split is scored (pass@1 over samples, and greedy)."""

    samples_per_problem: int = 4
    """Sampled completions per problem; val/accuracy is their mean correctness (pass@1)."""
    temperature: float = 0.6
    """Sampling temperature of validation."""
    top_p: float = 0.95
    """Nucleus threshold of validation."""
    greedy: bool = True
    """Also decode greedily once per problem (val/accuracy_greedy)."""
    max_new_tokens: int | None = None
    """Longest validation completion (null: rollout.max_new_tokens)."""
    before_training: bool = True
    """Score the validation split before the first RL step (needs trainer.num_sanity_val_steps: -1)."""
    at_end: bool = True
    """Score it again after the last step (trainer.max_steps)."""
    seed: int | None = None
    """Seed of validation sampling (with the step): equal-seed runs evaluate alike, for paired comparisons (hf)."""


@dataclass
class LoggingConfig:
    """Extra TensorBoard output."""

    text_samples_every_n_steps: int = 20
    """Log prompt, completion and reward of a few rollouts every N steps (0: never)."""
    num_text_samples: int = 4
    """Rollouts shown per text sample."""
