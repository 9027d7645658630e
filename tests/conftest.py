import contextlib
import importlib.util
import io
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # selection_probe, for in-process CLI runs


@pytest.fixture(scope="session")
def warmstart_cache(tmp_path_factory) -> Path:
    """One warm-start cache for the whole session, so each fit trains the tiny model only once per shape.

    INSIGHT_LIGHTNING_TEST_WARMSTART_CACHE names a folder to use instead: CI's vLLM stage reads the one its main suite
    trained (the cache key holds torch's version, the starting weights, the settings and the data, all the same in
    both environments), instead of spending a minute training it again.
    """
    return session_folder(tmp_path_factory, "warmstart_cache")


@pytest.fixture(scope="session")
def gguf_cache(tmp_path_factory) -> Path:
    """One cache of dequantised GGUF copies for the session: SmolLM2's GGUF is parsed once (~40 s), then read back.

    INSIGHT_LIGHTNING_TEST_GGUF_CACHE names a folder to use instead: CI's vLLM stage, whose copy was made while the
    main suite ran (not for a session that runs tests/test_real_model.py, which compares a fresh parse with its copy).
    """
    return session_folder(tmp_path_factory, "gguf_cache")


def session_folder(tmp_path_factory, name: str) -> Path:
    """The folder INSIGHT_LIGHTNING_TEST_<NAME> names (one a CI stage shares with the next), else a fresh one."""
    named = os.environ.get(f"INSIGHT_LIGHTNING_TEST_{name.upper()}")
    return Path(named) if named else tmp_path_factory.mktemp(name)


# The warm-start of every tiny fit: the one tests/test_first_validation.py needs (a policy that scores), so the
# session's cache trains one warm-start for both (one of its own would cost ~35 s more per run of the suite). Batches
# of 32 for 500 steps train one that scores, sampled and greedy, in ~50 s instead of 400 steps of 64's ~80 s.
TINY_WARM_START = (
    "--model.warm_start.max_steps", "500", "--model.warm_start.batch_size", "32",
    "--model.warm_start.num_examples", "2000",
)  # fmt: skip


