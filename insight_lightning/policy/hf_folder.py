"""A model saved as a Hugging Face folder by whichever process calls it, on every rank alike."""

from __future__ import annotations

from pathlib import Path

from torch import nn
from transformers import PreTrainedModel


def plain_float_model(model: nn.Module) -> nn.Module:
    """The model without its GGUF loading state, so that save_pretrained writes plain safetensors."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return model
    method = getattr(quantizer.quantization_config, "quant_method", None)
    if getattr(method, "value", method) != "gguf":
        return model  # another quantizer: save_pretrained serialises it (or says why not)
    if any(not p.is_floating_point() for p in model.parameters()):
        raise ValueError(
            "The policy was loaded with its GGUF weights kept packed (the `kernels` package is installed), so they "
            "cannot be merged and saved: uninstall `kernels` to load them dequantised, then export again."
        )
    # The weights were dequantised at load: only the quantizer bookkeeping makes save_pretrained refuse.
    quantizer.remove_quantization_config(model)
    return model


RANK_GATE = "should_save_on_this_rank"
"""What transformers 5's save_pretrained asks before writing: no on every rank but 0 once a process group exists."""


def save_hf_folder(model: PreTrainedModel, tokenizer, folder: str | Path) -> None:
    """`save_pretrained` of the model and its tokenizer into `folder`, written by this process whatever its rank.

    Under DDP each rank's vLLM engine loads its own copy of a tiny or warm-started base (ranks may sit on different
    nodes), and any rank may be the first to cache a GGUF model's float copy. Only the rank gate is lifted: the rest
    of save_pretrained (tied weights, key conversions, shards) is unchanged.
    """
    model = plain_float_model(model)  # a GGUF-loaded model's quantizer would otherwise refuse to save
    setattr(model, RANK_GATE, lambda is_main_process: is_main_process)  # an instance attribute shadows the method
    try:
        model.save_pretrained(folder, safe_serialization=True)
    finally:
        delattr(model, RANK_GATE)
    tokenizer.save_pretrained(folder)
