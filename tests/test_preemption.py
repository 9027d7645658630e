"""Preemption: SIGTERM and SIGUSR1 at any moment of a fit leave a step-boundary checkpoint, the signal's exit code,
and a `--ckpt_path last` continue that ends with the uninterrupted run's weights and beliefs, bit for bit."""

import random
import re
import signal

import pytest
import torch
from signal_sender import sender_args
from test_cli_fit import SIGNAL, probe_args

from insight_lightning.checkpoints.io import check_readable
from insight_lightning.cli.app import main

STEPS = 4
SAVED = re.compile(r"(SIGTERM|SIGUSR1) received: checkpoint after step (\d+) saved to (\S+); stopping\.")


def assert_same_end(resumed: dict, full: dict, saved_step: int) -> None:
    assert resumed["global_step"] == full["global_step"] == STEPS
    assert resumed["selections"] == full["selections"][saved_step:]
    assert torch.equal(resumed["alpha"], full["alpha"]) and torch.equal(resumed["beta"], full["beta"])
    assert any(w.abs().sum() > 0 for n, w in full["weights"].items() if "lora_B" in n)  # the weights did move
    for name, weight in full["weights"].items():
        assert torch.equal(resumed["weights"][name], weight), name


def test_a_signal_at_any_moment_checkpoints_the_step_and_the_continue_is_exact(tiny_fit_args, tmp_path, capsys):
    seed = random.randrange(2**16)  # where in step 1 the rollout signal lands; the outcome must not depend on it
    cases = [  # moment, step, signal, step of the checkpoint, exit code
        ("rollout", 1, "SIGTERM", 1, 143),
        ("update", 3, "SIGUSR1", 3, 138),
        ("validation", 2, "SIGTERM", 3, 143),  # the validation after step 2: acted on when step 3 ends
        ("save", 1, "SIGTERM", 1, 143),  # a second SIGTERM arrives while the checkpoint is being written
    ]
    main(tiny_fit_args(STEPS, *probe_args(tmp_path / "full"), *SIGNAL))
    full = torch.load(tmp_path / "full" / "rank0.pt")
    for moment, step, signal_name, saved_step, code in cases:
        case = f"{moment}-{signal_name} (seed {seed})"
        folder = tmp_path / moment
        in_folder = [f"--trainer.callbacks.init_args.dirpath={folder / 'ckpt'}"]  # before callbacks are appended
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            main(tiny_fit_args(STEPS, *in_folder, *SIGNAL, *sender_args(moment, step, signal_name, seed)))
        assert stopped.value.code == code, case
        said = SAVED.findall(capsys.readouterr().err)
        assert said == [(signal_name, str(saved_step), str(folder / "ckpt" / "last.ckpt"))], case
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are given back
        check_readable(folder / "ckpt" / "last.ckpt")  # whole, also when a second signal came during the save
        assert torch.load(folder / "ckpt" / "last.ckpt", weights_only=False)["global_step"] == saved_step, case

        main(tiny_fit_args(STEPS, *in_folder, *probe_args(folder / "probe"), *SIGNAL, "--ckpt_path", "last"))
        assert_same_end(torch.load(folder / "probe" / "rank0.pt"), full, saved_step)
