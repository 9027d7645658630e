"""An offline, in-process policy: a character-level tokenizer and a small Llama- or Qwen2-style causal LM."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
CHARACTERS = string.printable.replace("\x0b", "").replace("\x0c", "").replace("\r", "")  # printable ASCII + \t \n


@dataclass
class TinyModelConfig:
    """Shape of the in-process model used when `policy.name` is `tiny`."""

    architecture: Literal["llama", "qwen2"] = "llama"
    """Model family of the tiny policy: llama or qwen2."""
    hidden_size: int = 128
    """Width of the residual stream."""
    num_layers: int = 4
    """Number of decoder layers."""
    num_heads: int = 4
    """Attention heads per layer."""
    intermediate_size: int = 384
    """Width of the MLP."""
    num_kv_heads: int | None = None
    """Key/value heads (grouped-query attention); null: as many as num_heads."""
    max_positions: int = 256
    """Longest prompt + completion in tokens (characters)."""
    vocab_size: int | None = None
    """Output vocabulary; null: the character tokenizer's. Larger values only shape benchmarks like real models."""
    seed: int = 0
    """Seed of the random initialisation."""


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per printable ASCII character, plus pad/eos/unk; left padding for generation."""
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *CHARACTERS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side="left"
    )
    return tokenizer


def build_tiny_model(config: TinyModelConfig, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """A freshly initialised small causal LM sized for the character tokenizer."""
    common = dict(
        vocab_size=max(config.vocab_size or 0, len(tokenizer)),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads or config.num_heads,
        max_position_embeddings=config.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    families = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
    if config.architecture not in families:
        raise ValueError(f"Unknown tiny architecture '{config.architecture}'; choose one of {sorted(families)}")
    config_cls, model_cls = families[config.architecture]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = model_cls(config_cls(**common))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model
