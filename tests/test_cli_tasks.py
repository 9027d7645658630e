"""The math and Blocksworld configs through the real CLI: they parse, and a 2-step fit runs end to end."""

import pytest
from conftest import ROOT
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from insight_lightning.cli.app import main


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("configs/math.yaml", ["class_path: tasks.MathTask", "template: compact", "prompts_per_step: 128"]),
        ("configs/blocksworld.yaml", ["class_path: tasks.BlocksworldTask", "max_blocks: 4"]),
        (
            "configs/paper/math_deepscaler_qwen3_0.6b.yaml",
            ["name: Qwen/Qwen3-0.6B", "aime24: data/math/aime24.jsonl", "max_new_tokens: 8192", "lr: 1.0e-06"],
        ),
    ],
)
def test_configs_parse(config, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(ROOT / config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    for line in expected:
        assert line in printed, line


@pytest.mark.parametrize(
    ("config", "name"), [("configs/math.yaml", "math"), ("configs/blocksworld.yaml", "blocksworld")]
)
def test_two_step_fit(config, name, tmp_path, warmstart_cache):
    if name == "math":
        pytest.importorskip("math_verify")
    args = [
        "fit",
        "--config",
        str(ROOT / config),
        "--trainer.max_steps=2",
        "--trainer.val_check_interval=2",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
        "--trainer.enable_progress_bar=false",
        f"--trainer.callbacks.init_args.dirpath={tmp_path / 'ckpt'}",
        "--model.warm_start.max_steps=5",
        "--model.warm_start.num_examples=64",
        "--model.warm_start.batch_size=16",
        f"--model.warm_start.cache_dir={warmstart_cache}",
        "--model.rollout.max_new_tokens=16",
        "--model.grpo.group_size=4",
        "--model.validation.samples_per_problem=2",
        "--data.task.init_args.train_size=32",
        "--data.task.init_args.test_size=8",
        "--data.prompts_per_step=4",
        "--data.val_batch_size=8",
    ]
    cli = main(args)
    assert cli.trainer.global_step == 2
    (run,) = list((tmp_path / "runs" / name).glob("version_*"))
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("val/accuracy")] == [0, 2]
    assert len(events.Scalars("train/reward")) == 2
