"""Tests that need a CUDA GPU: skipped without one; `python benchmarks/gpu_check.py` runs them on a GPU machine."""

import lightning as L
import pytest
import torch
from test_cli_fit import SIGNAL, probe_args

from insight_lightning.cli.app import main
from insight_lightning.selection.callback import SelectionCallback

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
GPU = ["--trainer.accelerator=gpu", "--trainer.devices=1"]


class Devices(L.Callback):
    """Where the trained weights and the beliefs are at the end of training (teardown moves the model to the CPU)."""

    def on_train_end(self, trainer, pl_module) -> None:
        self.weights = {p.device.type for p in pl_module.parameters() if p.requires_grad}
        self.beliefs = SelectionCallback.of(trainer).selector.posterior.alpha.device.type


def test_fit_trains_on_the_gpu_with_the_beliefs_there_and_resumes_from_a_checkpoint(tiny_fit_args, tmp_path):
    # instantiated without the subcommand (the leading "fit"), so that the probe of devices can join the trainer
    cli, devices = main(tiny_fit_args(4, *GPU, *SIGNAL, *probe_args(tmp_path / "full"))[1:], run=False), Devices()
    cli.trainer.callbacks.append(devices)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert devices.weights == {"cuda"} and devices.beliefs == "cuda"
    posterior = SelectionCallback.of(cli.trainer).selector.posterior
    lora = {n: p for n, p in cli.model.named_parameters() if p.requires_grad}
    assert any(p.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)
    assert all(torch.isfinite(p).all() for p in lora.values())
    # every selected prompt's outcome reached the beliefs: K trials per prompt and step
    assert posterior.evidence.sum().item() == 64 * 2 + 4 * 8 * 4
    checkpoint = tmp_path / "ckpt" / "epoch=0-step=2.ckpt"
    resumed = main(tiny_fit_args(4, *GPU, *SIGNAL, *probe_args(tmp_path / "resumed"), "--ckpt_path", str(checkpoint)))
    assert resumed.trainer.global_step == 4
    full, again = torch.load(tmp_path / "full" / "rank0.pt"), torch.load(tmp_path / "resumed" / "rank0.pt")
    # the selection stream continues where it stopped (which prompts come next does not depend on the weights for
    # the first selection after the checkpoint); bit-exact weights need deterministic CUDA kernels, not asserted here
    assert again["selections"][0] == full["selections"][2]
    assert (again["alpha"] + again["beta"]).sum() == (full["alpha"] + full["beta"]).sum()
