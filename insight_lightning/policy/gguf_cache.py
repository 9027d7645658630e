"""A dequantised copy of a local GGUF model, so that loading it takes seconds instead of most of a minute.

transformers reads a GGUF file in pure Python: its metadata (a 49k-token vocabulary for SmolLM2) is parsed once for
the config, once for the weights and once for the tokenizer, and the tensor-name map is rebuilt per tensor; for
SmolLM2-135M that is ~30-45 s on a 2-core CPU, of which the dequantisation itself is ~4 s. The first load saves the
dequantised float32 weights (safetensors) and the converted tokenizer in a folder keyed by the file's path, size,
mtime and the transformers version; later loads read that folder. Nothing else about the model changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import transformers

from insight_lightning.policy.hf_folder import save_hf_folder

DEFAULT_CACHE_DIR = "~/.cache/insight_lightning/gguf"
_DONE = "insight_lightning_gguf_source.txt"  # written last: a folder without it is an interrupted copy


def source_key(gguf_path: Path) -> str:
    """What the copy was made from: the file (path, size, mtime) and the transformers version that converted it."""
    stat = gguf_path.stat()
    return f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|transformers {transformers.__version__}"


def cached_folder(gguf_path: Path, cache_dir: str) -> Path:
    """Where the dequantised copy of ``gguf_path`` lives (it may not exist yet)."""
    digest = hashlib.sha256(source_key(gguf_path).encode()).hexdigest()[:16]
    return Path(os.path.expanduser(cache_dir)) / f"{gguf_path.stem}-{digest}"


def is_complete(copy: Path, gguf_path: Path) -> bool:
    """Whether ``copy`` was fully written from this very file (an interrupted or stale copy is not)."""
    marker = copy / _DONE
    return marker.is_file() and marker.read_text() == source_key(gguf_path)


def write_copy(model, tokenizer, copy: Path, gguf_path: Path) -> None:
    """Save a freshly GGUF-loaded float model and its tokenizer as ``copy`` (atomically: rename of a full folder)."""
    copy.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{copy.name}.", dir=copy.parent))
    try:
        save_hf_folder(model, tokenizer, staging)  # on every rank: each may be the first to load this file
        (staging / _DONE).write_text(source_key(gguf_path))
        if is_complete(copy, gguf_path):  # another rank finished first and may be reading it now: keep that one
            shutil.rmtree(staging, ignore_errors=True)
            return
        if copy.exists():  # an interrupted copy: replace it with a whole one
            shutil.rmtree(copy, ignore_errors=True)
        os.replace(staging, copy)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not is_complete(copy, gguf_path):
            raise
