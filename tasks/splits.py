"""Train and test splits that come from files or from a seeded generator, shared by the generator-backed tasks.

A split given as a file takes its first ``size`` valid rows (all of them for ``None``; a file with fewer valid rows
gives all it has, with one warning); when train and test name the same file, test takes the rows after train's. A
generated split draws with a seed derived from the task seed and never repeats a problem of the other split;
warm-start problems repeat neither.
"""

from __future__ import annotations

import abc
import hashlib
import random
import warnings
from collections.abc import Callable, Hashable
from typing import ClassVar

from tasks.base import Task

MAX_CONSECUTIVE_MISSES = 100_000
"""A generator gives up after this many rejected or repeated draws in a row."""


def check_split_sizes(**sizes: int | None) -> None:
    """Raise ValueError naming the first negative size, e.g. ``check_split_sizes(train_size=-1)``."""
    for name, size in sizes.items():
        if size is not None and size < 0:
            raise ValueError(f"{name}={size} must be >= 0.")


def split_seed(namespace: str, seed: int, split: str) -> int:
    """A seed per split, derived from the task seed (stable across Python versions and processes)."""
    digest = hashlib.sha256(f"{namespace}/{split}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def draw_distinct(
    count: int,
    seed: int,
    draw: Callable[[random.Random], tuple[Hashable, Callable[[], dict]] | None],
    exclude: set | None,
    give_up: str,
) -> list[dict]:
    """``count`` rows from ``draw`` with distinct keys none of which is in ``exclude``; deterministic in ``seed``.

    ``draw(rng)`` returns ``(key, make_row)`` or None for a rejected draw; ``make_row`` runs only for a kept key, so
    expensive fields (a plan, a solution) are computed once per problem. Raises ValueError with ``give_up`` after
    ``MAX_CONSECUTIVE_MISSES`` misses in a row.
    """
    rng = random.Random(seed)
    seen = set(exclude or ())
    rows: list[dict] = []
    misses = 0
    while len(rows) < count:
        drawn = draw(rng)
        if drawn is None or drawn[0] in seen:
            misses += 1
            if misses > MAX_CONSECUTIVE_MISSES:
                raise ValueError(f"Could only generate {len(rows)} of {count} {give_up}")
            continue
        misses = 0
        seen.add(drawn[0])
        rows.append(drawn[1]())
    return rows


class FileOrGeneratedSplits(Task):
    """A task whose "train" and "test" splits are read from files or generated (see the module docstring).

    Subclasses set ``train_file``, ``test_file``, ``train_size``, ``test_size`` and ``seed``, and implement
    ``generate``, ``read_rows`` and ``problem_key``.
    """

    seed_namespace: ClassVar[str]
    """Mixed into every split seed, so that tasks with the same seed draw unrelated problems."""
    train_file: str | None
    test_file: str | None
    train_size: int | None
    test_size: int | None
    seed: int

    @abc.abstractmethod
    def generate(self, count: int, seed: int, exclude: set | None) -> list[dict]:
        """``count`` fresh problems from ``seed``, none with a key in ``exclude``."""

    @abc.abstractmethod
    def read_rows(self, source: str, limit: int | None) -> list[dict]:
        """The first ``limit`` valid rows of ``source`` (all for None)."""

    @abc.abstractmethod
    def problem_key(self, row: dict) -> Hashable:
        """What makes two rows the same problem."""

    def build_examples(self, split: str) -> list[dict]:
        """Rows of ``split``: read from its file if given, else generated (test never repeats a train problem)."""
        source = self.train_file if split == "train" else self.test_file
        size = self.train_size if split == "train" else self.test_size
        if source is not None:
            return self._file_rows(split, source, size)
        # A generated test split avoids train; a generated train split avoids test only when test is a file (a
        # generated test is drawn after train and avoids it itself).
        other = "test" if split == "train" else "train"
        exclude = None if split == "train" and self.test_file is None else self._keys(other)
        return self.generate(size, split_seed(self.seed_namespace, self.seed, split), exclude)

    def warmstart_examples(self, count: int, seed: int) -> list[dict]:
        """Fresh generated problems, none of them in the train or test split."""
        exclude = self._keys("train") | self._keys("test")
        return self.generate(count, split_seed(self.seed_namespace, seed, "warmstart"), exclude)

    def _keys(self, split: str) -> set:
        return {self.problem_key(row) for row in self.examples(split)}

    def _cached_rows(self, source: str, limit: int | None) -> list[dict]:
        cache: dict[tuple, list[dict]] = self.__dict__.setdefault("_source_cache", {})
        if (source, limit) not in cache:
            cache[source, limit] = self.read_rows(source, limit)
        return cache[source, limit]

    def _file_rows(self, split: str, source: str, size: int | None) -> list[dict]:
        if size == 0:
            return []
        if self.train_file != self.test_file:
            return _warn_if_short(self._cached_rows(source, size), split, source, size)
        if self.train_size is None:
            raise ValueError("train_file and test_file are the same file: set train_size to split its rows.")
        limit = None if self.test_size is None else self.train_size + self.test_size
        rows = self._cached_rows(source, limit)
        if split == "train":
            return _warn_if_short(rows[: self.train_size], split, source, size)
        test = rows[self.train_size :]
        if not test:
            raise ValueError(
                f"'{source}' has only {len(rows)} valid rows, all used by the train split; "
                "pass a separate test_file or a smaller train_size."
            )
        return _warn_if_short(test, split, source, size, after=self.train_size)


def _warn_if_short(rows: list[dict], split: str, source: str, size: int | None, after: int = 0) -> list[dict]:
    """``rows``; with a warning when they are fewer than the ``size`` asked for (a small pool changes the run)."""
    if size is not None and len(rows) < size:
        rest = f" after the train split's first {after}" if after else ""
        warnings.warn(
            f"The {split} split has only {len(rows)} rows, fewer than {split}_size={size}: all the valid rows of "
            f"'{source}'{rest}.",
            UserWarning,
            stacklevel=4,
        )
    return rows
