"""The policy: the trained causal LM with its tokenizer, prompt encoder and rollout engine, as one object.

Everything a training step needs of the model goes through it: completions (`sample`), token log-probs under the
current weights (`logprobs`) and under the frozen base (`reference_logprobs`). The rollout engine is a constructor
argument: an engine other than Hugging Face generate plugs in at `build_policy`, not in the LightningModule.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from insight_lightning.policy.fsdp import shard_policy, unsharded_for_generation
from insight_lightning.policy.hf_folder import save_hf_folder
from insight_lightning.policy.loading import (
    PolicyConfig,
    apply_adapter,
    build_base_policy,
    dequantised_copy,
    resolve_model_name,
)
from insight_lightning.policy.logprobs import sequence_logprobs
from insight_lightning.policy.prompts import PromptEncoder
from insight_lightning.policy.shared_prefix import PrefixSharing
from insight_lightning.rollout.config import RolloutConfig
from insight_lightning.rollout.engine import (
    HFGenerateEngine,
    RolloutBatch,
    RolloutEngine,
    SamplingParams,
    concat_rollouts,
)
from insight_lightning.rollout.vllm_colocated import VLLMColocatedEngine
from insight_lightning.rollout.vllm_server import VLLMServerEngine, probe_of
from tasks.base import Prompt


class Policy(nn.Module):
    """A causal LM (LoRA-wrapped or fully trained) that samples completions and scores tokens.

    Args:
        model: the Hugging Face causal LM, usually a PeftModel around the frozen base.
        tokenizer: its tokenizer (left padding, a pad token).
        prompts: renders task prompts (chat template included) and encodes them.
        engine: samples completions from the model.
        generate_batch_size: sequences per engine call (None: all of a call's sequences at once).
        logprob_chunk_size: positions per chunk of the output head + log-softmax.
        prefix_sharing: whether rows of one prompt run it once when scored (insight_lightning.policy.shared_prefix).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        prompts: PromptEncoder,
        engine: RolloutEngine,
        generate_batch_size: int | None = None,
        logprob_chunk_size: int = 1024,
        prefix_sharing: PrefixSharing = "auto",
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.engine = engine
        self.generate_batch_size = generate_batch_size
        self.logprob_chunk_size = logprob_chunk_size
        self.prefix_sharing = prefix_sharing
        self.fsdp_units: list[nn.Module] = []  # FSDP2 units, root last (empty: not sharded)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def render(self, prompt: Prompt) -> str:
        """The exact text the model continues from."""
        return self.prompts.render(prompt)

    def sample(self, prompts: list[Prompt], n: int, params: SamplingParams) -> tuple[RolloutBatch, list[str]]:
        """n completions per prompt ([len(prompts) * n] rows, prompt-major) and their decoded texts."""
        texts = [self.prompts.render(p) for p in prompts]
        prompt_ids, prompt_mask = self.prompts.encode(texts, self.device)  # [b, P]
        # whole prompts per engine call, about generate_batch_size sequences each
        chunk = max(1, (self.generate_batch_size or prompt_ids.shape[0] * n) // n)
        with unsharded_for_generation(self.fsdp_units):
            parts = [
                self.engine.generate(self.model, prompt_ids[i : i + chunk], prompt_mask[i : i + chunk], params, n)
                for i in range(0, prompt_ids.shape[0], chunk)
            ]
        rollout = concat_rollouts(parts, self.pad_token_id)
        completions = self.tokenizer.batch_decode(rollout.completion_ids, skip_special_tokens=True)
        return rollout, completions

    def weights_updated(self) -> None:
        """The trainer changed the weights (an update, a checkpoint load): an engine with its own copy syncs."""
        self.engine.weights_updated()

    def logprobs(
        self, input_ids: Tensor, attention: Tensor, scored: Tensor, temperature: float, with_entropy: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Log-probs (and entropies) of the scored tokens under the current weights, [B, L] each."""
        return sequence_logprobs(
            self.model,
            input_ids,
            attention,
            scored,
            temperature,
            self.logprob_chunk_size,
            with_entropy,
            self.prefix_sharing,
        )

    @torch.no_grad()
    def reference_logprobs(self, input_ids: Tensor, attention: Tensor, scored: Tensor, temperature: float) -> Tensor:
        """Log-probs under the frozen base: the same weights with the LoRA adapter switched off (no copy), [B, L]."""
        with self.model.disable_adapter():
            chunk, sharing = self.logprob_chunk_size, self.prefix_sharing
            return sequence_logprobs(self.model, input_ids, attention, scored, temperature, chunk, False, sharing)[0]

    def shard(self, mesh) -> None:
        """FSDP2: every decoder layer and the model become fully_shard units over the mesh (in place)."""
        self.fsdp_units = shard_policy(self.model, mesh)


def end_of_sequence_ids(model: PreTrainedModel, tokenizer) -> list[int]:
    """The token ids that end a completion: the generation config's, else the tokenizer's EOS."""
    eos = model.generation_config.eos_token_id
    return eos if isinstance(eos, list) else [eos if eos is not None else tokenizer.eos_token_id]


def build_policy(
    config: PolicyConfig,
    rollout: RolloutConfig,
    logprob_chunk_size: int | None,
    device: torch.device,
    before_adapter: Callable[[PreTrainedModel, PromptEncoder], None] | None = None,
    max_completion_tokens: int | None = None,
    seed: int = 0,
    prefix_sharing: PrefixSharing = "auto",
    rank: int = 0,
) -> Policy:
    """Load the base model, let `before_adapter` train it (the warm-start), add the adapter, choose the engine."""
    base, tokenizer = build_base_policy(config, device.type)
    # prompts are rendered (chat template included) the same for the warm-start and for RL
    prompts = PromptEncoder(tokenizer, config.chat_template_kwargs, rollout.max_prompt_tokens)
    if before_adapter is not None:
        before_adapter(base, prompts)
    max_len = rollout.max_prompt_tokens + max(rollout.max_new_tokens, max_completion_tokens or 0)
    engine = build_engine(config, rollout, base, tokenizer, device, before_adapter is not None, max_len, seed, rank)
    model = apply_adapter(base, config)
    chunk = logprob_chunk_size or auto_logprob_chunk_size(model.get_output_embeddings().weight.shape[0])
    return Policy(model, tokenizer, prompts, engine, rollout.batch_size, chunk, prefix_sharing)


def build_engine(
    config: PolicyConfig,
    rollout: RolloutConfig,
    base: PreTrainedModel,
    tokenizer,
    device: torch.device,
    warm_started: bool,
    max_model_len: int,
    seed: int,
    rank: int = 0,
) -> RolloutEngine:
    """The rollout engine of rollout.engine; a vLLM engine loads the base model before any adapter is added."""
    eos, pad = end_of_sequence_ids(base, tokenizer), tokenizer.pad_token_id
    if rollout.engine == "hf":
        return HFGenerateEngine(eos, pad, cache=rollout.cache, share_prefill=rollout.share_prefill)
    lora_rank = config.lora.r if config.lora is not None else None
    if rollout.engine == "vllm_server":
        if rollout.vllm.lora_sync == "merged":
            raise ValueError(
                "rollout.vllm.lora_sync=merged folds the adapter into the colocated engine's weights; a vLLM server "
                "keeps its own: use lora_sync=adapter with rollout.engine=vllm_server"
            )
        if lora_rank is None:
            raise ValueError(
                "rollout.engine=vllm_server syncs LoRA adapters only; full fine-tuning (policy.lora: null) needs "
                "the colocated engine (rollout.engine=vllm)"
            )
        if warm_started or config.is_tiny:
            raise ValueError(
                "rollout.engine=vllm_server serves the base model the server loaded; a warm-started or tiny base "
                "exists only in this process: use rollout.engine=vllm (colocated), or serve a saved model"
            )
        probe = probe_of(base, tokenizer, config.name)  # what the server must reproduce: the trainer's base model
        return VLLMServerEngine(resolve_model_name(config.name), rollout.vllm, eos, pad, lora_rank, probe, rank)
    limit = getattr(base.config, "max_position_embeddings", None)
    settings = rollout.vllm
    if settings.dtype == "auto":  # vLLM's auto is bfloat16 on CPU; sample with the weights the trainer scores with
        settings = replace(settings, dtype=str(base.dtype).removeprefix("torch."))
    folder = vllm_base_folder(config, base, tokenizer, warm_started)
    owned = folder if Path(folder).name.startswith(BASE_FOLDER_PREFIX) else None
    max_len = min(max_model_len, limit) if limit else max_model_len
    # vLLM joins the trainer's process group when there is one (DDP): every rank's engine is built here, in setup
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    return VLLMColocatedEngine(folder, settings, eos, pad, lora_rank, max_len, seed, device, owned, rank, world_size)


BASE_FOLDER_PREFIX = "insight_lightning_vllm_base_"


def vllm_base_folder(config: PolicyConfig, base: PreTrainedModel, tokenizer, warm_started: bool) -> str:
    """What vLLM loads: the model's own name or folder, or, for a base that exists only here (the tiny model, a
    warm-started or GGUF-dequantised one), a copy saved once as a Hugging Face folder."""
    if not (config.is_tiny or warm_started or config.gguf_file):
        return resolve_model_name(config.name)
    copy = dequantised_copy(config) if not warm_started else None
    if copy is not None:
        return str(copy)  # the GGUF model's float copy is already a Hugging Face folder
    folder = tempfile.mkdtemp(prefix=BASE_FOLDER_PREFIX)
    save_hf_folder(base, tokenizer, folder)
    return folder


LOGPROB_CHUNK_ELEMENTS = 1 << 24
"""Logits per chunk of the automatic chunk size: 64 MB in float32 (the log-softmax and its exp hold a few such)."""


def auto_logprob_chunk_size(vocab_size: int) -> int:
    """Tokens per log-prob chunk for this vocabulary: 341 for SmolLM2's 49k, 110 for Qwen's 152k, 1024 at most.

    Measured on SmolLM2-135M (16 x 144 tokens, LoRA, checkpointing): 1024-token chunks peak at 2.1 GB RSS, 341-token
    ones at 1.4 GB; the head's matmul stays large enough to run at full speed.
    """
    return max(16, min(1024, LOGPROB_CHUNK_ELEMENTS // max(vocab_size, 1)))
