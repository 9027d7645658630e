"""The first validation of the default config, rerun at reduced size, equals the stored one: a change that silently
alters results fails here (docs/results/first_validation.json, written by benchmarks/first_validation.py --write)."""

import pytest
from conftest import ROOT, load_script

# On another CPU model floating-point results differ, and a warm-start's trajectory with them: only a gross change
# (a prompt, a reward, a sampling or schedule setting) is caught there.
TOLERANCE = {
    "val/accuracy": 0.1,
    "val/reward": 0.1,
    "val/accuracy_greedy": 0.2,
    "train/entropy": 0.1,
    "train/frac_truncated": 0.2,
    "warm_start/final_loss": 0.05,
}


def test_the_first_validation_of_the_default_config_is_the_stored_one(warmstart_cache):
    bench = load_script(ROOT / "benchmarks" / "first_validation.py")
    record = bench.stored()
    values = bench.measure(warmstart_cache)
    machine = load_script(ROOT / "benchmarks" / "machine.py")
    same_software = record["versions"]["torch"] == machine.package_versions("torch")["torch"]
    if record["machine"]["cpu"] == machine.cpu_model() and same_software:
        assert values == record["values"], (
            "results changed; if on purpose: python benchmarks/first_validation.py --write"
        )
    else:
        for name, stored in record["values"].items():
            assert values[name] == pytest.approx(stored, abs=TOLERANCE[name]), name
