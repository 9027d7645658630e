"""Running a race: the shared warm-start, then the runs the ledger lacks in parallel processes, within a budget."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from insight_lightning.race.cpu_signature import cpu_signature, describe
from insight_lightning.race.ledger import (
    Ledger,
    claim_folder,
    commit,
    estimated_seconds,
    identity,
    unit_of,
    units_begun_elsewhere,
)
from insight_lightning.race.plan import (
    ROOT,
    RaceSettings,
    RunSpec,
    all_runs,
    common_args,
    pairs_evaluations,
    run_args,
    warm_start_args,
)
from insight_lightning.race.pool_probe import read_probes
from insight_lightning.race.pools import BUILT_POOLS, GRADED
from insight_lightning.training.warmstart import state_digest

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


def prepare_pools(settings: RaceSettings, out: Path, start: Path | None, threads: int) -> Path | None:
    """Build the difficulty-mix pools from a probe of the starting weights once (kept in out/pools for the race's
    later pieces); None when the race has no such regime."""
    regimes = [r for r in settings.regimes if r in BUILT_POOLS]
    if not regimes:
        return None
    folder = out / "pools"
    files = ["test.jsonl", *(f"{regime}.{suffix}" for regime in regimes for suffix in ("json", "jsonl"))]
    files += [f"{GRADED}_test.jsonl"] if GRADED in regimes else []
    if all((folder / name).is_file() for name in files):
        return folder
    print(f"[race] probing candidates from the starting weights for the pools of {', '.join(regimes)}")
    start_args = [f"--model.warm_start.init_from={start}"] if start else ["--model.warm_start=null"]
    fit = [
        *common_args(settings),
        *start_args,
        f"--data.task.init_args.train_size={settings.pool_size('main')}",  # the ordinary test split is main's
        "--trainer.logger=false",
    ]
    size = settings.pool_size(regimes[0])
    command = [sys.executable, "-m", "insight_lightning.race.pool_builder", "--out", str(folder), "--size", str(size)]
    result = subprocess.run(
        [*command, "--regimes", *regimes, "--", *fit], env=run_env(threads), capture_output=True, text=True
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [""])[-1]
        why = last.removeprefix("error: ") if last.startswith("error: ") else "\n" + result.stderr[-3000:]
        raise RuntimeError(f"building the pools failed: {why}")
    print(result.stdout.strip())
    return folder


def read_run(log_dir: Path) -> dict:
    """What the ledger keeps of one run's TensorBoard events: every evaluation and the per-step selection shares."""
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()

    def series(tag: str) -> list[list[float]]:
        return [[e.step, e.value] for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []

    rollouts = series("train/rollouts_total")
    probes = read_probes(log_dir)  # the graded regime's: the pool probed by the trained policy
    return {
        "accuracy": series("val/accuracy"),
        "zero_variance_share": series("selection/frac_zero_variance"),
        "unseen_share": series("selection/frac_unseen"),
        "max_visit_rate": series("selection/max_visit_rate"),
        "rollouts": int(rollouts[-1][1]) if rollouts else 0,
        **({"probe_end": probes[-1]} if probes else {}),
    }


def pool_record(log_dir: Path) -> dict:
    """The pool a run trained on, as its saved config states it: size, and the task with the arguments that drew it
    (a generated pool depends on the task's own seed, not on the run's); a pool file adds its SHA-256 and, for a
    difficulty mix, how it was made (the record beside it)."""
    task = yaml.safe_load((log_dir / "config.yaml").read_text())["data"]["task"]
    args = dict(task["init_args"])
    record = {"size": args["train_size"], "task": task["class_path"], "task_args": args}
    pool = Path(args["train_file"]) if args.get("train_file") else None
    if pool is not None and pool.is_file():  # a dataset name is recorded as it is
        record["sha256"] = hashlib.sha256(pool.read_bytes()).hexdigest()
        made = pool.with_suffix(".json")
        if made.is_file():
            record["made"] = json.loads(made.read_text())
        for key in ("train_file", "test_file"):  # named within the work folder: its place differs by machine
            args[key] = args[key] and Path(args[key]).name
    return record


def start_digest(start: Path | None) -> str | None:
    """SHA-256 (first 16 hex digits) of the warm-started weights every run loads; None for a real model's own."""
    if start is None:
        return None
    return state_digest(torch.load(start, map_location="cpu", weights_only=True)["state_dict"])[:16]


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


@dataclass(frozen=True)
class RaceContext:
    """What every run of one invocation shares."""

    settings: RaceSettings
    ledger: Ledger
    work: Path
    start: Path | None
    start_digest: str | None
    pools: Path | None
    threads: int
    progress: Progress


def execute(race: RaceContext, run: RunSpec) -> None:
    """Train one run and write its ledger file."""
    log_root = race.work / "runs"
    # An interrupted attempt may have left events in this run's log folder; the rerun must not read them back.
    shutil.rmtree(log_root / run.name, ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.Popen(
        cli_command(run_args(race.settings, run, race.start, log_root, race.pools)),
        env=run_env(race.threads),
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
            race.progress.say(
                f"{run.name}: step {match.group(1)}/{race.settings.steps}, val/accuracy {float(match.group(2)):.3f}"
            )
    if proc.wait() != 0:
        raise RuntimeError(f"run {run.name} failed:\n{''.join(tail)}")
    wall_s = time.perf_counter() - started
    race.ledger.write(
        {
            "run": run.name,
            "regime": run.regime,
            "sampler": run.sampler,
            "seed": run.seed,
            "fingerprint": race.settings.fingerprint(),
            "pool": pool_record(log_root / run.name / "version_0"),
            **read_run(log_root / run.name / "version_0"),
            "wall_s": wall_s,
            "threads": race.threads,
            "machine": cpu_signature(),  # runs pair only within one signature and warm-start
            "start": race.start_digest,
            "commit": commit(),
        }
    )
    race.progress.finished(f"{run.name} done in {wall_s:.0f} s")


def check_pools(records: list[dict], here: tuple[str, str | None], pools: Path | None) -> None:
    """Refuse to add runs on a pool other than the one this machine's runs of the same regime trained on (a pool is
    rebuilt only if the work folder was lost; the probe is seeded, but its floating point may differ with the
    number of threads)."""
    for record in records:
        if "sha256" not in record["pool"] or identity(record) != here:
            continue
        regime = record["regime"]
        path = None if pools is None else pools / f"{regime}.jsonl"
        if (
            path is not None
            and path.is_file()
            and hashlib.sha256(path.read_bytes()).hexdigest() != record["pool"]["sha256"]
        ):
            raise ValueError(
                f"the {regime} pool in {path} differs from the one the ledger's runs on this machine trained on "
                f"(SHA-256 {record['pool']['sha256'][:12]}); restore that pool or race under another --name"
            )


def run_race(settings: RaceSettings, ledger: Ledger, work: Path, jobs: int, budget_s: float | None = None) -> str:
    """Run what the ledger lacks, unit by unit, starting no run that cannot finish within the budget (seconds from
    the call); returns one line on what remains."""
    began = time.monotonic()
    ledger.claim(settings)
    claim_folder(work, settings, "use another --out folder")  # its warm-start was made for those settings
    if not pairs_evaluations(settings):
        print("[race] a vLLM engine samples with its own generator: evaluations are not paired across samplers")
    cores = os.cpu_count() or 1
    start = prepare_start(settings, work, cores)
    pools = prepare_pools(settings, work, start, cores)
    signature = describe(cpu_signature())
    here = (signature, start_digest(start))
    runs = all_runs(settings)
    check_pools(ledger.records(), here, pools)
    elsewhere = units_begun_elsewhere(ledger.records(), here)
    missing = [r for r in runs if not ledger.has(r)]
    for (regime, seed), other in sorted(elsewhere.items()):
        if any(unit_of(r) == (regime, seed) for r in missing):
            print(f"[race] {regime} seed {seed} was begun on {other}; it is finished there, not here (no pairs)")
    queue = [r for r in missing if unit_of(r) not in elsewhere]
    race = RaceContext(settings, ledger, work, start, here[1], pools, max(1, cores // jobs), Progress(len(runs)))
    race.progress.done = len(runs) - len(missing)
    if race.progress.done:
        race.progress.say(f"resuming: {race.progress.done} runs already in {ledger.runs_dir}")
    deadline = None if budget_s is None else began + budget_s
    out_of_time = False
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        running: dict = {}
        while queue or running:
            while queue and len(running) < jobs and not out_of_time:
                if deadline is not None:
                    estimate = estimated_seconds(queue[0], ledger.records(), signature)
                    if estimate is None and running:
                        break  # nothing measured yet: one run measures before others start blind
                    if estimate is not None and time.monotonic() + estimate > deadline:
                        out_of_time = True
                        break
                run = queue.pop(0)
                running[pool.submit(execute, race, run)] = run
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                del running[future]
                future.result()
    remaining = len([r for r in runs if not ledger.has(r)])
    if not remaining:
        return f"[race] all {len(runs)} runs are in {ledger.runs_dir}"
    reason = "the budget is spent" if out_of_time else "the rest wait for the machines that began their units"
    return f"[race] {remaining} of {len(runs)} runs remain ({reason}); run the same command again to continue"
