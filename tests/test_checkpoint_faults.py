"""Corrupt checkpoints fail with one sentence naming the file; checkpoint writes are atomic in their own folder."""

import os
import pickle
from pathlib import Path

import pytest
import torch
from conftest import cli_in_process
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import ModelParallelStrategy, SingleDeviceStrategy

from insight_lightning.checkpoints.io import (
    AtomicCheckpointIO,
    CheckpointReadError,
    check_sharded_checkpoint,
    install_checkpoint_io,
)
from insight_lightning.cli.app import main
from insight_lightning.cli.export import export_merged


def lightning_like(step: int) -> dict:
    return {"state_dict": {"w": torch.arange(4096.0) + step}, "global_step": step}


@pytest.fixture
def saved(tmp_path) -> Path:
    """A folder with two checkpoints written through AtomicCheckpointIO; returns the newer one."""
    io = AtomicCheckpointIO()
    io.save_checkpoint(lightning_like(1), tmp_path / "ckpt" / "epoch=0-step=1.ckpt")
    os.utime(tmp_path / "ckpt" / "epoch=0-step=1.ckpt", (1, 1))  # the older one
    io.save_checkpoint(lightning_like(3), tmp_path / "ckpt" / "epoch=0-step=3.ckpt")
    return tmp_path / "ckpt" / "epoch=0-step=3.ckpt"


