import contextlib
import importlib.util
import io
import logging
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


@pytest.fixture(scope="session")
def gguf_cache(tmp_path_factory) -> Path:
    """One cache of dequantised GGUF copies for the session: SmolLM2's GGUF is parsed once (~40 s), then read back."""
    return tmp_path_factory.mktemp("gguf_cache")


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


def load_script(path: Path):
    """A repository script (benchmarks/, examples/) imported as a module, by its file path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def cli_in_process(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The same command through the same entry point, in this process: for the parse, print and error paths, where a
    subprocess would spend ~10 s importing Lightning for a second of work. Runs that DDP relaunches, that need a
    fresh interpreter or environment variables read at import time use cli()."""
    from insight_lightning.cli.app import run_from_command_line

    out, err = io.StringIO(), io.StringIO()
    # Handlers made at import time (Lightning's, e.g. "Seed set to 0") hold the streams of that moment: send them here.
    handlers = [
        h
        for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
        for h in getattr(logger, "handlers", [])
        if type(h) is logging.StreamHandler and h.stream in (sys.stdout, sys.stderr)
    ]
    streams = [h.stream for h in handlers]
    propagated = logging.StreamHandler(err)  # records that reach the root (under pytest Lightning adds no handler)
    logging.getLogger().addHandler(propagated)
    code = 0
    try:
        for handler, stream in zip(handlers, streams):
            handler.setStream(out if stream is sys.stdout else err)
        with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run_from_command_line(list(args))
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    finally:
        logging.getLogger().removeHandler(propagated)
        for handler, stream in zip(handlers, streams):
            handler.setStream(stream)
    return subprocess.CompletedProcess(
        ["python", "-m", "insight_lightning", *args], code, out.getvalue(), err.getvalue()
    )
