"""The prompt pool, the just-in-time selected training batches, and the sharded validation set."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import lightning as L

from samplers import PromptSelector, Sampler, build_sampler
from tasks import Task, build_task


@dataclass
class PromptBatch:
    """One step's prompts for this rank, and a way to ask the selector for more within the same step."""

    examples: list[dict]
    """This rank's shard of the step's selected examples."""
    selection: SelectedBatches
    """Where they came from: `selection.draw()` selects the next M prompts (on every rank alike) and returns
    this rank's shard; samplers such as dynamic sampling use it to roll out more within a step."""

    @property
    def sampler(self) -> Sampler:
        return self.selection.selector.sampler


class SelectedBatches:
    """Training batches chosen one step at a time by the PromptSelector; yields this rank's shard of examples.

    It is not a DataLoader on purpose: Lightning injects no distributed sampler, and because it has a length the
    loop does not prefetch, so each step's prompts are chosen only after the previous step's beliefs are updated.
    """

    def __init__(self, examples: list[dict], selector: PromptSelector, rank: int, world_size: int, length: int) -> None:
        self.examples = examples
        self.selector = selector
        self.rank = rank
        self.world_size = world_size
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[PromptBatch]:
        for _ in range(self.length):
            yield PromptBatch(self.draw(), self)

    def draw(self) -> list[dict]:
        """Select the next M prompts (identically on every rank) and return this rank's shard of them."""
        ids = self.selector.next_batch()  # [M]
        return [self.examples[i] for i in ids[self.rank :: self.world_size].tolist()]


class ShardedBatches:
    """Fixed-order evaluation batches; every rank gets the same number of batches (padding rows are flagged)."""

    def __init__(self, examples: list[dict], batch_size: int, rank: int, world_size: int) -> None:
        per_rank = math.ceil(len(examples) / world_size)
        shard = examples[rank::world_size]
        padding = [dict(examples[0], _padding=True)] * (per_rank - len(shard))
        rows = shard + padding
        self.batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[dict]]:
        return iter(self.batches)


class PromptDataModule(L.LightningDataModule):
    """A task's prompt pool with online selection for training, and its test split for validation.

    Args:
        task: the task: a registered name (e.g. countdown) or a Task object (class_path/init_args in YAML).
        sampler: how prompts are selected: a registered name (e.g. uniform) or a Sampler object.
        prompts_per_step: prompts selected per training step (M), across all ranks together.
        group_size: completions per prompt (K); the module's GRPO group size is linked to it.
        seed: seed of the selection stream and of the sampler's randomness.
        val_splits: splits scored in validation (null: the task's eval_splits, e.g. test; or math's named sets).
        val_batch_size: problems per validation batch on each rank.
        val_limit: evaluate only the first N problems of each validation split (null: all).
    """

    def __init__(
        self,
        task: Task | str = "countdown",
        sampler: Sampler | str = "uniform",
        prompts_per_step: int = 32,
        group_size: int = 8,
        seed: int = 0,
        val_splits: list[str] | None = None,
        val_batch_size: int = 64,
        val_limit: int | None = None,
    ) -> None:
        super().__init__()
        self.task = build_task(task) if isinstance(task, str) else task
        self.sampler = build_sampler(sampler) if isinstance(sampler, str) else sampler
        if prompts_per_step <= 0 or group_size <= 0:
            raise ValueError("prompts_per_step and group_size must be positive")
        self.prompts_per_step = prompts_per_step
        self.group_size = group_size
        self.seed = seed
        self.val_splits = list(val_splits) if val_splits else list(getattr(self.task, "eval_splits", ("test",)))
        self.val_batch_size = val_batch_size
        self.val_limit = val_limit
        self.train_examples: list[dict] | None = None
        self.val_examples: dict[str, list[dict]] | None = None
        self.selector: PromptSelector | None = None

    def setup(self, stage: str) -> None:
        if self.selector is None and stage == "fit":
            self.train_examples = self.task.examples("train")
            world = self.trainer.world_size if self.trainer is not None else 1
            if self.prompts_per_step % world:
                raise ValueError(
                    f"data.prompts_per_step={self.prompts_per_step} must be divisible by the number of processes "
                    f"({world}) so that every rank rolls out the same number of prompts"
                )
            self.selector = PromptSelector(
                self.sampler, len(self.train_examples), self.prompts_per_step, self.group_size, seed=self.seed
            )
        if self.val_examples is None:
            self.val_examples = {}
            for split in self.val_splits:
                examples = self.task.examples(split)
                self.val_examples[split] = examples[: self.val_limit] if self.val_limit else examples

    def train_dataloader(self) -> SelectedBatches:
        steps_per_pass = math.ceil(len(self.train_examples) / self.prompts_per_step)
        return SelectedBatches(self.train_examples, self.selector, self._rank, self._world, steps_per_pass)

    def val_dataloader(self) -> list[ShardedBatches]:
        """One loader per validation split, in the order of val_splits."""
        return [ShardedBatches(ex, self.val_batch_size, self._rank, self._world) for ex in self.val_examples.values()]

    def test_dataloader(self) -> list[ShardedBatches]:
        return self.val_dataloader()

    @property
    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    @property
    def _world(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1
