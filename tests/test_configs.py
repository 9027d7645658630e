"""Every YAML under configs/ parses, and every CPU one (the in-process tiny policy) trains a step."""

from pathlib import Path

import pytest
import yaml
from conftest import ROOT, cli_in_process
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from insight_lightning.cli.app import BUILTIN_CONFIGS, main, resolve_config

CONFIGS = sorted(p.relative_to(BUILTIN_CONFIGS) for p in BUILTIN_CONFIGS.rglob("*.yaml"))
SNIPPETS = {Path("strategies/fsdp2.yaml")}  # added after a task config, not used alone
CPU = [
    c
    for c in CONFIGS
    if c not in SNIPPETS and yaml.safe_load((BUILTIN_CONFIGS / c).read_text())["model"]["policy"]["name"] == "tiny"
]


def test_the_configs_folder_is_the_packaged_one_and_holds_the_shipped_configs():
    assert (ROOT / "configs").resolve() == BUILTIN_CONFIGS
    assert {"countdown.yaml", "math.yaml", "blocksworld.yaml", "paper/countdown_qwen3_0.6b.yaml"} <= {
        str(c) for c in CONFIGS
    }
    assert {str(c) for c in CPU} == {"blocksworld.yaml", "countdown.yaml", "math.yaml"}


@pytest.mark.parametrize("config", [str(c) for c in CONFIGS])
def test_every_config_parses(config):
    args = ["--config", "countdown.yaml", "--config", config] if Path(config) in SNIPPETS else ["--config", config]
    result = cli_in_process("fit", *args, "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "class_path: insight_lightning.selection.callback.SelectionCallback" in result.stdout


@pytest.mark.parametrize("config", [str(c) for c in CPU])
def test_every_cpu_config_trains_a_step(config, tmp_path):
    run = main(
        [
            "fit",
            "--config",
            config,
            "--trainer.max_steps=1",
            f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            f"--trainer.callbacks.init_args.dirpath={tmp_path / 'ckpt'}",
            "--trainer.enable_progress_bar=false",
            "--trainer.num_sanity_val_steps=0",
            "--model.validation.at_end=false",
            "--model.warm_start.max_steps=3",
            f"--model.warm_start.cache_dir={tmp_path / 'ws'}",
            "--model.grpo.group_size=2",
            "--data.prompts_per_step=4",
            "--data.task.init_args.train_size=16",
            "--data.task.init_args.test_size=4",
        ]
    )
    assert run.trainer.global_step == 1 and run.model.warm_start_result.steps == 3
    (events,) = tmp_path.rglob("events.out.tfevents.*")
    acc = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
    acc.Reload()
    faults = {f"train/verifier_{name}" for name in run.model.task.verifier_counts()}  # the math task's
    assert {"time/verify_s", "train/skipped_updates", "train/grad_norm"} | faults <= set(acc.Tags()["scalars"])
    assert str(config) != "math.yaml" or "train/verifier_timeouts" in faults


def test_a_built_in_config_resolves_by_name_from_any_folder(tmp_path):
    assert resolve_config("countdown.yaml") == str(BUILTIN_CONFIGS / "countdown.yaml")
    assert resolve_config("configs/countdown.yaml") in (
        "configs/countdown.yaml",
        str(BUILTIN_CONFIGS / "countdown.yaml"),
    )
    assert resolve_config("paper/countdown_qwen3_0.6b") == str(BUILTIN_CONFIGS / "paper/countdown_qwen3_0.6b.yaml")
    (tmp_path / "countdown.yaml").write_text("trainer:\n  max_steps: 7\n")  # a file that exists wins
    result = cli_in_process("fit", "--config", "countdown.yaml", "--print_config", cwd=tmp_path)
    assert result.returncode == 0 and "max_steps: 7" in result.stdout
    result = cli_in_process("fit", "--config", "countdown.yaml", "--print_config", cwd=tmp_path / "..")
    assert (
        result.returncode == 0
        and "max_steps: 60" in result.stdout
        and "class_path: tasks.CountdownTask" in result.stdout
    )
    result = cli_in_process("fit", "--config", "nope.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: Config file 'nope.yaml' does not exist, and it is not a built-in config (" in result.stderr


@pytest.mark.parametrize("config", ["paper/countdown_qwen3_0.6b.yaml", "paper/math_deepscaler_qwen3_0.6b.yaml"])
def test_the_commented_vllm_variant_of_each_paper_config_parses_uncommented(config, tmp_path):
    lines = (BUILTIN_CONFIGS / config).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# engine: vllm")
    variant = [line.replace("# ", "", 1) if start <= i < start + 4 else line for i, line in enumerate(lines)]
    (tmp_path / "vllm.yaml").write_text("\n".join(variant) + "\n")
    result = cli_in_process("fit", "--config", str(tmp_path / "vllm.yaml"), "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    printed = yaml.safe_load(result.stdout)["model"]["rollout"]
    assert printed["engine"] == "vllm" and printed["vllm"]["sleep_mode"] is True
    assert printed["vllm"]["gpu_memory_utilization"] == 0.3
