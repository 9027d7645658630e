"""FSDP2 (`fully_shard`) for the policy, under Lightning's ModelParallelStrategy: sharding, scoring, rollouts.

Each decoder layer is one FSDP unit and the Hugging Face model (not the PeftModel around it) is the root unit, which
holds the embeddings, the final norm and the output head (tied or not). LoRA weights live inside the layers' units.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from insight_lightning.policy.logprobs import SCORED_LOGPROBS_METHOD, scored_logprobs

__all__ = ["gradient_sync", "shard_policy", "unsharded_for_generation"]


def base_model(policy: nn.Module) -> nn.Module:
    """The Hugging Face model inside a PeftModel (or the model itself)."""
    return policy.get_base_model() if hasattr(policy, "get_base_model") else policy


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a Hugging Face model, found by its `_no_split_modules` class names."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(
            f"Cannot shard {type(model).__name__} with FSDP2: it names no decoder-layer class in _no_split_modules"
        )
    return layers


def shard_policy(policy: nn.Module, mesh) -> list[nn.Module]:
    """Apply fully_shard to every decoder layer, then to the model as the root unit; in place.

    Returns the FSDP units, the root last: the contexts below take this list (kept by the caller, not searched
    for again every step).
    """
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    model = base_model(policy)
    layers = decoder_layers(model)
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    # The scoring pass calls the decoder backbone and the head directly (logits only for scored tokens), not the
    # root forward; registered as an FSDP forward method it runs the root unit's gather and gradient hooks.
    setattr(model, SCORED_LOGPROBS_METHOD, types.MethodType(scored_logprobs, model))
    register_fsdp_forward_method(model, SCORED_LOGPROBS_METHOD)
    return [*layers, model]


@contextmanager
def gradient_sync(units: list[nn.Module], enabled: bool) -> Iterator[None]:
    """Reduce-scatter gradients in this backward only when enabled (accumulate locally otherwise); no units: no-op."""
    for unit in units:
        unit.set_requires_gradient_sync(enabled, recurse=False)
    try:
        yield
    finally:
        for unit in units:
            unit.set_requires_gradient_sync(True, recurse=False)


@contextmanager
def unsharded_for_generation(units: list[nn.Module]) -> Iterator[None]:
    """Hold every weight of the units (from shard_policy) gathered while generating, then free the gathered copies.

    Without this each decode step would all-gather every layer again (about 3x slower), and ranks whose
    sequences finish after different numbers of steps would issue different numbers of collectives and hang.
    Gathering once up front costs the same collectives on every rank; decode steps then communicate nothing. The
    price: every rank holds the whole model's weights while it generates.
    """
    layers = units[:-1]  # the root unit (last) keeps its weights gathered after forward anyway
    for unit in layers:
        unit.set_reshard_after_forward(False, recurse=False)
    for unit in units:
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
        for unit in layers:
            unit.set_reshard_after_forward(True, recurse=False)
