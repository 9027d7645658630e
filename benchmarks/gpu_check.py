"""The check to run on one CUDA GPU (no network, no model weights; under 8 minutes on an H100), as one table.

    python benchmarks/gpu_check.py --out gpu_check.json     # on the GPU machine
    python benchmarks/gpu_check.py --smoke-on-cpu           # the same stages at toy size on CPU (tests run this)

1. the tests that need CUDA (`pytest -m cuda`; they skip on a machine without one);
2. GRPO steps through the CLI on a Qwen2-0.5B-shaped policy with random weights (bf16, LoRA r=32; benchmarks/
   rollout.py's configuration), with the dynamic and the static (compiled) KV cache: rollout and update seconds,
   rollout tokens per second, peak GPU memory;
3. the selection cost on CUDA (benchmarks/sampler_overhead.py): InSight's scoring + top-256 over 1M prompts, and each
   of insight, mopps and uniform's select + belief update per step.

Without CUDA (and without --smoke-on-cpu) it says so in one line and exits with 0.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def cuda_test_files() -> list[str]:
    """The test files that mark a test as needing CUDA: pytest collects only these."""
    return [str(f.relative_to(ROOT)) for f in sorted((ROOT / "tests").glob("test_*.py")) if MARK in f.read_text()]


MARK = "pytest.mark." + "cuda"  # spelled in two pieces so that this file's own text never matches


def cuda_tests(timeout: float = 240) -> dict:
    """`pytest -m cuda` on those files, its summary counts; a run past `timeout` counts as failed."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "-rs", *cuda_test_files()]
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        print(f"pytest -m cuda ran past {timeout:.0f} s and was stopped:", expired.stdout, sep="\n")
        return {"check": "pytest -m cuda", "timed_out": 1, "exit_code": None, "s": time.perf_counter() - started}
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", result.stdout)}
    if result.returncode not in (0, 5) or counts.get("failed") or counts.get("error") or counts.get("errors"):
        print(result.stdout[-6000:], result.stderr[-3000:], sep="\n")
    return {"check": "pytest -m cuda", **counts, "exit_code": result.returncode, "s": time.perf_counter() - started}


def grpo_steps(smoke: bool, steps: int) -> list[dict]:
    """Real GRPO steps through the CLI (benchmarks/rollout.py's run), the step after the first averaged."""
    from rollout import QWEN2_05B, run

    if smoke:
        configs = [("tiny, CPU, dynamic cache", ["--trainer.accelerator=cpu", "--data.prompts_per_step=4"])]
    else:
        gpu = ["--trainer.accelerator=gpu", "--data.prompts_per_step=64", "--model.rollout.max_new_tokens=256"]
        gpu += ["--model.grpo.micro_batch_size=64", *QWEN2_05B]
        configs = [
            (f"Qwen2-0.5B shape, {cache} cache", [*gpu, f"--model.rollout.cache={cache}"])
            for cache in ("dynamic", "static")
        ]
    rows = []
    for name, extra in configs:
        gc.collect()  # what the previous configuration left in reference cycles must not count in this one's peak
        if not smoke:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        row = run(name, steps, extra)
        row["peak_gib"] = None if smoke else torch.cuda.max_memory_allocated() / 2**30
        rows.append(row)
    return rows


def selection_cost(smoke: bool, device: str) -> list[dict]:
    """InSight's full-pool scoring and each sampler's per-step selection + update (medians after a warm-up)."""
    from sampler_overhead import full_pool, per_step

    pool, step_pool, repeats = (20_000, 2_000, 2) if smoke else (1_000_000, 40_000, 5)
    rows = [{"check": f"InSight scoring + top-256 over {pool:,} prompts", "s": full_pool(pool, 256, device, repeats)}]
    for name in ("insight", "mopps", "uniform"):
        seconds = per_step(name, step_pool, 256, 4096, device, repeats)
        rows.append({"check": f"{name}: select + update, pool {step_pool:,}, M=256, Mhat=4096", "s": seconds})
    return rows


def machine(device: str) -> str:
    """The GPU (or, for the smoke run, the CPU as results files name it), torch and CUDA versions."""
    from insight_lightning.race.cpu_signature import cpu_signature, describe

    host = describe(cpu_signature())
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        memory = props.total_memory / 2**30
        return f"{props.name} ({memory:.0f} GiB), host {host}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"{host}, torch {torch.__version__} (smoke run on CPU, no GPU)"


def report(device: str, tests: dict, steps: list[dict], selection: list[dict]) -> str:
    rows = []
    kinds = ("passed", "failed", "skipped", "error", "errors", "timed_out")
    counts = ", ".join(f"{tests[k]} {k.replace('_', ' ')}" for k in kinds if k in tests)
    rows.append(("tests that need CUDA (pytest -m cuda)", counts or "none collected"))
    for r in steps:
        memory = f", peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else ""
        shape = f"{r['sequences']:.0f} sequences, {r['tokens']:.0f} tokens"
        rollout = f"rollout {r['rollout_s']:.2f} s ({r['tok_per_s'] / 1000:.1f}k tok/s)"
        rows.append((f"GRPO step, {r['name']} ({shape})", f"{rollout}, update {r['update_s']:.2f} s{memory}"))
        rows.append(("  its first step's rollout (a static cache compiles there)", f"{r['first_rollout_s']:.1f} s"))
    rows += [(r["check"], f"{r['s'] * 1000:.2f} ms") for r in selection]
    width = max(len(check) for check, _ in rows)
    lines = [f"GPU check on {machine(device)}", "", f"{'check':{width}s}  result"]
    return "\n".join(lines + [f"{check:{width}s}  {result}" for check, result in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-on-cpu", action="store_true", help="every stage at toy size on CPU")
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps per configuration (the first reported apart)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.smoke_on_cpu:
        print("No CUDA device: the GPU check needs one and ran nothing (--smoke-on-cpu runs its stages on CPU).")
        return
    device = "cuda" if torch.cuda.is_available() and not args.smoke_on_cpu else "cpu"
    started = time.perf_counter()
    tests = cuda_tests()
    steps = grpo_steps(args.smoke_on_cpu, 2 if args.smoke_on_cpu else args.steps)
    selection = selection_cost(args.smoke_on_cpu, device)
    table = report(device, tests, steps, selection)
    print(table + f"\n\n(whole check: {time.perf_counter() - started:.0f} s)")
    if args.out is not None:
        figures = {"machine": machine(device), "tests": tests, "grpo_steps": steps, "selection": selection}
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
    if tests["exit_code"] not in (0, 5) or tests.get("failed") or tests.get("errors") or tests.get("error"):
        sys.exit(1)  # a failing CUDA test fails the check; the table above is printed either way


if __name__ == "__main__":
    main()
