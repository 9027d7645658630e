"""The prompt pool, the just-in-time selected training batches, and the sharded validation set."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import lightning as L
from torch import Tensor

from insight_lightning.selection.callback import SelectionCallback
from samplers import PromptSelector, Refresh, Sampler, SelectionRecord, build_sampler, mixed_groups
from tasks import Task, build_task


@dataclass
class PromptBatch:
    """One training step's prompts for this rank, with the selection they came from."""

    examples: list[dict]
    """This rank's shard of the selected examples."""
    selection: SelectionRecord
    """The selection (all ranks' prompts, the same on every rank) and what the beliefs said about it."""
    refill: Refill | None = None
    """For steps that look at rollouts before committing (dynamic sampling, screening): how to roll out more."""


@dataclass
class Refill:
    """Lets a step roll out further selections until enough of its groups are informative (DAPO's dynamic sampling),
    or screen each prompt with a few rollouts and complete only the informative ones (SPEED-RL).

    The step calls `draw` at most `max_rounds` times; every rank calls it alike, so selections stay identical.
    """

    max_rounds: int
    informative: Callable[[Tensor], Tensor]
    """rewards [b, n] -> [b] bool: the groups worth training on."""
    draw: Callable[[], PromptBatch]
    """The next selection's shard of this rank."""
    screening: int = 0
    """Rollouts per prompt in a round (N_init); the chosen groups are then completed to the group size (0: a round
    rolls out whole groups)."""


class SelectedBatches:
    """Training batches chosen one step at a time by the selection owner; yields this rank's shard of examples.

    It is not a DataLoader on purpose: Lightning injects no distributed sampler, and because it has a length the
    loop does not prefetch, so each step's prompts are chosen only after the previous step's beliefs are updated.
    """

    def __init__(
        self,
        examples: list[dict],
        select: Callable[[], SelectionRecord],
        sampler: Sampler,
        rank: int,
        world_size: int,
        length: int,
        screening: int = 0,
        screening_rounds: int = 0,
    ) -> None:
        self.examples = examples
        self.select = select
        self.sampler = sampler
        self.rank = rank
        self.world_size = world_size
        self.length = length
        self.screening = screening
        self.screening_rounds = screening_rounds

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[PromptBatch]:
        refill = None
        if self.screening:
            refill = Refill(self.screening_rounds, mixed_groups, self.draw, self.screening)
        elif self.sampler.max_extra_rounds > 0:
            refill = Refill(self.sampler.max_extra_rounds, self.sampler.informative, self.draw)
        for _ in range(self.length):
            batch = self.draw()
            batch.refill = refill
            yield batch

    def draw(self) -> PromptBatch:
        """Select the next M prompts (identically on every rank) and return this rank's shard of them."""
        record = self.select()
        shard = record.ids[self.rank :: self.world_size].tolist()
        return PromptBatch([self.examples[i] for i in shard], record)


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


def build_named(option: str, name: str, build: Callable[[str], Any], base: type) -> Any:
    """``build(name)`` for a registered name; for a dotted name that is not one, one sentence naming the option.

    jsonargparse passes a class_path it cannot import on as a plain string, so this is where a mistyped class
    path (``--data.sampler=samplers.InSightSamplr``) surfaces: say why it does not import.
    """
    try:
        return build(name)
    except ValueError as error:
        if "." not in name:
            raise
        module, _, attribute = name.rpartition(".")
        try:
            getattr(importlib.import_module(module), attribute)
            reason = f"it is not a {base.__name__} class"
        except ImportError as import_error:
            reason = str(import_error)
        except AttributeError:
            reason = f"module '{module}' has no attribute '{attribute}'"
        raise ValueError(f"{option}: Problem with given class_path '{name}': {reason}. {error}") from None


