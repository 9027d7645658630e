"""The first validation of the default Countdown config at reduced size: a fingerprint of what the code computes.

    python benchmarks/first_validation.py            # prints the values
    python benchmarks/first_validation.py --write    # stores them in docs/results/first_validation.json

configs/countdown.yaml with a warm-start of 500 steps of 32 sequences on 2,000 problems (long enough that the policy
scores, sampled and greedy: a check that reads 0% cannot see a change in scoring), then the pre-RL validation of 24
test problems (16 samples each at T = 0.6, and greedy) and one GRPO step. tests/test_first_validation.py reruns it
and compares: exactly where the CPU signature (vendor, family, model, torch's vector extension, torch version) equals
the one the file was written on; elsewhere only within a tolerance, because floating-point results (and so a
warm-start's trajectory) differ.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import cpu_signature, describe, machine_record, package_versions  # noqa: E402

RESULT = ROOT / "docs" / "results" / "first_validation.json"
METRICS = ("val/accuracy", "val/reward", "val/accuracy_greedy")  # at step 0, before RL
TRAIN_METRICS = ("train/entropy", "train/frac_truncated")  # of the first step's rollouts: continuous, never all 0
# Off the stored signature a different warm-start trajectory scores differently: only a gross change (a prompt, a
# reward, a sampling or schedule setting) is caught. Accuracies are over 24 problems (greedy: steps of 1/24).
TOLERANCE = {
    "val/accuracy": 0.1,
    "val/reward": 0.1,
    "val/accuracy_greedy": 0.2,
    "train/entropy": 0.1,
    "train/frac_truncated": 0.2,
    "warm_start/final_loss": 0.05,
}


def fit_args(workdir: Path, warmstart_cache: Path) -> list[str]:
    """The reduced default run. Its warm-start is long enough that the policy scores (a fingerprint of 0% cannot
    see a change in scoring); the tests' tiny fits use the same one, so a test session trains it once."""
    return [
        "fit", "--config", str(ROOT / "configs" / "countdown.yaml"), "--seed_everything", "0",
        "--trainer.max_steps", "1", "--trainer.logger.init_args.save_dir", str(workdir / "runs"),
        "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks", "[]",
        "--trainer.default_root_dir", str(workdir),
        "--model.warm_start.max_steps", "500", "--model.warm_start.batch_size", "32",
        "--model.warm_start.num_examples", "2000",
        "--model.warm_start.cache_dir", str(warmstart_cache),
        "--model.validation.samples_per_problem", "16", "--model.validation.at_end", "false",
        "--model.grpo.group_size", "4",
        "--data.task.init_args.train_size", "64", "--data.task.init_args.test_size", "24",
        "--data.prompts_per_step", "8", "--data.val_batch_size", "8",
    ]  # fmt: skip


def measure(warmstart_cache: Path | None = None) -> dict[str, float]:
    """Run it in this process; the values of the validation before RL, and the warm-start's final loss."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from insight_lightning.cli.app import main

    with tempfile.TemporaryDirectory() as tmp:
        cli = main(fit_args(Path(tmp), warmstart_cache or Path(tmp) / "warmstart"))
        (version,) = Path(tmp, "runs").glob("*/version_*")
        events = EventAccumulator(str(version), size_guidance={"scalars": 0})
        events.Reload()
        values = {name: events.Scalars(name)[0].value for name in (*METRICS, *TRAIN_METRICS)}
    values["warm_start/final_loss"] = cli.model.warm_start_result.final_loss
    return values


def stored() -> dict:
    return json.loads(RESULT.read_text())


def differences(values: dict[str, float], record: dict) -> tuple[str, list[str]]:
    """How ``values`` were compared with the stored ``record`` ("exact" on its CPU signature, else "tolerance"), and
    one line per value that differs by more than that allows."""
    here = cpu_signature()
    if record["machine"].get("signature") == here:
        mode, allowed = "exact", dict.fromkeys(TOLERANCE, 0.0)
    else:
        mode, allowed = "tolerance", TOLERANCE
    problems = [
        f"{name}: {values[name]:.6g} here, {stored:.6g} stored (allowed {allowed[name]:g}; {mode}, {describe(here)})"
        for name, stored in record["values"].items()
        if abs(values[name] - stored) > allowed[name]
    ]
    return mode, problems


def quoted(record: dict) -> str:
    """What the documentation quotes from the results file, in a sentence (benchmarks/figures.py checks the page)."""
    values = record["values"]
    return f"scores {values['val/accuracy']:.1%} sampled and {values['val/accuracy_greedy']:.1%} greedy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"store the values in {RESULT.relative_to(ROOT)}")
    args = parser.parse_args()
    values = measure()
    record = {
        "command": "python benchmarks/first_validation.py --write",
        "machine": machine_record(),
        "versions": package_versions("torch", "transformers", "peft", "lightning"),
        "values": values,
    }
    print(json.dumps(record, indent=1))
    if args.write:
        RESULT.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
