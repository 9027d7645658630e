"""What prompt selection costs: scoring + top-M over a large pool, and a step's selection against a training step.

    python benchmarks/sampler_overhead.py                 # CPU (2 threads, float64); also the GPU when present
    python benchmarks/sampler_overhead.py --pool 1000000 --batch 256 --candidates 4096

Beliefs are those of a pool after a realistic history (every prompt seen 0..20 times with K=8 rollouts of a random
success rate), so scores are not all equal. Each figure is the median of several repetitions after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from samplers import SAMPLERS, BetaPosterior, Outcomes, PromptSelector, build_sampler  # noqa: E402
from samplers.base import top_k_first_wins  # noqa: E402
from samplers.insight import wmi_score  # noqa: E402

GROUP_SIZE = 8


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
    options = {} if name in ("uniform", "dynamic_sampling") else {"candidate_multiplier": max(1, candidates // batch)}
    selector = PromptSelector(build_sampler(name, **options), pool, batch, GROUP_SIZE, seed=0)
    state = realistic_posterior(pool, "cpu").state_dict()
    state["prior"], state["forgetting"] = selector.posterior.prior, selector.posterior.forgetting
    selector.posterior.load_state_dict(state)
    selector.to(device)

    def step():
        ids = selector.select().ids
        selector.update(Outcomes(ids, torch.randint(0, GROUP_SIZE + 1, ids.shape), torch.full_like(ids, GROUP_SIZE)))

    return timed(step, device, repeats)


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
        help="a training step's wall time to compare with (default: measured tiny CPU step, 1.6 s)",
    )
    parser.add_argument("--repeats", type=int, default=5)
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
    for device in devices:
        seconds = full_pool(args.pool, args.batch, device, args.repeats)
        print(
            f"[{device}] InSight scoring + top-{args.batch} over {args.pool:,} prompts (float64): "
            f"{seconds * 1000:.1f} ms"
        )
    print(f"\nper-step selection + belief update, pool {args.step_pool:,}, M={args.batch}, Mhat={args.candidates}:")
    print(f"{'sampler':22s} " + " ".join(f"{d + ' ms':>9s} {'% of step':>9s}" for d in devices))
    for name in sorted(SAMPLERS):
        row = [per_step(name, args.step_pool, args.batch, args.candidates, d, args.repeats) for d in devices]
        print(f"{name:22s} " + " ".join(f"{t * 1000:9.2f} {100 * t / train_step:8.3f}%" for t in row))
    print(f"(% of a {train_step:.2f} s training step)")


if __name__ == "__main__":
    main()
