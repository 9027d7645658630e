"""Cross-field checks of the settings, run before any model is loaded or warm-started (one sentence each)."""

from __future__ import annotations

import torch

from insight_lightning.config import GRPOConfig, RolloutConfig
from insight_lightning.model_loading import PolicyConfig


def check_model_settings(policy: PolicyConfig, grpo: GRPOConfig) -> None:
    """Settings that contradict each other whatever the hardware."""
    if grpo.kl_coef > 0 and policy.lora is None:
        raise ValueError("grpo.kl_coef > 0 needs a LoRA policy: the reference is the base with the adapter disabled")


def check_strategy_settings(rollout: RolloutConfig, device: torch.device, mesh) -> None:
    """Settings the run's device or strategy cannot honour; mesh: ModelParallelStrategy's device mesh (or None)."""
    if mesh is not None and mesh.size() != mesh["data_parallel"].size():
        raise ValueError(
            "ModelParallelStrategy: only data parallelism (FSDP2) is supported; set tensor_parallel_size: 1"
        )
    if mesh is not None and rollout.cache == "static":
        raise ValueError("rollout.cache=static is not supported with FSDP2 (ModelParallelStrategy); use dynamic")
    if rollout.cache == "static" and device.type != "cuda":
        raise ValueError("rollout.cache=static needs a CUDA device; use cache=dynamic on CPU")
