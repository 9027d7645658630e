"""Read raw rows from a local JSON lines / JSON / Parquet file or a Hugging Face dataset name (lazily)."""

import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
MAX_REPORTED_ROWS = 5


def _is_local(source: str, path: Path) -> bool:
    return path.exists() or path.suffix.lower() in LOCAL_SUFFIXES or source.startswith((".", "/", "~"))


def iter_rows(source: str) -> Iterator[Any]:
    """Yield the rows of ``source`` in order; a row that is not valid JSON is yielded as None.

    ``source`` is a ``.jsonl`` or ``.json`` file (JSON lines, or one JSON array), a ``.parquet`` file, or a
    Hugging Face dataset name such as ``Jiayi-Pan/Countdown-Tasks-3to4`` (its ``train`` split, from the local
    cache of the ``datasets`` package; ``NAME:SPLIT``, e.g. ``HuggingFaceH4/MATH-500:test``, picks another split).
    """
    path = Path(source).expanduser()
    if not _is_local(source, path):
        yield from _iter_hf_dataset(source)
        return
    if not path.is_file():
        raise FileNotFoundError(f"Data file '{source}' does not exist; pass an existing .jsonl/.json/.parquet path.")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _iter_parquet(path)
    elif suffix in (".jsonl", ".json"):
        yield from _iter_json(path)
    else:
        raise ValueError(f"Data file '{source}' has an unsupported format; use .jsonl, .json or .parquet.")


def _iter_json(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8") as handle:
        head = handle.read(4096).lstrip()
        handle.seek(0)
        if head.startswith("["):
            try:
                rows = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"Data file '{path}' is not valid JSON: {error}.") from None
            yield from rows
            return
        for line in handle:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield None


def _iter_parquet(path: Path) -> Iterator[Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            f"Reading '{path}' needs pyarrow, which is not installed; `pip install pyarrow` or use a .jsonl file."
        ) from None
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def _iter_hf_dataset(source: str) -> Iterator[Any]:
    name, _, split = source.partition(":")
    try:
        import datasets
    except ImportError:
        raise ImportError(
            f"'{source}' is neither a local file nor loadable: the Hugging Face `datasets` package is not installed; "
            "`pip install datasets` (with network access) or pass a local .jsonl/.parquet file."
        ) from None
    try:
        dataset = datasets.load_dataset(name, split=split or "train")
    except Exception as error:  # offline, not cached, or no such dataset: datasets raises many types
        raise ValueError(
            f"Could not load the Hugging Face dataset '{source}' (not available offline or does not exist: "
            f"{type(error).__name__}); download it once with network access or pass a local .jsonl/.parquet file."
        ) from None
    yield from dataset


def read_valid_rows(
    source: str, parse_row: Callable[[Any], dict | None], kind: str, requirement: str, limit: int | None = None
) -> list[dict]:
    """The first ``limit`` rows of ``source`` that ``parse_row`` accepts (it returns None for a broken row).

    Broken rows are skipped with one warning (their count and first indices); a source with no valid row raises
    ValueError. ``kind`` names the rows ("Countdown") and ``requirement`` says what a valid row needs.
    """
    rows: list[dict] = []
    broken: list[int] = []
    for index, raw in enumerate(iter_rows(source)):
        if limit is not None and len(rows) >= limit:
            break
        row = parse_row(raw)
        if row is None:
            broken.append(index)
        else:
            rows.append(row)
    if not rows:
        raise ValueError(f"'{source}' has no valid {kind} rows ({len(broken)} broken); {requirement}.")
    if broken:
        warnings.warn(
            f"Skipped {len(broken)} broken {kind} rows of '{source}' ({requirement}); first row indices: "
            f"{broken[:MAX_REPORTED_ROWS]}.",
            UserWarning,
            stacklevel=3,
        )
    return rows
