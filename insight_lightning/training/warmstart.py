"""Supervised warm-start of a small policy on a task's reference solutions, so that RL has signal to work with."""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
import os
import random
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from insight_lightning.policy.logprobs import sequence_logprobs
from insight_lightning.policy.prompts import PromptEncoder
from insight_lightning.selection.scalar_logging import log_scalars
from tasks import Task

log = logging.getLogger(__name__)


@dataclass
class WarmStartConfig:
    """Supervised training on reference solutions before RL (for models that start from scratch)."""

    max_seconds: float = 1800.0
    """Safety cap on wall-clock time: a warm-start it cuts warns and is not cached (it depends on the speed)."""
    max_steps: int = 4000
    """Optimizer steps; the learning-rate schedule runs by step, so equal settings give equal weights."""
    batch_size: int = 64
    """Sequences per step."""
    lr: float = 3e-3
    """Peak learning rate (AdamW), cosine-annealed to 5% of it."""
    warmup_steps: int = 50
    """Linear learning-rate warm-up."""
    num_examples: int = 20000
    """Distinct problems drawn from the task's generator (never from the RL pool or the test set)."""
    seed: int = 1234
    """Seed of the problem draw and the batch order."""
    cache_dir: str | None = "~/.cache/insight_lightning/warmstart"
    """Folder where the warm-started weights are cached between runs (null: always train)."""
    init_from: str | None = None
    """A weights file written by an earlier warm-start (a cache file): start from it instead of training."""


@dataclass
class WarmStartResult:
    """What the warm-start did: for the logs."""

    steps: int = 0
    seconds: float = 0.0
    final_loss: float = float("nan")
    initial_loss: float = float("nan")
    from_cache: bool = False
    cache_path: str | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    cut_by_time: bool = False


def shared_warm_start(
    base: torch.nn.Module,
    prompts: PromptEncoder,
    task: Task,
    config: WarmStartConfig,
    device: torch.device,
    strategy=None,
) -> WarmStartResult:
    """Supervised warm-start on rank 0 (or from its cache); the other ranks receive rank 0's weights.

    strategy: the Lightning strategy of a distributed run (None: a single process).
    """
    is_zero = strategy is None or strategy.global_rank == 0
    result = None
    if is_zero:
        pairs = [] if config.init_from else reference_pairs(task, prompts, config)
        if pairs:
            log.info(
                "Warm-start: supervised training on %d reference solutions (up to %.0f s)",
                len(pairs),
                config.max_seconds,
            )
        result = warm_start(base, prompts.tokenizer, pairs, config, device)
        base.to("cpu")
    if strategy is not None and strategy.world_size > 1:
        state = strategy.broadcast({k: v.cpu() for k, v in base.state_dict().items()} if is_zero else None, src=0)
        base.load_state_dict(state)
        result = strategy.broadcast(result, src=0)
    log.info(
        "Warm-start done: %d steps, %.0f s, loss %.4f%s",
        result.steps,
        result.seconds,
        result.final_loss,
        " (from cache)" if result.from_cache else "",
    )
    return result


def log_warm_start(trainer, result: WarmStartResult) -> None:
    """The warm-start's loss curve and its time, in the run's logger (before RL step 0)."""
    for step, loss in result.losses:
        log_scalars(trainer, {"warmstart/loss": loss}, step)
    log_scalars(trainer, {"warmstart/seconds": result.seconds}, 0)


def reference_pairs(task: Task, prompts: PromptEncoder, config: WarmStartConfig) -> list[tuple[str, str]]:
    """(prompt text as the policy sees it, reference solution) for the task's warm-start problems."""
    pairs = []
    for example in task.warmstart_examples(config.num_examples, config.seed):
        solution = task.solution(example)
        if solution is not None:
            pairs.append((prompts.render(task.prompt(example)), solution))
    return pairs


