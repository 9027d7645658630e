"""Checkpoints written atomically in their own folder; one that cannot be read is named in one sentence."""

from __future__ import annotations

import os
import pickle
import re
import secrets
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy, Strategy

FRESH = "start fresh without --ckpt_path"
"""The way out when no checkpoint can be used; the export script, which needs one, passes None."""

SHARDED_META = "meta.pt"
"""The file Lightning writes beside the shards of a distributed checkpoint folder (and how it recognises one)."""


class CheckpointReadError(ValueError):
    """A checkpoint that cannot be read; the message names it and what to use instead (the CLI prints one line)."""

    def __init__(self, path: str | os.PathLike, reason: str, fresh: str | None = FRESH) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"Checkpoint '{path}' cannot be read ({reason}); {alternatives(Path(path), fresh)}.")


def alternatives(path: Path, fresh: str | None = FRESH) -> str:
    """What to use instead of `path`: the newest other checkpoints beside it, or starting fresh."""
    others = []
    if path.parent.is_dir():
        for other in path.parent.iterdir():
            usable = other.is_dir() or (other.is_file() and other.stat().st_size > 0)
            if other.suffix == ".ckpt" and not other.name.startswith(".") and other.name != path.name and usable:
                others.append(other)
    others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    if not others:
        return f"{fresh}, or pass another checkpoint" if fresh else "pass another checkpoint"
    names = ", ".join(p.name for p in others[:3])
    return f"use another checkpoint in {path.parent} (e.g. {names})" + (f" or {fresh}" if fresh else "")


def short_reason(error: BaseException) -> str:
    """The error's type and first sentence, without torch's advice paragraphs."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    unsupported = [line for line in lines if "Unsupported global" in line]  # the weights-only refusal's cause
    text = (unsupported or lines or [""])[0]
    text = re.split(r"(?<=[^.])\. ", text, maxsplit=1)[0].rstrip(".")
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def diagnose(path: Path, error: BaseException) -> str:
    """Why `path` could not be read, from its bytes: empty, a zip archive cut short, not a checkpoint at all."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
        if size == 0:
            return "empty file"
        if head == b"PK\x03\x04":  # torch.save's zip format; the archive's directory sits at its very end
            if not zipfile.is_zipfile(path):
                return f"truncated: the archive ends after {size} bytes without its directory"
            if "Weights only load failed" in str(error):
                return f"weights-only loading refuses an object in it: {short_reason(error)}"
            return f"corrupt: {short_reason(error)}"
        if head[:1] == b"\x80":  # a pickle protocol byte: torch's legacy (pre-zip) format
            return f"truncated or corrupt: {short_reason(error)}"
        return "not a PyTorch checkpoint file"  # whatever torch's reader then says is beside the point
    except OSError as err:
        return short_reason(err)


def read_checkpoint(
    path: str | os.PathLike,
    map_location: Any = "cpu",
    weights_only: bool | None = None,
    mmap: bool = False,
    require_state_dict: bool = True,
    fresh: str | None = FRESH,
) -> Any:
    """torch.load of a local checkpoint file; any failure to read it raises CheckpointReadError (one sentence)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Checkpoint '{path}' does not exist; {alternatives(path, fresh)}.")
    if path.is_dir():
        sharded = (path / SHARDED_META).is_file()
        kind = "a sharded checkpoint folder, which only the strategy that wrote it can load" if sharded else "a folder"
        raise CheckpointReadError(path, kind, fresh)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=weights_only, mmap=mmap)
    except Exception as err:  # whatever torch's readers raise (EOFError, zip RuntimeError, pickle, OSError, ...)
        raise CheckpointReadError(path, diagnose(path, err), fresh) from err
    if require_state_dict and not (isinstance(checkpoint, dict) and "state_dict" in checkpoint):
        what = "a dict without 'state_dict'" if isinstance(checkpoint, dict) else f"a {type(checkpoint).__name__}"
        raise CheckpointReadError(path, f"not a Lightning checkpoint: it holds {what}", fresh)
    return checkpoint


def check_sharded_checkpoint(folder: Path, weights_only: bool | None = None, fresh: str | None = FRESH) -> None:
    """Raise CheckpointReadError unless the distributed checkpoint folder's metadata reads and no shard is short."""
    try:
        read_checkpoint(folder / SHARDED_META, weights_only=weights_only, require_state_dict=False, fresh=fresh)
    except CheckpointReadError as err:
        raise CheckpointReadError(folder, f"{SHARDED_META}: {err.reason}", fresh) from err
    metadata_file = folder / ".metadata"  # torch.distributed.checkpoint's index of every tensor's bytes
    try:
        with open(metadata_file, "rb") as f:
            metadata = pickle.load(f)
        extents: dict[str, int] = {}
        for info in metadata.storage_data.values():
            extents[info.relative_path] = max(extents.get(info.relative_path, 0), info.offset + info.length)
    except FileNotFoundError:
        raise CheckpointReadError(folder, ".metadata is missing", fresh) from None
    except Exception as err:
        raise CheckpointReadError(folder, f".metadata: {diagnose(metadata_file, err)}", fresh) from err
    for name, needed in sorted(extents.items()):
        shard = folder / name
        size = shard.stat().st_size if shard.is_file() else None
        if size is None or size < needed:
            state = "is missing" if size is None else f"is truncated: {size} of {needed} bytes"
            raise CheckpointReadError(folder, f"shard {name} {state}", fresh)


