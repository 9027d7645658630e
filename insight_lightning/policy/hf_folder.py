"""A model saved as a Hugging Face folder by whichever process calls it, on every rank alike."""

from __future__ import annotations

import copy
from pathlib import Path

from safetensors.torch import save_file
from transformers import PreTrainedModel

from insight_lightning.policy.gguf_cache import plain_float_model


def save_hf_folder(model: PreTrainedModel, tokenizer, folder: str | Path) -> None:
    """Config, generation config, safetensors weights and tokenizer in `folder`, as save_pretrained writes them.

    save_pretrained writes nothing on ranks other than 0 once a process group exists; under DDP each rank's vLLM
    engine loads its own copy (ranks may sit on different nodes), so every rank writes one.
    """
    model = plain_float_model(model)  # a GGUF-loaded model's config would otherwise still name its quantisation
    folder = Path(folder)
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]  # how vLLM picks its implementation
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
