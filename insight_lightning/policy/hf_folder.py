"""A model saved as a Hugging Face folder by whichever process calls it, on every rank alike."""

from __future__ import annotations

import copy
from pathlib import Path

from safetensors.torch import save_file
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


def save_hf_folder(model: PreTrainedModel, tokenizer, folder: str | Path) -> None:
    """Config, generation config, safetensors weights and tokenizer in `folder`, as save_pretrained writes them.

    save_pretrained writes nothing on ranks other than 0 once a process group exists, yet under DDP each rank's vLLM
    engine loads its own copy (ranks may sit on different nodes) and any rank may be the first to cache a GGUF
    model's float copy: here every rank writes.
    """
    model = plain_float_model(model)  # a GGUF-loaded model's config would otherwise still name its quantisation
    folder = Path(folder)
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]  # how vLLM picks its implementation
    config.dtype = str(next(model.parameters()).dtype).removeprefix("torch.")  # what vLLM's dtype=auto reads
    config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    weights = model.state_dict()
    output, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    if output is not None and output.weight is embedding.weight:  # tied: stored once, under the embedding's name
        (head,) = [name for name, module in model.named_modules() if module is output]
        del weights[f"{head}.weight"]
    tensors = {name: tensor.detach().contiguous() for name, tensor in weights.items()}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)