def check_readable(path: str | os.PathLike, weights_only: bool | None = None) -> None:
    """Raise CheckpointReadError for a local checkpoint (file or sharded folder) that cannot be read; a path that
    does not exist is left to the loader's FileNotFoundError."""
    if not _is_local_file_protocol(path):
        return
    path = Path(path)
    if path.is_file():
        # mmap: the pickled structure is read, the tensors' bytes are not (the strategy's own load maps them again)
        read_checkpoint(path, weights_only=weights_only, mmap=True)
    elif path.is_dir() and (path / SHARDED_META).is_file():
        check_sharded_checkpoint(path, weights_only)
    elif path.is_dir():
        raise CheckpointReadError(path, f"a folder, but not a sharded checkpoint: it has no {SHARDED_META}")


def save_atomically(checkpoint: Any, path: str | os.PathLike) -> None:
    """torch.save to a temp file in the destination folder, fsync, rename over `path`, fsync the folder.

    The temp file sits beside its destination so that the rename never crosses filesystems (a move across them
    is a copy, visible half-written); on any failure it is removed and an existing checkpoint at `path` is kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable; a no-op where folders cannot be opened or synced (Windows, some mounts)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves are atomic on any filesystem and whose unreadable loads say so."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write the checkpoint atomically (a remote URL goes through Lightning's fsspec transaction)."""
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_atomically(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = lambda storage, loc: storage, weights_only=None) -> dict:
        """Read the checkpoint; a corrupt, truncated or foreign file raises CheckpointReadError."""
        if not _is_local_file_protocol(path):
            return super().load_checkpoint(path, map_location, weights_only)
        return read_checkpoint(path, map_location=map_location, weights_only=weights_only)


class CheckedStrategyLoad:
    """A strategy's own load_checkpoint, preceded by check_readable (for strategies that bypass CheckpointIO)."""

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy

    def __call__(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        check_readable(checkpoint_path, weights_only)
        # through the class, not a bound method: a pickled strategy (spawn) would otherwise find this wrapper again
        return type(self.strategy).load_checkpoint(self.strategy, checkpoint_path, weights_only=weights_only)


def install_checkpoint_io(strategy: Strategy) -> None:
    """AtomicCheckpointIO in place of the default TorchCheckpointIO (a user's own plugin stays), and checked loads
    for the strategies that read checkpoints themselves, in Lightning's sharded layout (ModelParallelStrategy, FSDP)."""
    io = strategy.checkpoint_io
    if type(io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
    elif isinstance(io, _WrappingCheckpointIO) and type(io.checkpoint_io) is TorchCheckpointIO:
        io._checkpoint_io = AtomicCheckpointIO()  # e.g. AsyncCheckpointIO around the default
    if isinstance(strategy, (ModelParallelStrategy, FSDPStrategy)):
        strategy.load_checkpoint = CheckedStrategyLoad(strategy)
