"""Preemption: SIGTERM and SIGUSR1 at any moment of a fit leave a step-boundary checkpoint, the signal's exit code,
and a `--ckpt_path last` continue that ends with the uninterrupted run's weights and beliefs, bit for bit."""

import copy
import os
import random
import re
import signal

import pytest
import torch
from conftest import srun_env
from signal_sender import sender_args
from test_cli_fit import SIGNAL, probe_args

from insight_lightning.checkpoints.io import check_readable
from insight_lightning.cli.app import main
from insight_lightning.cli.last_checkpoint import resolve_last

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
        ("update", 3, "SIGUSR1", 3, 138),  # checkpoints in the logger's version folders, as the shipped configs do
        ("validation", 2, "SIGTERM", 3, 143),  # the validation after step 2: acted on when step 3 ends
        ("save", 1, "SIGTERM", 1, 143),  # a second SIGTERM arrives while the checkpoint is being written
    ]
    main(tiny_fit_args(STEPS, *probe_args(tmp_path / "full"), *SIGNAL))
    full = torch.load(tmp_path / "full" / "rank0.pt")
    for moment, step, signal_name, saved_step, code in cases:
        case = f"{moment}-{signal_name} (seed {seed})"
        folder = tmp_path / moment
        # set before the callbacks below are appended (init_args apply to the last one listed)
        if moment == "update":
            where = [
                f"--trainer.logger.init_args.save_dir={folder / 'runs'}",
                "--trainer.callbacks.init_args.dirpath=null",
            ]
            saved = folder / "runs" / "countdown" / "version_0" / "checkpoints" / "last.ckpt"
        else:
            where, saved = [f"--trainer.callbacks.init_args.dirpath={folder / 'ckpt'}"], folder / "ckpt" / "last.ckpt"
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            main(tiny_fit_args(STEPS, *where, *SIGNAL, *sender_args(moment, step, signal_name, seed)))
        assert stopped.value.code == code, case
        assert SAVED.findall(capsys.readouterr().err) == [(signal_name, str(saved_step), str(saved))], case
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are given back
        check_readable(saved)  # whole, also when a second signal came during the save
        assert torch.load(saved, weights_only=False)["global_step"] == saved_step, case

        main(tiny_fit_args(STEPS, *where, *probe_args(folder / "probe"), *SIGNAL, "--ckpt_path", "last"))
        assert_same_end(torch.load(folder / "probe" / "rank0.pt"), full, saved_step)
    # `last` found the version folder's checkpoint, and the continue logged into that folder, not a new one
    assert [p.name for p in (tmp_path / "update" / "runs" / "countdown").iterdir()] == ["version_0"]


# what srun sets for one task of job 4242 on one node (a single process: Lightning's main address and port)
SLURM_JOB = {**srun_env(0, 1, job_id=4242), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29531"}


def test_under_slurm_the_requeue_signal_saves_requeues_and_the_requeued_job_continues_exactly(
    tiny_fit_args, tmp_path, capsys, monkeypatch
):
    main(tiny_fit_args(STEPS, *probe_args(tmp_path / "full"), *SIGNAL))
    full = torch.load(tmp_path / "full" / "rank0.pt")

    bin_dir, job_dir = tmp_path / "bin", tmp_path / "job"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"  # a stand-in that records how it was called
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for name, value in SLURM_JOB.items():
        monkeypatch.setenv(name, value)
    in_job = [f"--trainer.default_root_dir={job_dir}", f"--trainer.callbacks.init_args.dirpath={job_dir / 'ckpt'}"]

    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        main(tiny_fit_args(STEPS, *in_job, *SIGNAL, *sender_args("update", 3, "SIGUSR1")))
    assert stopped.value.code == 138
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    hpc = job_dir / "hpc_ckpt_1.ckpt"
    said = f"SIGUSR1 received: checkpoint after step 3 saved to {job_dir / 'ckpt' / 'last.ckpt'} and {hpc}"
    assert f"{said}; requeued the SLURM job." in capsys.readouterr().err
    for path in (hpc, job_dir / "ckpt" / "last.ckpt"):
        assert torch.load(path, weights_only=False)["global_step"] == 3

    # the requeued job runs the same command: Lightning resumes from the hpc checkpoint by itself
    main(tiny_fit_args(STEPS, *in_job, *probe_args(tmp_path / "requeued"), *SIGNAL))
    assert_same_end(torch.load(tmp_path / "requeued" / "rank0.pt"), full, saved_step=3)


def fit_config(tmp_path, dirpath=None, version=None, ckpt_path="last") -> dict:
    checkpoint = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"dirpath": dirpath}}
    logger = {"class_path": "TensorBoardLogger", "init_args": {"save_dir": str(tmp_path), "name": "countdown"}}
    logger["init_args"]["version"] = version
    return {"ckpt_path": ckpt_path, "trainer": {"callbacks": [checkpoint], "logger": logger}}


def test_last_is_the_newest_last_checkpoint_of_the_version_folders_and_the_logger_continues_there(tmp_path):
    for version, name, mtime in [
        ("version_0", "last.ckpt", 100),
        ("version_1", "last.ckpt", 300),
        ("version_2", "epoch=0-step=9.ckpt", 400),
        ("version_3", "last-v1.ckpt", 200),
    ]:
        path = tmp_path / "countdown" / version / "checkpoints" / name
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
        os.utime(path, (mtime, mtime))
    config = fit_config(tmp_path)
    newest = tmp_path / "countdown" / "version_1" / "checkpoints" / "last.ckpt"
    assert resolve_last(config) == newest
    assert config["ckpt_path"] == str(newest) and config["trainer"]["logger"]["init_args"]["version"] == "version_1"

    # where Lightning finds `last` by itself, or nothing asks for it, nothing changes
    for unchanged in (
        fit_config(tmp_path, dirpath=str(tmp_path / "own")),
        fit_config(tmp_path, version="version_0"),
        fit_config(tmp_path, ckpt_path=None),
        fit_config(tmp_path / "empty"),
    ):
        before = copy.deepcopy(unchanged)
        assert resolve_last(unchanged) is None and unchanged == before