def fit_args_in(root: Path, cache: Path):
    """CLI overrides of configs/countdown.yaml for a fit of a few seconds in `root`: small pool, M=8, K=4."""

    def make(steps: int = 3, *extra: str) -> list[str]:
        return [
            "fit",
            "--config",
            str(ROOT / "configs" / "countdown.yaml"),
            "--trainer.max_steps",
            str(steps),
            "--trainer.default_root_dir",
            str(root),
            "--trainer.logger.init_args.save_dir",
            str(root / "runs"),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.val_check_interval",
            "2",
            "--trainer.callbacks.init_args.every_n_train_steps",
            "2",
            "--trainer.callbacks.init_args.dirpath",
            str(root / "ckpt"),
            *TINY_WARM_START,
            "--model.warm_start.cache_dir",
            str(cache),
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


@pytest.fixture
def tiny_fit_args(tmp_path, warmstart_cache):
    """fit_args_in the test's tmp_path, with the session's warm-start cache."""
    return fit_args_in(tmp_path, warmstart_cache)


def load_script(path: Path):
    """A repository script (benchmarks/, examples/) imported as a module, by its file path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
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

    return in_process(run_from_command_line, ["python", "-m", "insight_lightning"], list(args), cwd)


def in_process(
    entry: Callable[[list[str]], object], prog: list[str], argv: list[str], cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    """`entry(argv)`, a command's main function, run here as `prog argv` would run: its output, and its exit code
    (a SystemExit's message goes to stderr, as the interpreter writes it)."""
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
            entry(argv)
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        if isinstance(exit.code, str):
            err.write(exit.code + "\n")
    finally:
        logging.getLogger().removeHandler(propagated)
        for handler, stream in zip(handlers, streams):
            handler.setStream(stream)
    return subprocess.CompletedProcess([*prog, *argv], code, out.getvalue(), err.getvalue())


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now: the fixed MASTER_PORT every node is given."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def srun_env(node: int, nodes: int, job_id: int = 4243) -> dict:
    """What `srun` sets for the one task of node `node` of a job with --nodes=`nodes` --ntasks-per-node=1."""
    return {
        "SLURM_JOB_ID": str(job_id),
        "SLURM_JOB_NAME": "multinode-test",
        "SLURM_NTASKS": str(nodes),
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NNODES": str(nodes),
        "SLURM_NODELIST": "127.0.0.1",
        "SLURM_PROCID": str(node),
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": str(node),
    }


# What a launcher sets for its processes: an outer launch (a test run under torchrun or SLURM) must not leak into ours.
LAUNCH_VARIABLES = ("SLURM_", "TORCHELASTIC_", "MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_", "GROUP_")


def launch_nodes(
    *args: str, launcher: str, out_dir: Path, nodes: int = 2, timeout: float = 600
) -> list[subprocess.CompletedProcess]:
    """`python -m insight_lightning ARGS` on `nodes` nodes of one process each, all on 127.0.0.1, started as a cluster
    starts them: `torchrun --nnodes N --node_rank I` (static rendezvous), or one process per node with the variables
    srun sets (Lightning's SLURMEnvironment). Each node's output goes to out_dir/node{I}.out and .err.

    Once one node has exited, the others get a minute: a node left waiting in a collective for a dead peer would wait
    for gloo's 30-minute timeout. A node still running then is stopped the way a scheduler stops it: SIGTERM (torchrun
    passes it on to its worker and kills the worker after --shutdown-timeout), then SIGKILL. torchrun passes SIGUSR1
    on as well, as the README's command asks it to."""
    port, procs = free_port(), []
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as files:
        try:
            for node in range(nodes):
                env = {k: v for k, v in subprocess_env().items() if not k.startswith(LAUNCH_VARIABLES)}
                if launcher == "torchrun":
                    command = [
                        *("-m", "torch.distributed.run", "--nnodes", str(nodes), "--nproc_per_node", "1"),
                        *("--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", str(port)),
                        *("--signals-to-handle", "SIGTERM,SIGINT,SIGUSR1", "--shutdown-timeout", "30"),
                        *("-m", "insight_lightning"),
                    ]
                else:  # the main address comes from SLURM_NODELIST, as on a cluster; the port is fixed here
                    env.update(srun_env(node, nodes), MASTER_PORT=str(port))
                    command = ["-m", "insight_lightning"]
                out, err = (files.enter_context(open(out_dir / f"node{node}.{kind}", "w+")) for kind in ("out", "err"))
                proc = subprocess.Popen([sys.executable, *command, *args], cwd=ROOT, env=env, stdout=out, stderr=err)
                procs.append((proc, out, err))
            deadline = time.monotonic() + timeout
            while any(p.poll() is None for p, _, _ in procs) and time.monotonic() < deadline:
                if any(p.poll() is not None for p, _, _ in procs):
                    deadline = min(deadline, time.monotonic() + 60)
                time.sleep(0.2)
        finally:
            for proc, _, _ in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc, _, _ in procs:
                try:
                    proc.wait(timeout=45)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        results = []
        for proc, out, err in procs:
            out.seek(0), err.seek(0)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read()))
    return results


class ScriptedArithmetic:
    """A policy that answers "Compute a+b." / "Compute a*b." problems (plain or chat prompts) right in
    `right(problem, n)` of its n samples and wrong ("\\boxed{-1}") in the rest: a probe whose outcome is known."""

    pad_token_id = 0

    def __init__(self, right: Callable[[str, int], int]):
        self.right = right

    def sample(self, prompts, n, params):
        completions = []
        for prompt in prompts:
            text = prompt if isinstance(prompt, str) else prompt[-1]["content"]  # a chat's last turn is the problem
            problem = re.search(r"Compute (\d+)([+*])(\d+)\.", text)
            left, op, operand = problem.groups()
            value = int(left) + int(operand) if op == "+" else int(left) * int(operand)
            correct = self.right(problem.group(0), n)
            completions += [f"\\boxed{{{value}}}"] * correct + ["\\boxed{-1}"] * (n - correct)
        return None, completions
