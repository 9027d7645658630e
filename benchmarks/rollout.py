"""Rollout throughput and the rollout/update split of a real GRPO step (the CLI's own training loop).

    python benchmarks/rollout.py            # tiny policy on CPU; on a GPU also a Qwen2-0.5B-shaped model
    python benchmarks/rollout.py --steps 5 --gpu-only

Each configuration runs `python -m insight_lightning fit` in-process on configs/countdown.yaml with selection,
rewards and updates as in training (no warm-start, no validation) and reports the mean over its steps after the
first (the first includes one-time costs such as compilation, shown separately).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from insight_lightning.cli import main as cli_main  # noqa: E402

# Qwen2-0.5B's shape (494M parameters) with random weights: rollouts never end early, so every step is full length.
QWEN2_05B = [
    "--model.policy.tiny.architecture=qwen2",
    "--model.policy.tiny.hidden_size=896",
    "--model.policy.tiny.num_layers=24",
    "--model.policy.tiny.num_heads=14",
    "--model.policy.tiny.num_kv_heads=2",
    "--model.policy.tiny.intermediate_size=4864",
    "--model.policy.tiny.vocab_size=151936",
    "--model.policy.tiny.max_positions=1024",
    "--model.policy.dtype=bfloat16",
    "--model.policy.lora.r=32",
    "--model.policy.lora.alpha=64",
]


class StepTimes(L.Callback):
    """Collects the module's per-step timings."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        times = pl_module.last_step_times
        self.rows.append({**dataclasses.asdict(times), "tok_per_s": times.tok_per_s})


def run(name: str, steps: int, extra: list[str]) -> dict:
    timer = StepTimes()
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "--config",
            "countdown.yaml",
            f"--trainer.max_steps={steps}",
            f"--trainer.default_root_dir={tmp}",
            "--trainer.logger=false",
            "--trainer.enable_checkpointing=false",
            "--trainer.callbacks=[]",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--trainer.num_sanity_val_steps=0",
            "--trainer.limit_val_batches=0",
            "--model.validation.at_end=false",
            "--model.warm_start=null",
            *extra,
        ]
        cli = cli_main(args, run=False)
        cli.trainer.callbacks.append(timer)
        started = time.perf_counter()
        cli.trainer.fit(cli.model, cli.datamodule)
        wall = time.perf_counter() - started
    first, rest = timer.rows[0], timer.rows[1:] or timer.rows
    mean = {k: statistics.mean(r[k] for r in rest) for k in rest[0]}
    return {"name": name, "first_rollout_s": first["rollout_s"], **mean, "wall_s": wall}


def report(rows: list[dict]) -> None:
    print(
        f"\n{'configuration':44s} {'seqs':>5s} {'tokens':>7s} {'rollout s':>9s} {'tok/s':>9s} {'update s':>8s} "
        f"{'rollout %':>9s} {'1st rollout s':>13s}"
    )
    for r in rows:
        share = 100 * r["rollout_s"] / (r["rollout_s"] + r["update_s"])
        print(
            f"{r['name']:44s} {r['sequences']:5.0f} {r['tokens']:7.0f} {r['rollout_s']:9.3f} {r['tok_per_s']:9.0f} "
            f"{r['update_s']:8.3f} {share:8.1f}% {r['first_rollout_s']:13.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="RL steps per configuration (the first is reported apart)")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU configuration")
    parser.add_argument("--gpu-prompts", type=int, default=64, help="prompts per step on the GPU (x K=8 samples)")
    parser.add_argument("--gpu-new-tokens", type=int, default=256, help="completion length on the GPU")
    args = parser.parse_args()
    rows = []
    if not args.gpu_only:
        torch.set_num_threads(min(2, torch.get_num_threads()))
        rows.append(run("tiny 0.9M, CPU, 32x8 seqs, <=48 tokens", args.steps, ["--trainer.accelerator=cpu"]))
    if torch.cuda.is_available():
        gpu = [
            "--trainer.accelerator=gpu",
            f"--data.prompts_per_step={args.gpu_prompts}",
            f"--model.rollout.max_new_tokens={args.gpu_new_tokens}",
            "--model.grpo.micro_batch_size=64",
            *QWEN2_05B,
        ]
        for cache in ("dynamic", "static"):
            name = f"qwen2-0.5B shape, {torch.cuda.get_device_name(0)[:12]}, {cache} cache"
            rows.append(run(name, args.steps, [*gpu, f"--model.rollout.cache={cache}"]))
            torch.cuda.empty_cache()
    else:
        print("No CUDA device: GPU configurations skipped.")
    report(rows)


if __name__ == "__main__":
    main()
