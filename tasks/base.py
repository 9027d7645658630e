"""The Task interface: examples with stable ids, prompts, a verifier and reference solutions."""

import abc
from dataclasses import dataclass
from typing import ClassVar

Prompt = str | list[dict[str, str]]
"""A plain text prompt, or chat messages ``[{"role": ..., "content": ...}]``."""


@dataclass(frozen=True)
class Score:
    """A verifier's verdict on one completion."""

    reward: float
    """The (possibly shaped) reward used for training."""
    correct: bool
    """Whether the completion solves the problem (accuracy and the samplers' posteriors use this)."""


class Task(abc.ABC):
    """A data source plus a verifier: records of each split, a prompt per record, a score per completion.

    Subclasses implement ``build_examples``, ``prompt`` and ``score`` (and ``solution`` where they can);
    ``examples`` adds the ids and caches each split, so ``build_examples`` runs at most once per split.
    """

    name: ClassVar[str] = ""
    splits: tuple[str, ...] = ("train", "test")
    eval_splits: tuple[str, ...] = ("test",)
    """The splits validated on (each logged as its own ``val/<split>/...``); a subset of ``splits``."""

    def examples(self, split: str) -> list[dict]:
        """The records of ``split``: each a dict of the row's fields plus ``"id"`` (0..n-1 in split order)."""
        if split not in self.splits:
            raise ValueError(
                f"Unknown split {split!r} for task {self.name or type(self).__name__!r}; "
                f"available splits: {', '.join(self.splits)}."
            )
        cache: dict[str, list[dict]] = self.__dict__.setdefault("_examples_cache", {})
        if split not in cache:
            records = []
            for index, row in enumerate(self.build_examples(split)):
                record = {"id": index, **row}
                record["id"] = index
                records.append(record)
            cache[split] = records
        return cache[split]

    @abc.abstractmethod
    def build_examples(self, split: str) -> list[dict]:
        """The rows of ``split`` in a stable order, without ids (called once per split)."""

    @abc.abstractmethod
    def prompt(self, example: dict) -> Prompt:
        """The prompt for one record: plain text or chat messages."""

    @abc.abstractmethod
    def score(self, completion: str, example: dict) -> Score:
        """Score the generated text (without the prompt); never raises on any string completion."""

    def score_many(self, completions: list[str], examples: list[dict]) -> list[Score]:
        """Score completion i against example i; tasks with a slow verifier override this to check in parallel."""
        return [self.score(text, example) for text, example in zip(completions, examples, strict=True)]

    def verifier_counts(self) -> dict[str, int]:
        """Running totals of verifier faults so far (e.g. ``{"timeouts": 3}``), logged per step as
        ``train/verifier_<name>``; empty for verifiers that cannot fail."""
        return {}

    def solution(self, example: dict) -> str | None:
        """A reference completion that scores 1.0 after the prompt, or None if unknown."""
        return None

    def warmstart_examples(self, count: int, seed: int) -> list[dict]:
        """Records for supervised warm-start (with solutions); by default the train split itself.

        Tasks with a generator override this to draw fresh problems that are in neither the RL pool nor the test
        set, so that warm-start teaches the format and the skill without memorising the problems RL trains on.
        """
        return self.examples("train")[:count]
