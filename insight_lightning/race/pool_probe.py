"""A callback that probes the training pool with the policy being trained: which prompts are out of reach, mixed or
always solved, and when that changes.

    --trainer.callbacks+=insight_lightning.race.pool_probe.PoolProbe --trainer.callbacks.init_args.every_n_steps=20

A sampler's beliefs say what it has seen of a prompt; a probe samples every prompt of the pool K times with the
current weights, so it shows what the beliefs missed: prompts out of reach at the start that the policy has learned
to solve (beliefs that never forget go stale there), or solved ones it has forgotten. The race adds it to the graded
regime's runs and compares the last probe with the pool's probe at the start.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch

from insight_lightning.race.probe import probe
from insight_lightning.selection.scalar_logging import log_scalars

PROBE_FILE = "pool_probe.jsonl"
"""In the logger's folder (or the trainer's root folder without a logger): one JSON line per probe."""


class PoolProbe(L.Callback):
    """Samples every training prompt `samples` times at the end of training (and every N steps) and logs the shares
    out of reach, mixed and always solved (``probe/...``, by problem kind when the rows have one); each probe's
    per-prompt solved counts go to ``pool_probe.jsonl``. One process only: the probe would otherwise need every rank.

    Args:
        samples: samples of each prompt (K_probe): out of reach at 0 of K, always solved at K of K.
        every_n_steps: also probe every N RL steps (0: only at the end of training).
        seed: seed of the probe's sampling; the training's random state is left as it was.
    """

    def __init__(self, samples: int = 16, every_n_steps: int = 0, seed: int = 0) -> None:
        if samples < 1 or every_n_steps < 0:
            raise ValueError(f"PoolProbe needs samples >= 1 and every_n_steps >= 0, got {samples} and {every_n_steps}")
        self.samples = samples
        self.every_n_steps = every_n_steps
        self.seed = seed
        self._last_step: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.world_size > 1:
            raise ValueError(f"PoolProbe runs in one process; this fit has {trainer.world_size}: remove the callback")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.probe_pool(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.probe_pool(trainer, pl_module)

    def probe_pool(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        """Probe the pool now (once per step), log the shares and append the record to the probe file."""
        step = trainer.global_step
        if step == self._last_step:
            return {}
        self._last_step = step
        examples = trainer.datamodule.train_examples
        device = pl_module.device
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # training goes on with the random state it had (CPU and GPU)
            torch.manual_seed(self.seed)
            found = probe(pl_module.policy, pl_module.task, examples, self.samples, pl_module.rollout)
        record = {
            "step": step,
            "composition": found.composition(),
            "by_kind": found.composition_by_kind(examples),
            "ids": [row.get("id", index) for index, row in enumerate(examples)],
            "solved": found.solved.tolist(),
        }
        metrics = {f"probe/{key}": record["composition"][key] for key in ("out_of_reach", "mixed", "solved")}
        for kind, shares in record["by_kind"].items():
            metrics |= {f"probe/{kind}/{key}": shares[key] for key in ("out_of_reach", "mixed", "solved")}
        log_scalars(trainer, metrics, step)
        folder = Path(trainer.log_dir or trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / PROBE_FILE).open("a") as file:
            file.write(json.dumps(record) + "\n")
        return record


def read_probes(log_dir: Path) -> list[dict]:
    """The probes a run's PoolProbe wrote, in order; empty when it had none."""
    path = log_dir / PROBE_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
