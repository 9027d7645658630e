"""Figures the README quotes equal the result files they come from (docs/results/, written by benchmarks/)."""

import json

import pytest
from conftest import ROOT, load_script

RESULTS = ROOT / "docs" / "results"


@pytest.mark.parametrize("result", sorted(p.name for p in RESULTS.glob("real_model_learning_*.json")))
def test_the_real_model_learning_table_is_the_result_files(result):
    data = json.loads((RESULTS / result).read_text())
    table = load_script(ROOT / "benchmarks" / "real_model_learning.py").markdown_table(
        data["seeds"], data["validation"]
    )
    assert table in (ROOT / "README.md").read_text(), f"README's table differs from {result}; paste:\n{table}"


def test_the_trl_comparison_table_is_the_result_file():
    result = RESULTS / "vs_trl.json"
    table = load_script(ROOT / "benchmarks" / "vs_trl.py").markdown_table(json.loads(result.read_text()))
    assert table in (ROOT / "README.md").read_text(), f"README's table differs from vs_trl.json; paste:\n{table}"