class PromptDataModule(L.LightningDataModule):
    """A task's prompt pool with online selection for training, and its test split for validation.

    The selection state (beliefs, candidate stream, RNG) belongs to the run's SelectionCallback, which builds its
    PromptSelector with `make_selector` and supplies the training batches' selections.

    Args:
        task: the task: a registered name (e.g. countdown) or a Task object (class_path/init_args in YAML).
        sampler: how prompts are selected: a registered name (e.g. uniform) or a Sampler class (e.g. InSightSampler,
            which takes options: --data.sampler.eta=2).
        prompts_per_step: prompts selected per training step (M), across all ranks together.
        group_size: completions per prompt (K); the module's GRPO group size is linked to it.
        seed: seed of the selection stream and of the sampler's randomness.
        refresh: step: the sampler scores fresh candidates every step (the paper's Algorithm 1); epoch: it ranks the
            whole pool once per pass and the pass follows that order (beliefs still update every step).
        screening: SPEED-RL's screened rollouts, for any sampler: roll each selected prompt out this many times
            first (N_init) and complete only those with mixed rewards to group_size; null: the sampler's default
            (speed_rl: 4; others: 0, off).
        screening_rounds: with screening, most extra rounds of freshly selected prompts per step to find enough
            mixed ones (then the step also completes unmixed ones, whose advantage is 0).
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
        refresh: Refresh = "step",
        screening: int | None = None,
        screening_rounds: int = 10,
        val_splits: list[str] | None = None,
        val_batch_size: int = 64,
        val_limit: int | None = None,
    ) -> None:
        super().__init__()
        self.task = build_named("data.task", task, build_task, Task) if isinstance(task, str) else task
        self.sampler = (
            build_named("data.sampler", sampler, build_sampler, Sampler) if isinstance(sampler, str) else sampler
        )
        if prompts_per_step <= 0:
            raise ValueError(f"data.prompts_per_step={prompts_per_step} must be positive")
        if group_size <= 0:
            raise ValueError(f"data.group_size={group_size} (linked from model.grpo.group_size) must be positive")
        self.prompts_per_step = prompts_per_step
        self.group_size = group_size
        self.screening = _checked_screening(screening, self.sampler, group_size)
        if screening_rounds < 0:
            raise ValueError(f"data.screening_rounds={screening_rounds} must be >= 0")
        self.screening_rounds = screening_rounds
        self.seed = seed
        self.refresh = refresh
        self.val_splits = list(val_splits) if val_splits else list(getattr(self.task, "eval_splits", ("test",)))
        self.val_batch_size = val_batch_size
        self.val_limit = val_limit
        self.train_examples: list[dict] | None = None
        self.val_examples: dict[str, list[dict]] | None = None

    def setup(self, stage: str) -> None:
        if self.train_examples is None and stage == "fit":
            if self.prompts_per_step % self._world:
                raise ValueError(
                    f"data.prompts_per_step={self.prompts_per_step} must be divisible by the number of processes "
                    f"({self._world}) so that every rank rolls out the same number of prompts"
                )
            self.train_examples = self.task.examples("train")
            if self.prompts_per_step > len(self.train_examples):
                raise ValueError(
                    f"data.prompts_per_step={self.prompts_per_step} is more than the {len(self.train_examples)} "
                    "prompts of the training pool; lower it, or raise data.task.init_args.train_size"
                )
        if self.val_examples is None:
            self.val_examples = {}
            for split in self.val_splits:
                examples = self.task.examples(split)
                self.val_examples[split] = examples[: self.val_limit] if self.val_limit else examples

    def make_selector(self) -> PromptSelector:
        """A fresh selector over the training pool (the SelectionCallback owns it and its state)."""
        if self.train_examples is None:
            raise RuntimeError("PromptDataModule.make_selector needs setup('fit') first")
        try:
            return PromptSelector(
                self.sampler,
                len(self.train_examples),
                self.prompts_per_step,
                self.group_size,
                seed=self.seed,
                refresh=self.refresh,
            )
        except ValueError as error:  # the sampler's prior or forgetting factor, checked by its posterior
            raise ValueError(f"data.sampler ({type(self.sampler).__name__}): {error}") from None

    def train_dataloader(self) -> SelectedBatches:
        owner = SelectionCallback.of(self.trainer)
        steps_per_pass = math.ceil(len(self.train_examples) / self.prompts_per_step)
        return SelectedBatches(
            self.train_examples,
            owner.select,
            self.sampler,
            self._rank,
            self._world,
            steps_per_pass,
            self.screening,
            self.screening_rounds,
        )

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


def _checked_screening(screening: int | None, sampler: Sampler, group_size: int) -> int:
    """data.screening, or the sampler's default when unset; refused unless 0 (off) or 0 < N_init < group_size."""
    default = screening is None
    screening = sampler.screening if default else screening
    given = f"data.screening={screening}" + (f" (the default of {type(sampler).__name__})" if default else "")
    if screening < 0:
        raise ValueError(f"{given} must be >= 0 (0: no screening)")
    if screening >= group_size:
        raise ValueError(
            f"{given} must be smaller than data.group_size={group_size}: screened prompts are completed to the group "
            "size; lower data.screening or raise model.grpo.group_size"
        )
    return screening
