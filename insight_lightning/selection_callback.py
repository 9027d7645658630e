"""Keeps every rank's prompt beliefs identical, logs what selection does, and checkpoints the selection state."""

from __future__ import annotations

import lightning as L
import torch

from insight_lightning.scalar_logging import log_scalars, tensorboard
from samplers import PromptSelector, SelectionRecord


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
        records = selector.update(ids, successes, trials)
        self._log_selection(trainer, selector, ids, successes, trials, records)

    def _log_selection(self, trainer, selector, ids, successes, trials, records: list[SelectionRecord]) -> None:
        rate = successes.double() / trials.double()  # [G] realised success rate of every group rolled out
        metrics = {
            "selection/batch_accuracy": rate.mean(),
            "selection/frac_zero_variance": ((successes == 0) | (successes == trials)).double().mean(),
        }
        if records:
            chosen = torch.cat([r.ids for r in records])  # [G] in selection order
            prior_mean = torch.cat([r.prior_mean.cpu() for r in records]).double()
            prior_evidence = torch.cat([r.prior_evidence.cpu() for r in records]).double()
            unseen = torch.cat([r.unseen.cpu() for r in records]).double()
            # outcomes arrive rank-major; align them with the selection order by prompt id (unique within a step)
            realised = torch.full((selector.pool_size,), float("nan"), dtype=torch.float64)
            realised[ids] = rate
            metrics.update(
                {
                    "selection/frac_unseen": unseen.mean(),
                    "selection/phibar_mean": prior_mean.mean(),
                    "selection/phibar_std": _std(prior_mean),
                    "selection/evidence_mean": prior_evidence.mean(),
                    "selection/evidence_std": _std(prior_evidence),
                    "selection/pred_realised_corr": _correlation(prior_mean, realised[chosen]),
                }
            )
        log_scalars(trainer, {k: float(v) for k, v in metrics.items()}, trainer.global_step)
        every = self.histogram_every_n_steps
        experiment = tensorboard(trainer)
        if experiment is not None and every and (trainer.global_step % every == 0 or trainer.global_step == 1):
            step = trainer.global_step
            experiment.add_histogram("selection/posterior_mean", selector.posterior.mean.cpu(), step)
            experiment.add_histogram("selection/evidence", selector.posterior.evidence.cpu(), step)
            scores = [r.scores for r in records if r.scores is not None]
            if scores:
                experiment.add_histogram("selection/candidate_scores", torch.cat(scores).float().cpu(), step)

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


def _std(x: torch.Tensor) -> torch.Tensor:
    return x.std() if x.numel() > 1 else torch.zeros((), dtype=x.dtype)


def _correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation; 0 when either side has no spread (e.g. every prompt still at the prior)."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = (x.square().sum() * y.square().sum()).sqrt()
    return (x * y).sum() / denom if denom > 0 else torch.zeros((), dtype=torch.float64)
