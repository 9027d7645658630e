"""What a step reports: text samples of its best and worst rollouts, and steps without a learning signal."""

import pytest
import torch

from insight_lightning.cli.app import run_from_command_line
from insight_lightning.rollout.engine import RolloutBatch, completion_mask_from_eos
from insight_lightning.rollout.scoring import GroupScores
from insight_lightning.training.step_report import (
    NoLearningSignal,
    SignalWatch,
    frac_truncated,
    mean_over_ranks,
    sample_rows,
)


class _Experience:
    def __init__(self, rewards: list[list[float]]):
        self.scores = GroupScores(torch.tensor(rewards), torch.tensor(rewards) > 0.5)
        self.examples = [{"id": i} for i in range(len(rewards))]
        self.completions = [f"c{i}" for i in range(sum(len(r) for r in rewards))]


def test_text_samples_are_the_steps_highest_and_lowest_reward_rollouts():
    experience = _Experience([[0.0, 0.0, 0.0], [0.0, 1.0, 0.5], [0.25, 0.0, 0.75]])  # 3 groups of K=3
    examples, completions, rewards = sample_rows(experience, 4, group_size=3)
    assert rewards == [1.0, 0.75, 0.0, 0.0] and completions == ["c4", "c8", "c3", "c7"]
    assert [e["id"] for e in examples] == [1, 2, 1, 2]
    _, _, few = sample_rows(experience, 100, group_size=3)  # more asked than rolled out: each once
    assert len(few) == 9 and few == sorted(few, reverse=True)


def test_frac_truncated_counts_completions_without_an_end_of_sequence_token():
    eos = 2
    completions = torch.tensor(
        [
            [5, 6, 2, 0],  # ended early
            [5, 6, 7, 2],  # ended on the last position: not truncated
            [5, 6, 7, 8],  # cut by the length budget
            [3, 2, 0, 0],  # the second end-of-sequence id of the model
        ]
    )
    mask = completion_mask_from_eos(completions, torch.tensor([eos, 3]))
    assert mask.tolist()[3] == [1, 0, 0, 0]
    rollout = RolloutBatch(torch.ones(4, 1, dtype=torch.long), torch.ones(4, 1), completions, mask)
    assert frac_truncated(rollout, [eos, 3]).item() == pytest.approx(0.25)
    # Judged by the engine's end-of-sequence ids: were 3 not one of them, row 3 would count as cut too.
    assert frac_truncated(rollout, [eos]).item() == pytest.approx(0.5)


def test_signal_watch_warns_counts_and_stops_a_run_that_never_had_a_signal():
    watch = SignalWatch(limit_at_start=3)
    assert "Step 1 had no learning signal" in watch.update(1.0, 1.0, step=1)
    assert watch.update(1.0, 1.0, step=2) is None and watch.steps_without == 2
    with pytest.raises(NoLearningSignal, match=r"Steps 1-3 had no learning signal.*100% of the groups all wrong"):
        watch.update(1.0, 1.0, step=3)


def test_signal_watch_only_warns_once_a_step_had_a_signal():
    watch = SignalWatch(limit_at_start=2)
    assert watch.update(0.5, 0.25, step=1) is None and watch.seen_signal
    for step in range(2, 12):
        message = watch.update(1.0, 0.0, step=step)
        assert (message is not None) == (watch.steps_without in (1, 10))
    assert watch.steps_without == 10
    assert watch.update(0.9, 0.0, step=12) is None and watch.steps_without == 0


def test_a_run_without_any_signal_stops_with_advice(tiny_fit_args, capsys):
    args = tiny_fit_args(6, "--data.task=fault_tasks.NoSignal", "--trainer.limit_val_batches=0")
    with pytest.raises(SystemExit) as exit_info:
        run_from_command_line([*args, "--model.grpo.max_steps_without_signal_at_start=2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Step 1 had no learning signal" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: Steps 1-2 had no learning signal") and "model.warm_start" in last


class _TwoRanks:
    """A strategy's all_gather as two ranks would answer it: this rank's values, then the other rank's."""

    def __init__(self, other: dict[str, float]) -> None:
        self.other = other

    def all_gather(self, stacked: torch.Tensor) -> torch.Tensor:
        return torch.stack([stacked, torch.tensor(list(self.other.values()), dtype=stacked.dtype)])


def test_step_metrics_over_ranks_are_means_extremes_are_extremes_and_event_counts_sums():
    mine = {"train/reward": 0.2, "rollout/logprob_abs_diff_max": 0.01, "rollout/is_ratio_min": 0.9}
    mine["train/verifier_timeouts"] = 1.0
    other = {"train/reward": 0.6, "rollout/logprob_abs_diff_max": 0.3, "rollout/is_ratio_min": 0.5}
    other["train/verifier_timeouts"] = 2.0
    values = mean_over_ranks({k: torch.tensor(v) for k, v in mine.items()}, _TwoRanks(other), 2, torch.device("cpu"))
    # a rank whose engine differs from its trainer shows in the maximum, not halved by the other rank
    assert values == pytest.approx(
        {"train/reward": 0.4, "rollout/logprob_abs_diff_max": 0.3, "rollout/is_ratio_min": 0.5}
        | {"train/verifier_timeouts": 3.0}
    )
    one = mean_over_ranks({k: torch.tensor(v) for k, v in mine.items()}, None, 1, torch.device("cpu"))
    assert one == pytest.approx(mine)
