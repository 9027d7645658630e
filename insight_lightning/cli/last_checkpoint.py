"""`fit --ckpt_path last` for runs that checkpoint into the logger's version folders, as the shipped configs do."""

from __future__ import annotations

import re
from pathlib import Path

LAST = re.compile(r"^last(-v?\d+)?\.ckpt$")
"""ModelCheckpoint's names for its last checkpoint: last.ckpt, and last-v1.ckpt beside an older one."""


def version_folder_checkpoints(fit_config) -> Path | None:
    """Where the config's ModelCheckpoints write when they follow the logger: SAVE_DIR/NAME, whose version_N
    folders each hold a checkpoints/ folder; None when Lightning finds 'last' by itself (a ModelCheckpoint with its
    own dirpath, a fixed logger version, no logger or no checkpointing)."""
    trainer = fit_config.get("trainer") or {}
    callbacks = trainer.get("callbacks") or []
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    checkpoints = [c for c in callbacks if str(_get(c, "class_path", "")).endswith("ModelCheckpoint")]
    if not checkpoints or any(_get(_get(c, "init_args", {}), "dirpath") for c in checkpoints):
        return None
    init = _get(_first_logger(fit_config), "init_args", None)
    if init is None or _get(init, "save_dir") is None or _get(init, "version") is not None:
        return None
    name = _get(init, "name", "lightning_logs")
    return Path(_get(init, "save_dir")) / ("" if name is None else str(name))


def newest_last_checkpoint(fit_config) -> Path | None:
    """The newest last checkpoint among the logger's version folders (see version_folder_checkpoints), if any."""
    folder = version_folder_checkpoints(fit_config)
    if folder is None or not folder.is_dir():
        return None
    found = [p for p in folder.glob("*/checkpoints/*.ckpt") if LAST.match(p.name)]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resolve_last(fit_config) -> Path | None:
    """Turn `ckpt_path: last` into the newest last checkpoint of the run's version folders and log into that version
    again, so that the continue checkpoints and logs where the run left off; the path, or None if nothing changed.

    Lightning looks for 'last' only in the new run's own (new, empty) version folder, so with the shipped configs it
    would warn and start afresh."""
    if fit_config.get("ckpt_path") != "last":
        return None
    newest = newest_last_checkpoint(fit_config)
    if newest is not None:
        fit_config["ckpt_path"] = str(newest)
        _first_logger(fit_config)["init_args"]["version"] = newest.parent.parent.name
    return newest


def _first_logger(fit_config):
    """The logger whose save_dir, name and version place the checkpoints (Lightning uses the first of a list)."""
    logger = (fit_config.get("trainer") or {}).get("logger")
    return logger[0] if isinstance(logger, list) and logger else logger


def _get(item, key: str, default=None):
    """A key of a dict or a jsonargparse Namespace (which also answers .get)."""
    getter = getattr(item, "get", None)
    return getter(key, default) if getter is not None else default
