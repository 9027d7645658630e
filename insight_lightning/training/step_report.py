"""What a training step reports: its metrics (train/, time/, selection/), their mean over ranks, its text samples."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from insight_lightning.selection.scalar_logging import log_scalars, log_text_samples
from insight_lightning.training.config import LoggingConfig
from insight_lightning.training.experience import Experience

log = logging.getLogger(__name__)

VERIFIER_PREFIX = "train/verifier_"
"""Per-step counts of verifier faults (timeouts, failures, refused answers), summed over ranks."""


@dataclass
class StepTimes:
    """Where a training step's time went (benchmarks/rollout.py reads the latest)."""

    rollout_s: float
    update_s: float
    sequences: float
    tokens: float

    @property
    def tok_per_s(self) -> float:
        return self.tokens / max(self.rollout_s, 1e-9)


def step_metrics(
    experience: Experience,
    update_metrics: dict[str, Tensor],
    times: StepTimes,
    truncated_prompts: int,
    rollouts_total: int,
    lr: float,
    group_size: int,
    verifier_faults: dict[str, int],
    eos_token_ids: list[int],
) -> dict[str, Tensor]:
    """Every scalar of one step on this rank; verifier_faults: the verifier's fault counts during the step."""
    scores = experience.scores
    return {
        "train/frac_truncated": frac_truncated(experience.rollout, eos_token_ids),
        "train/reward": scores.rewards.mean(),
        "train/accuracy": scores.correct.float().mean(),
        "train/frac_all_correct": scores.correct.all(dim=1).float().mean(),
        "train/frac_all_wrong": (~scores.correct.any(dim=1)).float().mean(),
        "train/frac_all_equal": (scores.rewards.amax(dim=1) == scores.rewards.amin(dim=1)).float().mean(),
        "train/response_len": experience.rollout.completion_mask.sum(dim=1).float().mean().cpu(),
        "train/truncated_prompts": torch.tensor(float(truncated_prompts)),
        "train/rollouts_total": torch.tensor(float(rollouts_total)),
        "time/rollout_s": torch.tensor(times.rollout_s),
        "time/update_s": torch.tensor(times.update_s),
        "time/verify_s": torch.tensor(experience.verify_s),
        "time/rollout_tok_per_s": torch.tensor(times.tok_per_s),
        "train/lr": torch.tensor(lr),
        **{f"{VERIFIER_PREFIX}{name}": torch.tensor(float(count)) for name, count in verifier_faults.items()},
        **experience.selection_metrics(group_size),
        **update_metrics,
    }


def frac_truncated(rollout, eos_token_ids: list[int]) -> Tensor:
    """Share of completions cut by max_new_tokens: their last kept token is not an end of sequence (they score as
    written, usually 0, so a high share says the length budget is too small for the format)."""
    ids, mask = rollout.completion_ids, rollout.completion_mask  # [B, T]; mask 1 up to and including the EOS
    if ids.shape[1] == 0:
        return torch.zeros(())
    last = ids.gather(1, (mask.sum(dim=1, keepdim=True) - 1).clamp(min=0))  # [B, 1]
    ended = torch.isin(last, torch.tensor(eos_token_ids, device=ids.device))
    return (~ended).float().mean().cpu()


def mean_over_ranks(metrics: dict[str, Tensor], strategy, world_size: int, device: torch.device) -> dict[str, float]:
    """Each metric averaged over the ranks, in one collective; extremes (*_max, *_min) are the ranks' extremes and
    counts of events (train/verifier_*) summed."""
    keys = list(metrics)
    stacked = torch.stack([torch.as_tensor(metrics[k], dtype=torch.float64).cpu() for k in keys])  # [metrics]
    if world_size > 1:
        ranks = strategy.all_gather(stacked.to(device)).cpu()  # [world_size, metrics]
        is_max, is_min = (torch.tensor([k.endswith(end) for k in keys]) for end in ("_max", "_min"))
        stacked = torch.where(is_max, ranks.amax(0), torch.where(is_min, ranks.amin(0), ranks.mean(0)))
    values = dict(zip(keys, stacked.tolist()))
    for key in keys:
        if key.startswith(VERIFIER_PREFIX):
            values[key] *= world_size
    return values


