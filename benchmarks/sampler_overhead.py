"""What prompt selection costs: scoring + top-M over a large pool, and a step's selection against a training step.

    python benchmarks/sampler_overhead.py                 # CPU (2 threads, float64); also the GPU when present
    python benchmarks/sampler_overhead.py --write         # and store them in docs/results/sampler_overhead.json
    python benchmarks/sampler_overhead.py --pool 1000000 --batch 256 --candidates 4096

Beliefs are those of a pool after a realistic history (every prompt seen 0..20 times with K=8 rollouts of a random
success rate), so scores are not all equal. Each figure is the median of several repetitions after a warm-up.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks.machine import describe, machine_name, results_head, write_results  # noqa: E402
from samplers import SAMPLERS, BetaPosterior, Outcomes, PromptSelector, build_sampler  # noqa: E402
from samplers.base import top_k_first_wins  # noqa: E402
from samplers.insight import wmi_score  # noqa: E402

GROUP_SIZE = 8
RESULT = ROOT / "docs" / "results" / "sampler_overhead.json"


def realistic_posterior(pool: int, device: str, seed: int = 0) -> BetaPosterior:
    gen = torch.Generator().manual_seed(seed)
    posterior = BetaPosterior(pool, device=device)
    visits = torch.randint(0, 21, (pool,), generator=gen)
    rate = torch.rand(pool, generator=gen, dtype=torch.float64)
    trials = (visits * GROUP_SIZE).double()
    successes = torch.binomial(trials, rate, generator=gen)
    posterior.alpha += successes.to(device)
    posterior.beta += (trials - successes).to(device)
    posterior.visits += visits.to(device)
    return posterior


def timed(fn, device: str, repeats: int) -> float:
    fn()  # warm-up (allocations, kernels)
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def full_pool(pool: int, batch: int, device: str, repeats: int) -> float:
    posterior = realistic_posterior(pool, device)

    def select():
        scores = wmi_score(posterior.alpha, posterior.beta, GROUP_SIZE)
        return top_k_first_wins(scores, batch).cpu()  # the ids must reach the host: that is the one sync

    return timed(select, device, repeats)


def per_step(name: str, pool: int, batch: int, candidates: int, device: str, repeats: int) -> float:
    takes_candidates = "candidate_multiplier" in inspect.signature(SAMPLERS[name]).parameters  # not uniform's kin
    options = {"candidate_multiplier": max(1, candidates // batch)} if takes_candidates else {}
    selector = PromptSelector(build_sampler(name, **options), pool, batch, GROUP_SIZE, seed=0)
    state = realistic_posterior(pool, "cpu").state_dict()
    state["prior"], state["forgetting"] = selector.posterior.prior, selector.posterior.forgetting
    selector.posterior.load_state_dict(state)
    selector.to(device)

    def step():
        ids = selector.select().ids
        selector.update(Outcomes(ids, torch.randint(0, GROUP_SIZE + 1, ids.shape), torch.full_like(ids, GROUP_SIZE)))

    return timed(step, device, repeats)


def markdown_table(result: dict) -> str:
    """The documented caption and table: one column per device measured, the full-pool scoring, the training step
    compared with, then each sampler's selection + update with its share of that step."""
    devices, s, step_s = result["devices"], result["settings"], result["train_step_s"]
    names = {"cpu": f"CPU, {result['threads']} threads", "cuda": devices.get("cuda", {}).get("name", "GPU")}
    blanks = " |" * (len(devices) - 1)
    machine = result["machine"]
    rows = [
        f"Measured on {machine['cpu']} ({describe(machine['signature'])}):",
        "",
        "| | " + " | ".join(names[d] for d in devices) + " |",
        "| --- |" + " --- |" * len(devices),
        f"| InSight scoring + top-{s['batch']} over {s['pool']:,} prompts (float64) | "
        + " | ".join(f"{devices[d]['full_pool_ms']:.1f} ms" for d in devices)
        + " |",
        f"| a GRPO step of the tiny CPU policy (the step compared with) | {step_s:.2f} s |{blanks}",
        f"| *a step's selection + belief update, pool {s['step_pool']:,}, M={s['batch']}, Mhat={s['candidates']}:* "
        f"| |{blanks}",
    ]
    for name in devices["cpu"]["per_step_ms"]:
        cells = [devices[d]["per_step_ms"][name] for d in devices]
        shares = [f"{ms:.2f} ms ({ms / 1000 / step_s:.3%} of the step)" for ms in cells]
        rows.append(f"| {name} | " + " | ".join(shares) + " |")
    return "\n".join(rows)


def quoted(result: dict) -> str:
    """What the documentation quotes from the results file: its caption and table (benchmarks/figures.py checks)."""
    return markdown_table(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=1_000_000, help="prompts in the pool for the full-pool scoring")
    parser.add_argument("--batch", type=int, default=256, help="prompts selected per step (M)")
    parser.add_argument("--candidates", type=int, default=4096, help="candidates scored per step (Mhat)")
    parser.add_argument("--step-pool", type=int, default=40_000, help="pool size for the per-step figures")
    parser.add_argument(
        "--train-step-s",
        type=float,
        default=None,
        help="a training step's wall time to compare with (default: a tiny CPU policy's step, measured here)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help=f"store the figures in {RESULT.relative_to(ROOT)}")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    train_step = args.train_step_s
    if train_step is None:
        from rollout import run  # benchmarks/rollout.py: real GRPO steps through the CLI

        timing = run("tiny CPU step", 4, ["--trainer.accelerator=cpu"])
        train_step = timing["rollout_s"] + timing["update_s"]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        + (f", {torch.cuda.get_device_name(0)}" if "cuda" in devices else ", no GPU")
    )
    result = {
        **results_head("benchmarks/sampler_overhead.py", "torch"),
        "threads": torch.get_num_threads(),
        "settings": {
            "pool": args.pool,
            "batch": args.batch,
            "candidates": args.candidates,
            "step_pool": args.step_pool,
        },
        "train_step_s": train_step,
        "devices": {},
    }
    for device in devices:
        seconds = full_pool(args.pool, args.batch, device, args.repeats)
        print(
            f"[{device}] InSight scoring + top-{args.batch} over {args.pool:,} prompts (float64): "
            f"{seconds * 1000:.1f} ms"
        )
        result["devices"][device] = {"full_pool_ms": seconds * 1000, "per_step_ms": {}}
        if device == "cuda":
            result["devices"][device]["name"] = torch.cuda.get_device_name(0)
    print(f"\nper-step selection + belief update, pool {args.step_pool:,}, M={args.batch}, Mhat={args.candidates}:")
    print(f"{'sampler':22s} " + " ".join(f"{d + ' ms':>9s} {'% of step':>9s}" for d in devices))
    for name in sorted(SAMPLERS):
        row = [per_step(name, args.step_pool, args.batch, args.candidates, d, args.repeats) for d in devices]
        for device, seconds in zip(devices, row):
            result["devices"][device]["per_step_ms"][name] = seconds * 1000
        print(f"{name:22s} " + " ".join(f"{t * 1000:9.2f} {100 * t / train_step:8.3f}%" for t in row))
    print(f"(% of a {train_step:.2f} s training step; {machine_name()})\n")
    print(markdown_table(result))
    if args.write:
        write_results(RESULT, result)


if __name__ == "__main__":
    main()
