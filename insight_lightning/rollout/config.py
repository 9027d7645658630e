"""The rollout settings of the GRPO module (`model.rollout`): sampling, prompt length, cache, engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from insight_lightning.rollout.engine import KVCache, SamplingParams
from insight_lightning.rollout.vllm_sync import VLLMSettings

Engine = Literal["hf", "vllm", "vllm_server"]


@dataclass
class RolloutConfig(SamplingParams):
    """How training completions are sampled (max_new_tokens, temperature, top_p, top_k) and generated."""

    max_prompt_tokens: int = 1024
    """Longer prompts are cut from the left (and counted in train/truncated_prompts)."""
    cache: KVCache = "dynamic"
    """KV cache of HF generate: dynamic, or static (CUDA only; compiled, much faster per token)."""
    share_prefill: bool = True
    """HF engine, dynamic cache: encode each prompt once and copy its KV cache to its K samples."""
    batch_size: int | None = None
    """Sequences per generate call (null: all of the step's sequences at once)."""
    engine: Engine = "hf"
    """hf (Hugging Face generate on the trained model), vllm (a vLLM engine in this process) or vllm_server."""
    vllm: VLLMSettings = field(default_factory=VLLMSettings)
    """Settings of the vllm and vllm_server engines."""

    def resolved_correction(self, configured: str) -> str:
        """grpo.rollout_correction with auto resolved: tis for the vLLM engines, none for hf."""
        if configured == "auto":
            return "none" if self.engine == "hf" else "tis"
        if configured != "none" and self.engine == "hf":
            raise ValueError(
                f"model.grpo.rollout_correction={configured} needs the rollout engine's log-probs, and the hf engine "
                "samples with the trained model itself (nothing to correct): use rollout.engine vllm or vllm_server, "
                "or set it to none"
            )
        return configured
