"""The console progress bar of `fit`: RL step N of max_steps over the whole run, the last step's figures beside it."""

import re

from lightning.pytorch.callbacks import TQDMProgressBar

from insight_lightning.cli.app import main
from insight_lightning.cli.step_progress import StepProgressBar

# 16 prompts and M = 8: every pass over the pool is 2 steps, so a 4-step run crosses an epoch boundary. No warm start:
# the bar counts steps whatever the policy answers, and this pool's warm start would train a model of its own (~30 s).
SMALL_POOL = ["--data.task.init_args.train_size=16", "--trainer.enable_progress_bar=true", "--model.warm_start=null"]


def bar_states(output: str) -> list[tuple[int, int]]:
    """Every (step, max_steps) the RL-step bar printed, in order."""
    return [(int(n), int(total)) for n, total in re.findall(r"RL step:.*?\| *(\d+)/(\d+) \[", output)]


def test_the_bar_counts_rl_steps_of_max_steps_across_passes_over_the_pool(tiny_fit_args, capsys):
    main(tiny_fit_args(4, *SMALL_POOL))
    output = capsys.readouterr().out.replace("\r", "\n")
    states = bar_states(output)
    assert states[0] == (0, 4) and states[-1] == (4, 4)
    assert {n for n, _ in states} == {0, 1, 2, 3, 4} and all(total == 4 for _, total in states)
    assert [n for n, _ in states] == sorted(n for n, _ in states)  # never restarts at an epoch boundary
    last = [line for line in output.splitlines() if "RL step" in line and "4/4" in line][-1]
    assert all(f"{name}=" in last for name in ("rollout_s", "update_s", "reward", "acc")), last
    assert "Epoch" not in output and "v_num" not in output
    assert "Validation DataLoader 0" in output  # validation keeps its own bar


def test_a_resumed_run_starts_its_bar_at_the_restored_step(tiny_fit_args, tmp_path, capsys):
    main(tiny_fit_args(2, *SMALL_POOL))
    capsys.readouterr()
    main(tiny_fit_args(4, *SMALL_POOL, "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")))
    states = bar_states(capsys.readouterr().out.replace("\r", "\n"))
    assert states[0] == (2, 4) and states[-1] == (4, 4) and min(n for n, _ in states) == 2


def test_the_step_bar_is_added_unless_the_config_turns_bars_off_or_names_its_own(tiny_fit_args):
    args = tiny_fit_args(2)[1:]  # without the subcommand: instantiate only
    assert isinstance(main([*args, "--trainer.enable_progress_bar=true"], run=False).trainer.progress_bar_callback,
                      StepProgressBar)  # fmt: skip
    assert main(args, run=False).trainer.progress_bar_callback is None  # tiny_fit_args turns bars off
    own = ["--trainer.enable_progress_bar=true", "--trainer.callbacks+=TQDMProgressBar"]
    bar = main([*args, *own], run=False).trainer.progress_bar_callback
    assert type(bar) is TQDMProgressBar
