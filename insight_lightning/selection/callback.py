"""The owner of prompt selection: it selects each step's prompts, folds the outcomes into the beliefs on every rank,
logs what selection does, and checkpoints the selection state."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch

from insight_lightning.selection.scalar_logging import log_scalars, tensorboard
from samplers import Outcomes, PromptSelector, SelectionRecord


@dataclass
class StepOutcomes:
    """What a training step hands back to selection: its rollouts' outcomes and the selections they came from."""

    outcomes: Outcomes
    """Every group this rank rolled out in the step (extra dynamic-sampling rounds included)."""
    selections: list[SelectionRecord]
    """The step's selections in order (the same on every rank)."""


class SelectionCallback(L.Callback):
    """Selects each step's prompts and, after the step, all-gathers (prompt id, successes, trials) from every rank and
    updates the beliefs everywhere, so every rank keeps making the same selections.

    The run's PromptDataModule describes the pool and the sampler (`make_selector`); this callback owns the resulting
    PromptSelector, keeps its beliefs on the training device, and saves its state (posteriors, candidate stream, RNG,
    sampler state) in every checkpoint. The GRPOModule adds one with default settings when trainer.callbacks has
    none; list it there (class_path: insight_lightning.SelectionCallback) to change its settings.

    Args:
        histogram_every_n_steps: log histograms of the pool's posterior means and evidence, and of the candidates'
            scores, every N steps (0: never).
    """

    def __init__(self, histogram_every_n_steps: int = 10) -> None:
        self.histogram_every_n_steps = histogram_every_n_steps
        self.selector: PromptSelector | None = None
        self._restored_state: dict | None = None

    @property
    def state_key(self) -> str:
        return "SelectionCallback"

    @staticmethod
    def of(trainer: L.Trainer) -> SelectionCallback:
        """The run's selection callback."""
        found = [c for c in trainer.callbacks if isinstance(c, SelectionCallback)]
        if len(found) != 1:
            raise RuntimeError(
                f"Prompt selection needs exactly one SelectionCallback in trainer.callbacks, found {len(found)}"
            )
        return found[0]

    # ------------------------------------------------------------------------------------------- selection
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.selector is not None:
            return
        make = getattr(trainer.datamodule, "make_selector", None)
        if make is None:
            raise RuntimeError("SelectionCallback needs a datamodule with make_selector() (PromptDataModule)")
        self.selector = make()
        if self._restored_state is not None:
            self.selector.load_state_dict(self._restored_state)
            self._restored_state = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.selector.to(pl_module.device)  # the beliefs live where the sampler scores them

    def select(self) -> SelectionRecord:
        """The next selection of M prompts (every rank makes the same one)."""
        return self.selector.select()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        step: StepOutcomes = outputs["outcomes"]
        local = step.outcomes
        packed = torch.stack([local.ids, local.successes, local.trials]).long()  # [3, G]
        gathered = pl_module.all_gather(packed.to(pl_module.device))  # [world, 3, G] or [3, G]
        if gathered.dim() == 3:
            gathered = gathered.permute(1, 0, 2).reshape(3, -1)  # [3, world*G]
        outcomes = Outcomes(*gathered.cpu().unbind(0))
        self.selector.update(outcomes)
        self._log_selection(trainer, outcomes, step.selections)

    # ------------------------------------------------------------------------------------------- logging
    def _log_selection(self, trainer: L.Trainer, outcomes: Outcomes, records: list[SelectionRecord]) -> None:
        ids, successes, trials = outcomes.ids, outcomes.successes, outcomes.trials
        rate = successes.double() / trials.double()  # [G] realised success rate of every group rolled out
        visits = self.selector.posterior.visits.cpu()  # [N] steps in which each prompt was rolled out
        metrics = {
            "selection/batch_accuracy": rate.mean(),
            "selection/frac_zero_variance": ((successes == 0) | (successes == trials)).double().mean(),
            # how far selection narrows onto few prompts: the most-visited prompt against the pool's mean
            "selection/max_visit_rate": visits.max().double() / visits.double().mean(),
        }
        if records:
            chosen = torch.cat([r.ids for r in records])  # [G] in selection order
            prior_mean = torch.cat([r.prior_mean.cpu() for r in records]).double()
            prior_evidence = torch.cat([r.prior_evidence.cpu() for r in records]).double()
            unseen = torch.cat([r.unseen.cpu() for r in records]).double()
            # outcomes arrive rank-major; align them with the selection order by prompt id (unique within a step)
            realised = torch.full((self.selector.pool_size,), float("nan"), dtype=torch.float64)
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
            experiment.add_histogram("selection/posterior_mean", self.selector.posterior.mean.cpu(), step)
            experiment.add_histogram("selection/evidence", self.selector.posterior.evidence.cpu(), step)
            scores = [r.scores for r in records if r.scores is not None]
            if scores:
                experiment.add_histogram("selection/candidate_scores", torch.cat(scores).float().cpu(), step)

    # ------------------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {"selector": self.selector.state_dict()} if self.selector is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        state = state_dict.get("selector")
        if state is None:
            raise ValueError("The checkpoint holds no prompt-selection state; it was not written by a selection run")
        if self.selector is not None:
            self.selector.load_state_dict(state)
        else:  # restored before set-up: applied when the selector is made
            self._restored_state = state


def _std(x: torch.Tensor) -> torch.Tensor:
    return x.std() if x.numel() > 1 else torch.zeros((), dtype=x.dtype)


def _correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation; 0 when either side has no spread (e.g. every prompt still at the prior)."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = (x.square().sum() * y.square().sum()).sqrt()
    return (x * y).sum() / denom if denom > 0 else torch.zeros((), dtype=torch.float64)
