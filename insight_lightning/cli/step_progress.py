"""The console progress bar of `fit`: RL step N of `max_steps`, with the last step's timings, reward and accuracy.

Lightning's bar counts batches within an epoch, and a step-bounded run (`max_epochs: -1`) reads `Epoch 0/-2` with a
counter that restarts at every pass over the pool. Here one bar spans the whole run, starts at the restored step on
resume, and validation keeps Lightning's own bar beneath it.
"""

from __future__ import annotations

import sys

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf

# What the module logs with prog_bar=True, in the order shown (insight_lightning.training.step_report.StepLogger.log).
SHOWN = ("rollout_s", "update_s", "reward", "acc")


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, counting RL steps over the whole run instead of batches per epoch."""

    def init_train_tqdm(self) -> Tqdm:
        trainer = self.trainer
        return Tqdm(
            desc="RL step",
            total=convert_inf(trainer.max_steps) if trainer.max_steps > 0 else None,
            initial=trainer.global_step,  # a resumed run continues from its step; the rate counts new steps only
            position=2 * self.process_position,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )

    def on_train_epoch_start(self, trainer: Trainer, *_) -> None:
        pass  # a pass over the pool is no unit of an RL run: the bar does not restart

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        bar = self.train_progress_bar
        if bar.disable or not self._should_update(trainer.global_step, bar.total or 0):
            return
        bar.n = trainer.global_step
        bar.set_postfix(self.get_metrics(trainer, pl_module))  # set_postfix refreshes the line

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, str]:
        """The last step's rollout and update seconds, mean reward and accuracy (no version number)."""
        metrics = trainer.progress_bar_metrics
        return {name: f"{metrics[name]:.3g}" for name in SHOWN if name in metrics}
