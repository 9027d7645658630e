"""Cross-field checks of the settings, run before any model is loaded or warm-started (one sentence each)."""

from __future__ import annotations

import warnings

import torch
from lightning.pytorch.strategies import DDPStrategy

from insight_lightning.policy.loading import PolicyConfig
from insight_lightning.rollout.config import RolloutConfig
from insight_lightning.training.config import GRPOConfig, ValidationConfig


def check_model_settings(policy: PolicyConfig, grpo: GRPOConfig) -> None:
    """Settings that contradict each other whatever the hardware."""
    if grpo.kl_coef > 0 and policy.lora is None:
        raise ValueError(
            f"model.grpo.kl_coef={grpo.kl_coef} needs a LoRA policy (model.policy.lora): the KL reference is the base "
            "with the adapter disabled"
        )


def check_validation_settings(validation: ValidationConfig, rollout: RolloutConfig) -> None:
    """A validation seed pairs evaluations only where the seeded generator samples (the hf engine)."""
    if validation.seed is not None and rollout.engine != "hf":
        raise ValueError(
            f"model.validation.seed seeds the hf engine's sampling; rollout.engine={rollout.engine} samples "
            "with vLLM's own generator, so the seed would silently not pair evaluations: leave it null"
        )


NEAR_GREEDY_TEMPERATURE = 1e-3
"""Below this, sampling is greedy in all but name."""
NEAR_GREEDY_TOP_P = 0.01
"""Below this, the nucleus is the most likely token alone at nearly every step."""


def check_sampling_settings(rollout: RolloutConfig) -> None:
    """Raise ValueError for sampling settings out of range; warn once for those that make GRPO learn nothing."""
    for name, value, valid, bound in (
        ("max_new_tokens", rollout.max_new_tokens, rollout.max_new_tokens >= 1, "at least 1"),
        ("temperature", rollout.temperature, rollout.temperature >= 0, ">= 0 (0: greedy)"),
        ("top_p", rollout.top_p, 0 <= rollout.top_p <= 1, "in [0, 1] (1: off)"),
        ("top_k", rollout.top_k, rollout.top_k >= 0, ">= 0 (0: off)"),
    ):
        if not valid:
            raise ValueError(f"model.rollout.{name}={value} must be {bound}")
    greedy = (
        ("temperature", rollout.temperature, rollout.temperature < NEAR_GREEDY_TEMPERATURE),
        ("top_k", rollout.top_k, rollout.top_k == 1),
        ("top_p", rollout.top_p, rollout.top_p < NEAR_GREEDY_TOP_P),
    )
    for name, value, near_greedy in greedy:
        if near_greedy:
            warnings.warn(
                f"model.rollout.{name}={value} makes training rollouts (near-)greedy: the K completions of a prompt "
                "come out identical, so every group's advantages are 0 and GRPO learns nothing; sample with "
                "temperature ~1, top_k 0 and top_p 1 (validation has its own settings)",
                UserWarning,
                stacklevel=2,
            )
            return


def check_strategy_settings(rollout: RolloutConfig, device: torch.device, mesh, strategy=None) -> None:
    """Settings the run's device or strategy cannot honour; mesh: ModelParallelStrategy's device mesh (or None)."""
    several_ranks = getattr(strategy, "world_size", 1) > 1
    if rollout.engine == "vllm" and several_ranks and not isinstance(strategy, DDPStrategy):
        # an engine per rank is built and tested under DDP; sharded strategies (FSDP2, FSDP, DeepSpeed) would need
        # each rank's engine fed the whole model gathered from the shards at every sync
        raise ValueError(
            f"model.rollout.engine=vllm (colocated) runs on several ranks under DDP only, not "
            f"{type(strategy).__name__}: use trainer.strategy=ddp (an engine per rank), or rollout.engine=hf"
        )
    if mesh is not None and mesh.size() != mesh["data_parallel"].size():
        raise ValueError(
            "ModelParallelStrategy: only data parallelism (FSDP2) is supported; set tensor_parallel_size: 1"
        )
    if mesh is not None and rollout.cache == "static":
        raise ValueError("model.rollout.cache=static is not supported with FSDP2 (ModelParallelStrategy); use dynamic")
    if rollout.cache == "static" and device.type != "cuda":
        raise ValueError("model.rollout.cache=static needs a CUDA device; use cache=dynamic on CPU")
