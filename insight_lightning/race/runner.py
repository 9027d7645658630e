"""Running a race: the shared warm-start, then every run in parallel processes, resumable, with progress."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from insight_lightning.cpu_signature import cpu_signature
from insight_lightning.race.plan import (
    ROOT,
    RaceSettings,
    RunSpec,
    all_runs,
    pairs_evaluations,
    run_args,
    warm_start_args,
)

VALIDATION_LINE = re.compile(r"Validation at step (\d+): val/accuracy ([0-9.]+)")


def cli_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "insight_lightning", *args]


def run_env(threads: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = str(threads)
    env["OMP_WAIT_POLICY"] = "PASSIVE"  # parallel runs share the cores; spinning threads would stall each other
    return env


def prepare_start(settings: RaceSettings, out: Path, threads: int) -> Path | None:
    """Warm-start the tiny policy once (or find it from an earlier, interrupted race); None for a real model."""
    if settings.model != "tiny":
        return None
    cache_dir = out / "warmstart"
    found = sorted(cache_dir.glob("*.pt"))
    if not found:
        print(f"[race] warm-starting the shared starting point ({settings.warm_start_steps} supervised steps)")
        result = subprocess.run(
            cli_command(warm_start_args(settings, cache_dir)), env=run_env(threads), capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"warm-start failed:\n{result.stderr[-3000:]}")
        found = sorted(cache_dir.glob("*.pt"))
    if len(found) != 1:
        raise RuntimeError(f"expected one warm-start file in {cache_dir}, found {len(found)}")
    return found[0]


def read_run(log_dir: Path) -> dict:
    """The scalars a race needs from one run's TensorBoard events."""
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()

    def series(tag: str) -> list[tuple[int, float]]:
        return [(e.step, e.value) for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []

    def mean(tag: str) -> float:
        values = [v for _, v in series(tag)]
        return sum(values) / len(values) if values else float("nan")

    rollouts = series("train/rollouts_total")
    return {
        "accuracy": series("val/accuracy"),
        "rollouts": rollouts[-1][1] if rollouts else 0.0,
        "frac_zero_variance": mean("selection/frac_zero_variance"),
        "frac_unseen": mean("selection/frac_unseen"),
    }


class Progress:
    """One line per event, from several worker threads."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.lock = total, 0, threading.Lock()

    def say(self, text: str) -> None:
        with self.lock:
            print(f"[race {self.done}/{self.total}] {text}", flush=True)

    def finished(self, text: str) -> None:
        with self.lock:
            self.done += 1
        self.say(text)


def execute(settings: RaceSettings, run: RunSpec, start: Path | None, out: Path, threads: int, progress: Progress):
    """Train one run (unless its result exists) and store its result atomically."""
    result_file = out / "results" / f"{run.name}.json"
    if result_file.is_file():
        return
    log_root = out / "runs"
    # An interrupted attempt may have left events in this run's log folder; the rerun must not read them back.
    shutil.rmtree(log_root / run.name, ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.Popen(
        cli_command(run_args(settings, run, start, log_root)),
        env=run_env(threads),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line])[-40:]
        match = VALIDATION_LINE.search(line)
        if match:
            progress.say(
                f"{run.name}: step {match.group(1)}/{settings.steps}, val/accuracy {float(match.group(2)):.3f}"
            )
    if proc.wait() != 0:
        raise RuntimeError(f"run {run.name} failed:\n{''.join(tail)}")
    record = {
        "run": run.name,
        "regime": run.regime,
        "sampler": run.sampler,
        "seed": run.seed,
        "machine": cpu_signature(),  # runs pair only within one signature
        "wall_s": time.perf_counter() - started,
        **read_run(log_root / run.name / "version_0"),
    }
    result_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = result_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, result_file)
    progress.finished(f"{run.name} done in {record['wall_s']:.0f} s")


def run_race(settings: RaceSettings, out: Path, jobs: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "settings.json"
    if saved.is_file() and json.loads(saved.read_text())["fingerprint"] != settings.fingerprint():
        raise ValueError(f"{out} holds a race with other settings; use another --out folder")
    saved.write_text(json.dumps({"fingerprint": settings.fingerprint(), "settings": settings.__dict__}, default=list))
    if not pairs_evaluations(settings):
        print("[race] a vLLM engine samples with its own generator: evaluations are not paired across samplers")
    cores = os.cpu_count() or 1
    threads = max(1, cores // jobs)
    start = prepare_start(settings, out, max(1, cores))
    runs = all_runs(settings)
    pending = [r for r in runs if not (out / "results" / f"{r.name}.json").is_file()]
    progress = Progress(len(runs))
    progress.done = len(runs) - len(pending)
    if progress.done:
        progress.say(f"resuming: {progress.done} runs already finished")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(execute, settings, r, start, out, threads, progress) for r in pending]:
            future.result()