def encode_supervised(tokenizer, prompts: Sequence[str], completions: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded prompt+completion+eos ids [B, L], attention mask [B, L], and a mask of the completion tokens."""
    prompt_ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    completion_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    rows = [p + c + [tokenizer.eos_token_id] for p, c in zip(prompt_ids, completion_ids)]
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    target = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (row, p) in enumerate(zip(rows, prompt_ids)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        target[i, len(p) : len(row)] = 1
    return input_ids, attention, target


def cache_key(model: torch.nn.Module, tokenizer, config: WarmStartConfig, pairs: Sequence[tuple[str, str]]) -> str:
    """Identifies a warm-start by everything that determines its result (on one CPU model and software).

    The starting weights are in it (a seed that initialises the model differently is another warm-start), and
    every pair, not a prefix: a stale cache file must never stand in for a different training.
    """
    settings = {k: v for k, v in asdict(config).items() if k != "cache_dir"}
    pairs_digest = hashlib.sha256(json.dumps(list(pairs)).encode()).hexdigest()
    payload = json.dumps(
        {
            "model": model.config.to_dict(),
            "weights": weights_digest(model),
            "vocab": sorted(tokenizer.get_vocab().items()),
            "settings": settings,
            "data": [len(pairs), pairs_digest],
            "torch": torch.__version__.split("+")[0],
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer, by name (about a second for a 135M-parameter model on a CPU)."""
    return state_digest(model.state_dict())


def state_digest(state: dict[str, Tensor]) -> str:
    """SHA-256 of a state dict's tensors, by name: equal exactly when every name and every bit is."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def warm_start(
    model: torch.nn.Module,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    config: WarmStartConfig,
    device: torch.device,
    is_writer: bool = True,
) -> WarmStartResult:
    """Train `model` in place on (prompt, solution) pairs, or load the cached result of the same warm-start."""
    if config.init_from:
        return _load(model, Path(os.path.expanduser(config.init_from)))
    if not pairs:
        raise ValueError("warm-start needs reference solutions, but the task provided none")
    cache_path = None
    if config.cache_dir:
        cache_path = Path(os.path.expanduser(config.cache_dir)) / f"{cache_key(model, tokenizer, config, pairs)}.pt"
        if cache_path.is_file():
            try:
                return _load(model, cache_path)
            except Exception as err:  # a corrupt cache file is retrained, never fatal
                log.warning("Ignoring unreadable warm-start cache %s (%s); training again", cache_path, err)
    result = _train(model, tokenizer, pairs, config, device)
    result.cache_path = str(cache_path) if cache_path else None
    if cache_path is not None and is_writer and not result.cut_by_time:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        meta = {"steps": result.steps, "seconds": result.seconds, "loss": result.final_loss}
        _atomic_torch_save({"state_dict": state, "meta": meta}, cache_path)
    return result


def _load(model: torch.nn.Module, path: Path) -> WarmStartResult:
    """Weights of an earlier warm-start (its cache file format)."""
    if not path.is_file():
        raise FileNotFoundError(f"warm-start weights file '{path}' does not exist")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(saved["state_dict"])
    meta = saved["meta"]
    log.info("Warm-start loaded from %s (%d steps, loss %.4f)", path, meta["steps"], meta["loss"])
    return WarmStartResult(meta["steps"], meta["seconds"], meta["loss"], True, str(path))


def _train(model, tokenizer, pairs, config: WarmStartConfig, device) -> WarmStartResult:
    model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0, betas=(0.9, 0.98))
    order = list(range(len(pairs)))
    rng = random.Random(config.seed)
    rng.shuffle(order)
    start = time.monotonic()
    result = WarmStartResult()
    cursor, recent = 0, collections.deque(maxlen=50)  # loss over the last 50 steps, for the logs
    for step in range(1, config.max_steps + 1):
        elapsed = time.monotonic() - start
        if elapsed >= config.max_seconds:
            result.cut_by_time = True
            warnings.warn(
                f"warm-start stopped by max_seconds={config.max_seconds:g} after {step - 1} of {config.max_steps} "
                "steps: its result depends on this machine's speed and is not cached; raise "
                "model.warm_start.max_seconds (or lower max_steps) for a reproducible start",
                UserWarning,
                stacklevel=2,
            )
            break
        progress_frac = step / config.max_steps  # by step only: the same settings anneal alike on any machine
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, progress_frac, config)
        if cursor + config.batch_size > len(order):
            rng.shuffle(order)
            cursor = 0
        batch = [pairs[i] for i in order[cursor : cursor + config.batch_size]]
        cursor += config.batch_size
        input_ids, attention, target = (t.to(device) for t in encode_supervised(tokenizer, *zip(*batch)))
        logp, _ = sequence_logprobs(model, input_ids, attention, target)  # [B, L]
        loss = -(logp * target).sum() / target.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        recent.append(loss.item())
        if step == 1:
            result.initial_loss = recent[0]
        result.steps = step
        if step % 100 == 0:
            mean = sum(recent) / len(recent)
            result.losses.append((step, mean))
            log.info("warm-start step %d, loss %.4f, %.0f s", step, mean, time.monotonic() - start)
    optimizer.zero_grad(set_to_none=True)
    result.seconds = time.monotonic() - start
    result.final_loss = sum(recent) / len(recent) if recent else float("nan")
    return result


def _lr_at(step: int, progress_frac: float, config: WarmStartConfig) -> float:
    warm = min(1.0, step / max(1, config.warmup_steps))
    cosine = 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_frac)))
    return config.lr * warm * cosine


def _atomic_torch_save(obj, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
