"""Training that has diverged: the error that stops it, and the checks that keep non-finite values out of
checkpoints and rollouts."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributed.tensor import DTensor


class DivergedError(ValueError):
    """The policy's updates, weights or probabilities are no longer finite; the run stops with what to change."""


def check_finite_weights(state: dict[str, Tensor], step: int) -> None:
    """Refuse to checkpoint non-finite trained weights (the last checkpoint written stays the latest good one).

    Under FSDP2 each rank holds a shard: the verdict is agreed over ranks, so that no rank waits for another in
    the save's collectives.
    """
    bad = [name for name, value in state.items() if _has_non_finite(value)]
    count = torch.tensor(float(len(bad)))
    sharded = any(isinstance(v, DTensor) for v in state.values())
    if sharded and torch.distributed.is_initialized():
        device = next(v for v in state.values() if isinstance(v, DTensor)).to_local().device
        count = count.to(device)
        torch.distributed.all_reduce(count)
    if count.item() > 0:
        example = f" (e.g. {bad[0]})" if bad else ""
        raise DivergedError(
            f"Step {step}: {int(count.item())} trained weight tensors hold inf or nan{example}, so no checkpoint was "
            "written (the earlier ones are intact); the training has diverged: lower model.optimizer.lr or clip "
            "gradients."
        )


def _has_non_finite(value) -> bool:
    if not isinstance(value, Tensor) or not value.is_floating_point():
        return False
    local = value.to_local() if isinstance(value, DTensor) else value
    return not bool(torch.isfinite(local).all())


def explain_sampling_failure(error: RuntimeError) -> DivergedError | None:
    """The one-sentence error for sampling from non-finite probabilities (torch.multinomial's), else None."""
    if "probability tensor contains" not in str(error):
        return None
    return DivergedError(
        "Sampling failed: the policy's next-token probabilities hold inf or nan, so its weights have diverged "
        "(see train/grad_norm and train/skipped_updates); lower model.optimizer.lr or clip gradients."
    )
