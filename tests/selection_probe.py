"""A test-only callback that records each rank's selections, beliefs and trained weights to a file."""

import os

import lightning as L
import torch
from torch.distributed.tensor import DTensor

from insight_lightning.selection.callback import SelectionCallback


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a (FSDP2-sharded) DTensor; a plain tensor as it is."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


class SelectionProbe(L.Callback):
    """Writes {out_dir}/rank{r}.pt at the end of fit: selected ids per step, posterior, trainable weights."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.selections: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.selections.append(batch.selection.ids.tolist())  # the step's selection, before any extra rounds

    def on_train_end(self, trainer, pl_module) -> None:
        posterior = SelectionCallback.of(trainer).selector.posterior
        weights = {n: _full(p).detach().cpu().clone() for n, p in pl_module.named_parameters() if p.requires_grad}
        os.makedirs(self.out_dir, exist_ok=True)
        torch.save(
            {
                "selections": self.selections,
                "alpha": posterior.alpha.cpu(),
                "beta": posterior.beta.cpu(),
                "weights": weights,
                "global_step": trainer.global_step,
                "sharded": any(isinstance(p, DTensor) for p in pl_module.parameters()),
            },
            os.path.join(self.out_dir, f"rank{trainer.global_rank}.pt"),
        )
