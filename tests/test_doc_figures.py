"""Figures the README and the documentation quote equal the result files they come from (docs/results/, written by
benchmarks/ and the race)."""

import json

import pytest
from conftest import ROOT, documentation, load_script

RESULTS = ROOT / "docs" / "results"


@pytest.mark.parametrize("result", sorted(p.name for p in RESULTS.glob("real_model_learning_*.json")))
def test_the_real_model_learning_table_is_the_result_files(result):
    data = json.loads((RESULTS / result).read_text())
    table = load_script(ROOT / "benchmarks" / "real_model_learning.py").markdown_table(
        data["seeds"], data["validation"]
    )
    assert table in documentation(), f"no page of the documentation holds {result}'s table; paste:\n{table}"


def test_the_trl_comparison_table_is_the_result_file():
    result = RESULTS / "vs_trl.json"
    table = load_script(ROOT / "benchmarks" / "vs_trl.py").markdown_table(json.loads(result.read_text()))
    assert table in documentation(), f"no page of the documentation holds vs_trl.json's table; paste:\n{table}"


@pytest.mark.parametrize("race", sorted(p.name for p in (RESULTS / "race").iterdir() if p.is_dir()))
def test_a_committed_race_report_is_a_rebuild_of_its_ledger(race, tmp_path):
    """race.md, race.json and race.csv come from the ledger alone, byte for byte (the PNG is redrawn, not compared:
    its pixels depend on the matplotlib and FreeType versions)."""
    from insight_lightning.race.report import write_report

    committed = RESULTS / "race" / race
    rebuilt = tmp_path / race
    (rebuilt / "runs").mkdir(parents=True)
    for run in (committed / "runs").glob("*.json"):
        (rebuilt / "runs" / run.name).write_bytes(run.read_bytes())
    write_report(rebuilt)
    for name in ("race.md", "race.json", "race.csv"):
        assert (rebuilt / name).read_bytes() == (committed / name).read_bytes(), (
            f"{committed / name} is not what its ledger gives; rebuild it with "
            f"python -m insight_lightning.race --name {race} --report-only"
        )


@pytest.mark.parametrize("race", ["quick", "mixes", "smollm2"])
def test_the_documented_race_tables_are_the_race_reports(race):
    page = (ROOT / "docs" / "race.md").read_text()
    report = (RESULTS / "race" / race / "race.md").read_text()
    missing = [line for line in report.splitlines() if line.startswith("|") and line not in page.splitlines()]
    assert not missing, (
        f"docs/race.md's {race} race tables differ from docs/results/race/{race}/race.md:\n" + "\n".join(missing)
    )
