import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # selection_probe, for in-process CLI runs


@pytest.fixture(scope="session")
def warmstart_cache(tmp_path_factory) -> Path:
    """One warm-start cache for the whole session, so each fit trains the tiny model only once per shape."""
    return tmp_path_factory.mktemp("warmstart_cache")


@pytest.fixture
def tiny_fit_args(tmp_path, warmstart_cache):
    """CLI overrides of configs/countdown.yaml for a fit of a few seconds: small pool, M=8, K=4."""

    def make(steps: int = 3, *extra: str) -> list[str]:
        return [
            "fit",
            "--config",
            str(ROOT / "configs" / "countdown.yaml"),
            "--trainer.max_steps",
            str(steps),
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path / "runs"),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.val_check_interval",
            "2",
            "--trainer.callbacks.init_args.every_n_train_steps",
            "2",
            "--trainer.callbacks.init_args.dirpath",
            str(tmp_path / "ckpt"),
            "--model.warm_start.max_steps",
            "150",
            "--model.warm_start.num_examples",
            "2000",
            "--model.warm_start.cache_dir",
            str(warmstart_cache),
            "--model.rollout.max_new_tokens",
            "24",
            "--model.grpo.group_size",
            "4",
            "--model.logging.text_samples_every_n_steps",
            "1",
            "--data.task.init_args.train_size",
            "64",
            "--data.task.init_args.test_size",
            "12",
            "--data.prompts_per_step",
            "8",
            "--data.val_batch_size",
            "8",
            *extra,
        ]

    return make


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def cli(
    *args: str, env_extra: dict | None = None, timeout: float = 600, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    """`python -m insight_lightning ARGS` in a subprocess, as a user runs it (DDP and FSDP relaunch its argv)."""
    env = subprocess_env()
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "insight_lightning", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
