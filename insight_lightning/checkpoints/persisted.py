"""What a checkpoint holds of the policy (the trained weights only) and every rank's random generators."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from insight_lightning.checkpoints.rng import capture_rng_state, restore_rng_state


def persisted_keys(module: nn.Module, keep_base: bool) -> set[str]:
    """State-dict keys a checkpoint keeps: the trainable weights; with keep_base (the in-process tiny model, whose
    warm-started base no hub can give back) every weight."""
    if keep_base:
        return set(module.state_dict().keys())
    return {name for name, p in module.named_parameters() if p.requires_grad}


def trained_state(state: dict, keep: set[str]) -> dict:
    """The checkpoint's state dict reduced to the kept keys; a sharded (FSDP2 distributed) one stays whole, since
    its loader asks for the model's full key set."""
    if any(isinstance(v, DTensor) for v in state.values()):
        return state
    return {k: v for k, v in state.items() if k in keep}


def save_training_state(
    checkpoint: dict, keep: set[str], world_size: int, policy_settings: dict, rollouts_generated: int
) -> dict:
    """Reduce the checkpoint's weights to the kept ones and add what a run needs to continue exactly: every rank's
    generators, the policy settings, the rollouts counted so far, the saved weight names. Returns the kept weights."""
    state = checkpoint["state_dict"] = trained_state(checkpoint["state_dict"], keep)
    checkpoint["insight_lightning"] = {
        "rng_per_rank": rng_states_of_all_ranks(world_size),
        "policy": policy_settings,
        "rollouts_generated": rollouts_generated,
        "weights": sorted(state),
    }
    return {k: v for k, v in state.items() if k in keep}


def load_training_state(checkpoint: dict, keep: set[str], rank: int, world_size: int) -> int:
    """Check the checkpoint has every kept weight, restore this rank's generators; returns the rollouts so far."""
    extra = checkpoint.get("insight_lightning", {})
    # FSDP2 loads the weights itself and hands the hook the checkpoint without them: use the saved key list.
    check_weights_present(checkpoint.get("state_dict", extra.get("weights", [])), keep)
    restore_rank_rng(extra.get("rng_per_rank") or [extra.get("rng")], rank, world_size)
    return int(extra.get("rollouts_generated", 0))


def check_weights_present(saved: set[str] | list[str], keep: set[str]) -> None:
    """Refuse a checkpoint that lacks weights this policy trains (another model or adapter configuration)."""
    missing = sorted(keep - set(saved))
    if missing:
        raise ValueError(
            f"The checkpoint lacks {len(missing)} weights this policy trains (e.g. {missing[0]}): it was written "
            "for a different model or adapter configuration."
        )


def rng_states_of_all_ranks(world_size: int) -> list[dict]:
    """Every rank's generator states, in rank order (Lightning dumps checkpoints on all ranks, rank 0 writes)."""
    state = capture_rng_state()
    if world_size == 1 or not torch.distributed.is_initialized():
        return [state]
    states: list[dict | None] = [None] * world_size
    torch.distributed.all_gather_object(states, state)
    return states


def restore_rank_rng(per_rank: list[dict | None], rank: int, world_size: int) -> None:
    """Restore this rank's generators; with a different number of ranks than saved, rank 0's.

    Ranks sample different prompts, so their generators drift apart (a rank whose sequences end early draws fewer
    tokens): each rank continues its own stream.
    """
    restore_rng_state(per_rank[rank] if len(per_rank) == world_size else per_rank[0])
