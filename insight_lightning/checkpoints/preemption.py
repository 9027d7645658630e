"""Preemption: on SIGTERM or SLURM's requeue signal, finish the step, checkpoint at its boundary on every rank, then
stop with the signal's exit code (or requeue under SLURM)."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector

log = logging.getLogger(__name__)


class Preempted(SystemExit):
    """The run stopped on a signal after checkpointing; its exit code is 128 + the signal number (143 for SIGTERM),
    which schedulers read as "stopped", not "finished"."""

    def __init__(self, signum: int, path: str) -> None:
        super().__init__(128 + signum)
        self.signum, self.path = signum, path


class PreemptionCheckpoint(L.Callback):
    """Makes SIGTERM and the requeue signal (SIGUSR1, or the SLURM environment's) stop a fit without losing a step.

    The signal handler only records the signal. At the end of the step in progress (`at_step_end`, after its update and
    the beliefs' update) every rank learns whether any rank was signalled, so all act at the same step: they write the
    checkpoint (`last.ckpt` in the ModelCheckpoint folder, the file `--ckpt_path last` resumes; under SLURM with
    auto-requeue also Lightning's `hpc_ckpt_N.ckpt`, which a requeued job resumes by itself), log its path, request a
    requeue under SLURM (requeue signal, auto-requeue on), and exit with 128 + the signal number.

    It replaces Lightning's own handlers during fit: Lightning's SIGTERM handler exits with code 0 and no checkpoint
    (and broadcasts from inside the handler, a collective the other ranks are not in at that moment), and its SLURM
    handler saves from inside the handler, in the middle of a step. Added by GRPOModule when trainer.callbacks has none.
    """

    def __init__(self) -> None:
        self.received: int = 0  # the first signal this rank received (0: none)
        self._installed: dict[int, object] = {}

    # ------------------------------------------------------------------------------------------- handlers
    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)  # Lightning registers its handlers just before the first validation

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)

    def _install(self, trainer: L.Trainer) -> None:
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        for signum in {signal.SIGTERM, requeue_signal(trainer)}:
            self._installed[signum] = signal.getsignal(signum)
            signal.signal(signum, self._record)

    def _record(self, signum: int, frame) -> None:
        # Only note it: anything more (I/O, collectives) from a handler can interrupt the very code it needs.
        if not self.received:
            self.received = signum

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()  # Lightning calls no teardown hook when fit ends in an exception (Preempted included)

    def _restore(self) -> None:
        for signum, handler in self._installed.items():
            if signal.getsignal(signum) == self._record:
                signal.signal(signum, handler)
        self._installed = {}

    # ------------------------------------------------------------------------------------------- the step boundary
    @staticmethod
    def at_step_end(trainer: L.Trainer) -> None:
        """Act on a signal at this step boundary, if the run has a PreemptionCheckpoint. Called by the LightningModule's
        on_train_batch_end, which Lightning runs after every callback's (the beliefs' update among them), so the
        checkpoint holds the whole step."""
        for callback in trainer.callbacks:
            if isinstance(callback, PreemptionCheckpoint):
                callback.act(trainer)

    def act(self, trainer: L.Trainer) -> None:
        """Save, log, requeue and stop if any rank was signalled (a collective: every rank calls it each step)."""
        signum = self.agreed_signal(trainer)
        if not signum or trainer.global_step >= trainer.max_steps > 0:
            return  # no signal, or the run is finishing anyway (its end saves as configured)
        path = self.save(trainer)
        name = signal.Signals(signum).name
        requeued = requeue_signal(trainer) == signum and auto_requeue(trainer) and self.requeue(trainer)
        then = "requeued the SLURM job" if requeued else "stopping"
        log.info(f"{name} received: checkpoint after step {trainer.global_step} saved to {path}; {then}.")
        raise Preempted(signum, path)

    def agreed_signal(self, trainer: L.Trainer) -> int:
        """The signal any rank received (the largest number if several), the same on every rank."""
        if trainer.world_size == 1:
            return self.received
        flag = torch.tensor(float(self.received), device=trainer.strategy.root_device)
        return int(trainer.strategy.reduce(flag, reduce_op="max").item())

    def save(self, trainer: L.Trainer) -> str:
        """Write the checkpoint on every rank (atomically, through the run's CheckpointIO); return its path."""
        checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.dirpath), None)
        if checkpoint is not None:
            path = os.path.join(checkpoint.dirpath, checkpoint.CHECKPOINT_NAME_LAST + checkpoint.FILE_EXTENSION)
            checkpoint.last_model_path = path  # part of the state saved
        else:
            path = os.path.join(trainer.default_root_dir, "checkpoints", "last.ckpt")
        trainer.save_checkpoint(path)  # on every rank: sharded strategies write their part; ends in a barrier
        if auto_requeue(trainer):
            hpc = _CheckpointConnector.hpc_save_path(trainer.default_root_dir)
            trainer.save_checkpoint(hpc)
            path = f"{path} and {hpc}"
        return path

    @staticmethod
    def requeue(trainer: L.Trainer) -> bool:
        """`scontrol requeue` this SLURM job (global rank zero); whether it succeeded."""
        if not trainer.is_global_zero:
            return True
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ.get("SLURM_JOB_ID", "")
        if not re.fullmatch(r"[0-9_]+", job):
            log.warning(f"Cannot requeue: SLURM job id '{job}' is not a job id.")
            return False
        try:
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            log.warning(f"Requeuing SLURM job {job} failed: {error}")
            return False
        if done.returncode != 0:
            log.warning(f"Requeuing SLURM job {job} failed: {done.stderr.strip() or done.returncode}")
        return done.returncode == 0


def requeue_signal(trainer: L.Trainer) -> int:
    """The signal that asks for a checkpoint and a requeue: the SLURM environment's, else SIGUSR1."""
    environment = trainer._accelerator_connector.cluster_environment
    if isinstance(environment, SLURMEnvironment) and environment.requeue_signal is not None:
        return int(environment.requeue_signal)
    return int(signal.SIGUSR1)


def auto_requeue(trainer: L.Trainer) -> bool:
    """Whether the run is a SLURM job that Lightning requeues (SLURMEnvironment's auto_requeue, on by default)."""
    environment = trainer._accelerator_connector.cluster_environment
    return isinstance(environment, SLURMEnvironment) and environment.auto_requeue
