"""Figures the README quotes equal the result files they come from (docs/results/, written by benchmarks/)."""

import importlib.util
import json

import pytest
from conftest import ROOT

RESULTS = ROOT / "docs" / "results"


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("result", sorted(p.name for p in RESULTS.glob("real_model_learning_*.json")))
def test_the_real_model_learning_table_is_the_result_files(result):
    data = json.loads((RESULTS / result).read_text())
    table = load_benchmark("real_model_learning").markdown_table(data["seeds"], data["validation"])
    assert table in (ROOT / "README.md").read_text(), f"README's table differs from {result}; paste:\n{table}"


def test_the_trl_comparison_table_is_the_result_file():
    result = RESULTS / "vs_trl.json"
    table = load_benchmark("vs_trl").markdown_table(json.loads(result.read_text()))
    assert table in (ROOT / "README.md").read_text(), f"README's table differs from vs_trl.json; paste:\n{table}"
