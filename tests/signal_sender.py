"""A test-only callback that sends a real signal to its own process at a chosen moment of a chosen step."""

import os
import random
import signal
import threading

import lightning as L


class SendSignal(L.Callback):
    """Sends `signal_name` to this process (on rank `rank` only) at `moment` of step `step` (1-based):

    - rollout: from a timer started as the step begins, after a random 0-`max_delay` s (inside the rollout or the
      update, wherever the step is then); sent at the step's end if the timer has not fired by then;
    - update: just before the step's first backward pass;
    - validation: as the first validation batch after step `step` starts;
    - save: at the step's end, then again from inside the checkpoint save it causes (a second signal while saving).

    `to_launcher` sends it to the parent process instead (torchrun's agent, as a scheduler signals the launcher).
    """

    def __init__(
        self,
        moment: str,
        step: int,
        signal_name: str = "SIGTERM",
        rank: int = 0,
        max_delay: float = 0.5,
        seed=0,
        to_launcher: bool = False,
    ) -> None:
        self.moment, self.step, self.rank, self.max_delay, self.to_launcher = moment, step, rank, max_delay, to_launcher
        self.signum = signal.Signals[signal_name]
        self.random = random.Random(seed)
        self.timer: threading.Timer | None = None
        self.sent = 0

    def send(self, trainer: L.Trainer) -> None:
        if trainer.global_rank == self.rank:
            self.sent += 1
            os.kill(os.getppid() if self.to_launcher else os.getpid(), self.signum)

    def _this_step(self, trainer: L.Trainer, done: int) -> bool:
        return trainer.global_step == done and self.sent == 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.moment == "rollout" and self._this_step(trainer, self.step - 1) and trainer.global_rank == self.rank:
            self.timer = threading.Timer(self.random.uniform(0, self.max_delay), self.send, (trainer,))
            self.timer.start()

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        if self.moment == "update" and self._this_step(trainer, self.step - 1):
            self.send(trainer)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self.moment == "validation" and not trainer.sanity_checking and self._this_step(trainer, self.step):
            self.send(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.timer is not None:
            self.timer.cancel()  # a timer that has not fired yet must not outlive the step (or the run)
            self.timer.join()
            self.timer = None
            if self.sent == 0:
                self.send(trainer)
        if self.moment == "save" and self._this_step(trainer, self.step):
            self.send(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self.moment == "save" and self.sent == 1:
            self.send(trainer)


def sender_args(
    moment: str, step: int, signal_name: str = "SIGTERM", seed: int = 0, rank: int = 0, to_launcher: bool = False
) -> list[str]:
    """CLI options that append a SendSignal callback."""
    return [
        "--trainer.callbacks+=signal_sender.SendSignal",
        f"--trainer.callbacks.init_args.moment={moment}",
        f"--trainer.callbacks.init_args.step={step}",
        f"--trainer.callbacks.init_args.signal_name={signal_name}",
        f"--trainer.callbacks.init_args.seed={seed}",
        f"--trainer.callbacks.init_args.rank={rank}",
        f"--trainer.callbacks.init_args.to_launcher={to_launcher}",
    ]