def sample_rows(experience: Experience, count: int, group_size: int) -> tuple[list[dict], list[str], list[float]]:
    """The step's highest- and lowest-reward rollouts (half each, best first): examples, completions, rewards."""
    rewards = experience.scores.rewards.reshape(-1)  # [b*K]
    order = torch.argsort(rewards, descending=True, stable=True).tolist()
    count = min(count, len(order))
    shown = order[: (count + 1) // 2] + order[len(order) - count // 2 :]
    examples = [experience.examples[i // group_size] for i in shown]
    return examples, [experience.completions[i] for i in shown], [float(rewards[i]) for i in shown]


class NoLearningSignal(ValueError):
    """The run's first steps gave GRPO nothing to learn from."""


@dataclass
class SignalWatch:
    """Steps in a row without a learning signal (every group's K rewards equal, so every advantage is 0).

    Such a step is logged with a warning; a run whose first ``limit_at_start`` steps all lacked one stops with
    advice, since a model that solves none (or all) of its prompts learns nothing from GRPO.
    """

    limit_at_start: int
    steps_without: int = 0
    seen_signal: bool = False

    def update(self, frac_all_equal: float, frac_all_wrong: float, step: int) -> str | None:
        """Count this step; the warning to log when it had no signal (None otherwise)."""
        if frac_all_equal < 1.0:
            self.steps_without, self.seen_signal = 0, True
            return None
        self.steps_without += 1
        if not self.seen_signal and 0 < self.limit_at_start <= self.steps_without:
            raise NoLearningSignal(
                f"Steps 1-{step} had no learning signal: in every group all K rewards were equal ("
                f"{frac_all_wrong:.0%} of the groups all wrong), so GRPO's advantages were 0. The model solves "
                "none of its prompts: try easier data, a supervised warm-start (model.warm_start), a prompt that "
                "states the answer format plainly, a lenient format (e.g. number_fallback: true for math), or a "
                "larger model.grpo.group_size."
            )
        if self.steps_without == 1 or self.steps_without % 10 == 0:
            return (
                f"Step {step} had no learning signal (every group's K rewards equal; {self.steps_without} such "
                "steps in a row): see train/frac_all_equal."
            )
        return None


class StepLogger:
    """Logs each training step: its scalars averaged over ranks in one collective (at step = RL steps done), the
    progress bar, the text samples; and watches for steps without a learning signal."""

    def __init__(self, group_size: int, log_config: LoggingConfig, steps_without_signal_limit: int) -> None:
        self.group_size = group_size
        self.log_config = log_config
        self.signal_watch = SignalWatch(steps_without_signal_limit)

    def log(self, module, experience: Experience, update_metrics: dict[str, Tensor], faults: dict[str, int]) -> None:
        """Log the step the GRPOModule `module` has just taken (its times, counters and learning rate)."""
        trainer, policy, step, times = module.trainer, module.policy, module.global_step, module.last_step_times
        lr = module.optimizers().param_groups[0]["lr"]
        metrics = step_metrics(
            experience,
            update_metrics,
            times,
            policy.prompts.last_truncated,
            module.rollouts_generated,
            lr,
            self.group_size,
            faults,
            policy.engine.eos_token_ids,
        )
        values = mean_over_ranks(metrics, trainer.strategy, trainer.world_size, module.device)
        warning = self.signal_watch.update(values["train/frac_all_equal"], values["train/frac_all_wrong"], step)
        values["train/steps_without_signal"] = float(self.signal_watch.steps_without)
        log_scalars(trainer, values, step)
        if warning and module.global_rank == 0:
            log.warning(warning)
        shown = {"rollout_s": times.rollout_s, "update_s": times.update_s}  # this rank's: no collective for a display
        shown |= {"reward": values["train/reward"], "acc": values["train/accuracy"]}
        module.log_dict(shown, prog_bar=True, logger=False)
        every = self.log_config.text_samples_every_n_steps
        if every and (step % every == 0 or step == 1):
            examples, completions, rewards = sample_rows(experience, self.log_config.num_text_samples, self.group_size)
            prompts = [policy.render(module.task.prompt(e)) for e in examples]
            log_text_samples(trainer, prompts, completions, rewards, step)
