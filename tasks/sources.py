"""Read raw rows from a local JSON lines / JSON / Parquet file or a Hugging Face dataset name (lazily).

Rows a task cannot use are skipped, never trained on silently: ``read_valid_rows`` reports them in one warning per
source, with a count and the first row indices for each reason, and counts blank lines.
"""

import json
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
MAX_REPORTED_ROWS = 5
"""Row indices listed per skip reason."""
MAX_ROW_CHARS = 1_000_000
"""A JSON line, or the text fields of any other row, longer than this is skipped (no prompt is that long)."""
TOO_LONG = f"longer than {MAX_ROW_CHARS:,} characters"
BLANK_LINE = object()
"""Yielded by ``iter_rows`` for a blank line of a JSON lines file (counted, not a row)."""


class BadRow(ValueError):
    """Why a row cannot be used; ``reason`` is a short phrase shared by all rows skipped for the same cause."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason


def _is_local(source: str, path: Path) -> bool:
    return path.exists() or path.suffix.lower() in LOCAL_SUFFIXES or source.startswith((".", "/", "~"))


def iter_rows(source: str) -> Iterator[Any]:
    """Yield the rows of ``source`` in order; a line that cannot be a row is yielded as the ``BadRow`` saying why.

    A blank line of a JSON lines file is yielded as ``BLANK_LINE``, so that row indices are line numbers - 1.

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
            if len(line) > MAX_ROW_CHARS:
                yield BadRow(TOO_LONG)
            elif not line.strip():
                yield BLANK_LINE
            else:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    yield BadRow("not valid JSON")


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


def _text_chars(row: Any) -> int:
    """Characters in the top-level text fields of a row (what a huge row of a JSON array or Parquet file holds)."""
    if not isinstance(row, dict):
        return 0
    return sum(len(value) for value in row.values() if isinstance(value, str))


def read_valid_rows(
    source: str, parse_row: Callable[[Any], dict], kind: str, requirement: str, limit: int | None = None
) -> list[dict]:
    """The first ``limit`` rows of ``source`` that ``parse_row`` accepts (it raises ``BadRow`` for one it cannot use).

    Skipped rows and blank lines are reported in one warning naming the source (see ``skip_report``); a source with
    no valid row raises ValueError. ``kind`` names the rows ("Countdown") and ``requirement`` says what a valid row
    needs.
    """
    rows: list[dict] = []
    counts: Counter[str] = Counter()
    first: dict[str, list[int]] = {}
    blank = 0
    for index, raw in enumerate(iter_rows(source)):
        if limit is not None and len(rows) >= limit:
            break
        if raw is BLANK_LINE:
            blank += 1
            continue
        try:
            if isinstance(raw, BadRow):  # a line that iter_rows could not read
                raise raw
            if _text_chars(raw) > MAX_ROW_CHARS:
                raise BadRow(TOO_LONG)
            rows.append(parse_row(raw))
        except BadRow as error:
            counts[error.reason] += 1
            indices = first.setdefault(error.reason, [])
            if len(indices) < MAX_REPORTED_ROWS:
                indices.append(index)
    skipped = sum(counts.values())
    if not rows:
        reasons = f": {_reasons(counts, first)}" if skipped else ""
        raise ValueError(f"'{source}' has no valid {kind} rows ({skipped} broken{reasons}); {requirement}.")
    if skipped or blank:
        warnings.warn(skip_report(source, kind, requirement, counts, first, blank), UserWarning, stacklevel=3)
    return rows


def _reasons(counts: Counter[str], first: dict[str, list[int]]) -> str:
    """``2 not valid JSON (rows 3, 9), 1 ...``: each reason with its count and first row indices, commonest first."""
    parts = []
    for reason, count in counts.most_common():
        indices = ", ".join(map(str, first[reason])) + (", ..." if count > len(first[reason]) else "")
        parts.append(f"{count} {reason} (row{'s' if count > 1 else ''} {indices})")
    return ", ".join(parts)


def skip_report(
    source: str, kind: str, requirement: str, counts: Counter[str], first: dict[str, list[int]], blank: int
) -> str:
    """One line: how many rows of ``source`` were skipped for each reason, their first indices, the blank lines."""
    parts = []
    skipped = sum(counts.values())
    if skipped:
        indices = sorted(i for rows in first.values() for i in rows)[:MAX_REPORTED_ROWS]
        parts.append(
            f"Skipped {skipped} broken {kind} rows of '{source}': {_reasons(counts, first)}; "
            f"first row indices: {indices} ({requirement})"
        )
    if blank:
        lines = f"{blank} blank line{'s' if blank > 1 else ''}"
        parts.append(f"ignored {lines}" if skipped else f"Ignored {lines} of '{source}'")
    return "; ".join(parts) + "."