CORRUPTIONS = {
    "empty": (lambda data: b"", "(empty file)"),
    "truncated": (lambda data: data[: len(data) // 2], "(truncated: the archive ends after"),
    "tail cut": (lambda data: data[:-8], "(truncated: the archive ends after"),
    "garbage": (lambda data: b"no checkpoint here\n" * 100, "(not a PyTorch checkpoint file)"),
    "no state_dict": (lambda data: None, "(not a Lightning checkpoint: it holds a dict without 'state_dict')"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_checkpoint_fails_with_one_sentence_naming_it_and_the_way_out(saved, corruption):
    corrupt, reason = CORRUPTIONS[corruption]
    bad = saved.parent / "last.ckpt"
    data = corrupt(saved.read_bytes())
    if data is None:
        torch.save({"global_step": 3}, bad)
    else:
        bad.write_bytes(data)
    assert AtomicCheckpointIO().load_checkpoint(saved)["global_step"] == 3  # the good one still reads
    with pytest.raises(CheckpointReadError) as info:
        AtomicCheckpointIO().load_checkpoint(bad)
    message = str(info.value)
    assert isinstance(info.value, ValueError)  # the CLI prints ValueErrors as one line
    assert message.startswith(f"Checkpoint '{bad}' cannot be read {reason}") and "\n" not in message
    # the newest other checkpoints first, and the way out without one
    assert message.endswith(
        f"; use another checkpoint in {saved.parent} (e.g. epoch=0-step=3.ckpt, epoch=0-step=1.ckpt) "
        "or start fresh without --ckpt_path."
    )


def test_export_reads_through_the_same_check(saved):
    bad = saved.parent / "last.ckpt"
    bad.write_bytes(saved.read_bytes()[:100])
    with pytest.raises(CheckpointReadError, match=r"'.*last\.ckpt' cannot be read \(truncated") as info:
        export_merged(None, str(bad), str(saved.parent / "out"))  # fails before the module is touched
    assert "--ckpt_path" not in str(info.value)  # export needs a checkpoint: no "start fresh"


class ListsFolderWhilePickled:
    """Records the checkpoint folder, and what the final path holds, at the moment torch.save pickles it."""

    seen: dict = {}

    def __init__(self, final: Path, fail: bool = False):
        self.final, self.fail = final, fail

    def __reduce__(self):
        if self.fail:
            raise pickle.PicklingError("cannot pickle this")
        ListsFolderWhilePickled.seen = {
            "files": sorted(os.listdir(self.final.parent)),
            "final_step": AtomicCheckpointIO().load_checkpoint(self.final)["global_step"],
        }
        return (int, (7,))


def test_save_writes_beside_the_destination_and_replaces_it_whole(tmp_path, monkeypatch):
    final = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint(lightning_like(1), final)
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", Path(a).parent)) or real_replace(a, b))

    io.save_checkpoint({**lightning_like(2), "probe": ListsFolderWhilePickled(final)}, final)
    seen = ListsFolderWhilePickled.seen
    # mid-write: the old checkpoint whole at the final path, the new one in a temp file in the same folder
    assert seen["final_step"] == 1
    (tmp,) = [name for name in seen["files"] if name != "last.ckpt"]
    assert tmp.startswith(".last.ckpt.") and tmp.endswith(".tmp")
    assert events == ["fsync", ("replace", tmp_path), "fsync"]  # data on disk, renamed, the rename on disk
    assert os.listdir(tmp_path) == ["last.ckpt"] and io.load_checkpoint(final, weights_only=False)["probe"] == 7

    with pytest.raises(pickle.PicklingError):
        io.save_checkpoint({**lightning_like(3), "probe": ListsFolderWhilePickled(final, fail=True)}, final)
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temp file left behind
    assert io.load_checkpoint(final, weights_only=False)["global_step"] == 2  # the previous checkpoint kept whole


def test_install_replaces_only_the_default_io_and_checks_loads_of_fsdp2(tmp_path):
    default = SingleDeviceStrategy("cpu")
    install_checkpoint_io(default)
    assert type(default.checkpoint_io) is AtomicCheckpointIO

    class Mine(TorchCheckpointIO):
        pass

    own = SingleDeviceStrategy("cpu", checkpoint_io=Mine())
    install_checkpoint_io(own)
    assert type(own.checkpoint_io) is Mine  # a user's plugin stays

    # ModelParallelStrategy (FSDP2) reads checkpoints itself, not through the CheckpointIO
    fsdp2 = ModelParallelStrategy()
    install_checkpoint_io(fsdp2)
    (tmp_path / "last.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointReadError, match=r"last\.ckpt' cannot be read \(empty file\)"):
        fsdp2.load_checkpoint(tmp_path / "last.ckpt")
    (tmp_path / "runs").mkdir()
    with pytest.raises(CheckpointReadError, match=r"runs' cannot be read \(a folder, but not a sharded checkpoint"):
        fsdp2.load_checkpoint(tmp_path / "runs")
    assert pickle.loads(pickle.dumps(fsdp2.load_checkpoint)).strategy is not None  # survives a spawn launcher


def test_a_sharded_checkpoint_with_a_short_shard_is_named(tmp_path):
    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "epoch=0-step=2.ckpt"
    dcp.save({"state_dict": {"w": torch.arange(1000.0)}}, checkpoint_id=folder, no_dist=True)
    torch.save({"global_step": 2}, folder / "meta.pt")
    check_sharded_checkpoint(folder)  # whole: no error
    (shard,) = folder.glob("*.distcp")
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(CheckpointReadError, match=rf"'{folder}' cannot be read \(shard {shard.name} is truncated"):
        check_sharded_checkpoint(folder)
    (folder / "meta.pt").write_bytes(b"")
    with pytest.raises(CheckpointReadError, match=r"\(meta\.pt: empty file\)"):
        check_sharded_checkpoint(folder)


def test_resuming_from_a_truncated_checkpoint_prints_one_line_naming_it(tiny_fit_args, tmp_path):
    fit = main(tiny_fit_args(2))
    assert type(fit.trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    folder = tmp_path / "ckpt"
    assert sorted(os.listdir(folder)) == ["epoch=0-step=2.ckpt", "last.ckpt"]  # no temp files left
    last = folder / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])

    result = cli_in_process(*tiny_fit_args(4), "--ckpt_path", str(last))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [result.stderr.strip().splitlines()[-1]]  # one line, the last
    assert errors[0].startswith(f"error: Checkpoint '{last}' cannot be read (truncated")
    assert "Seed set" not in result.stderr + result.stdout  # it failed before building the trainer and model
    assert "epoch=0-step=2.ckpt" in errors[0] and "without --ckpt_path" in errors[0]
