"""Keeps every rank's prompt beliefs identical, logs what selection does, and checkpoints the selection state."""

from __future__ import annotations

import lightning as L
import torch

from insight_lightning.scalar_logging import log_scalars, tensorboard
from samplers import PromptSelector


class SelectionCallback(L.Callback):
    """After each step: all-gather (prompt id, successes, trials) from every rank and update the beliefs everywhere.

    Its state (posteriors, candidate stream, RNG, sampler state) is saved in the checkpoint and restored on resume.

    Args:
        histogram_every_n_steps: log histograms of the pool's posterior means every N steps (0: never).
    """

    def __init__(self, histogram_every_n_steps: int = 10) -> None:
        self.histogram_every_n_steps = histogram_every_n_steps
        self._pending_state: dict | None = None
        self._selector_ref: PromptSelector | None = None

    @property
    def state_key(self) -> str:
        return "SelectionCallback"

    @staticmethod
    def _selector(trainer: L.Trainer) -> PromptSelector | None:
        return getattr(trainer.datamodule, "selector", None) if trainer.datamodule is not None else None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        selector = self._selector(trainer)
        if selector is None:
            raise RuntimeError("SelectionCallback needs a datamodule with a PromptSelector (PromptDataModule)")
        selector.to(pl_module.device)
        if self._pending_state is not None:
            selector.load_state_dict(self._pending_state)
            self._pending_state = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        selector = self._selector(trainer)
        local = torch.stack([outputs["ids"], outputs["successes"], outputs["trials"]]).long()  # [3, b]
        gathered = pl_module.all_gather(local.to(pl_module.device))  # [world, 3, b] or [3, b]
        if gathered.dim() == 3:
            gathered = gathered.permute(1, 0, 2).reshape(3, -1)  # [3, world*b]
        ids, successes, trials = gathered.cpu().unbind(0)
        record = selector.last
        selector.update(ids, successes, trials)
        self._log_selection(trainer, pl_module, selector, ids, successes, trials, record)

    def _log_selection(self, trainer, pl_module, selector, ids, successes, trials, record) -> None:
        rate = successes.double() / trials.double()  # [M] realised success rate
        metrics = {
            "selection/batch_accuracy": rate.mean(),
            "selection/frac_zero_variance": ((successes == 0) | (successes == trials)).double().mean(),
        }
        if record is not None and torch.equal(torch.sort(record.ids).values, torch.sort(ids).values):
            order = torch.argsort(record.ids)
            realised = rate[torch.argsort(ids)]  # aligned with record.ids sorted
            predicted = record.prior_mean.cpu()[order]
            metrics.update(
                {
                    "selection/frac_unseen": record.unseen.double().mean().cpu(),
                    "selection/phibar_mean": record.prior_mean.mean().cpu(),
                    "selection/phibar_std": record.prior_mean.std().cpu(),
                    "selection/evidence_mean": record.prior_evidence.mean().cpu(),
                    "selection/evidence_std": record.prior_evidence.std().cpu(),
                    "selection/pred_realised_corr": _correlation(predicted, realised),
                }
            )
        log_scalars(trainer, {k: float(v) for k, v in metrics.items()}, trainer.global_step)
        every = self.histogram_every_n_steps
        experiment = tensorboard(trainer)
        if experiment is not None and every and (trainer.global_step % every == 0 or trainer.global_step == 1):
            experiment.add_histogram("selection/posterior_mean", selector.posterior.mean.cpu(), trainer.global_step)
            experiment.add_histogram("selection/evidence", selector.posterior.evidence.cpu(), trainer.global_step)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._selector_ref = self._selector(trainer)

    def state_dict(self) -> dict:
        return {"selector": self._selector_ref.state_dict()} if self._selector_ref is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        state = state_dict.get("selector")
        if state is None:
            raise ValueError("The checkpoint holds no prompt-selection state; it was not written by a selection run")
        if self._selector_ref is not None:
            self._selector_ref.load_state_dict(state)
        else:  # restored before set-up: applied in on_fit_start
            self._pending_state = state


def _correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation; 0 when either side has no spread (e.g. every prompt still at the prior)."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = (x.square().sum() * y.square().sum()).sqrt()
    return (x * y).sum() / denom if denom > 0 else torch.zeros((), dtype=torch.float64)
