"""benchmarks/selection_pays.py gathers the races' paired effects against uniform's zero-variance share."""

import json
from pathlib import Path

import pytest
from conftest import load_script

from insight_lightning.race.cpu_signature import describe
from insight_lightning.race.ledger import Ledger, claim_folder
from insight_lightning.race.plan import RaceSettings
from insight_lightning.race.report import write_report
from insight_lightning.race.statistics import interval_side

ROOT = Path(__file__).resolve().parents[1]
MACHINE = {"vendor": "AuthenticAMD", "family": "25", "model": "17", "capability": "AVX512", "torch": "2.13.0+cpu"}


def race(root: Path, name: str, regime: str, prompts_per_step: int, zero_variance: dict[str, float], gain: float):
    """A race of three seeds, uniform and insight, in which insight's curve is `gain` above uniform's after the start,
    and greso's first two seeds (its third not yet run)."""
    folder = root / name
    claim_folder(folder, RaceSettings(regimes=(regime,), prompts_per_step=prompts_per_step), "another name")
    ledger = Ledger(folder)
    for sampler, seeds in (("uniform", (0, 1, 2)), ("insight", (0, 1, 2)), ("greso", (0, 1))):
        for seed in seeds:
            final = 0.3 + 0.05 * seed + (gain if sampler == "insight" else 0.0)
            ledger.write(
                {"run": f"{regime}__{sampler}__seed{seed}", "regime": regime, "sampler": sampler, "seed": seed,
                 "pool": {"size": 10}, "accuracy": [[0, 0.2], [10, final]], "unseen_share": [[1, 0.0]],
                 "zero_variance_share": [[1, zero_variance.get(sampler, 0.5)]], "rollouts": 100, "wall_s": 5.0,
                 "machine": MACHINE, "start": "aa"}
            )  # fmt: skip
    write_report(folder)


def test_one_point_per_race_regime_and_sampler_at_uniforms_zero_variance_share(tmp_path):
    selection_pays = load_script(ROOT / "benchmarks" / "selection_pays.py")
    race(tmp_path, "mixes", "mix50", 32, {"uniform": 0.7, "insight": 0.3}, 0.02)
    race(tmp_path, "mixes_m8", "mix50", 8, {"uniform": 0.72, "insight": 0.25}, 0.04)
    race(tmp_path, "other", "main", 32, {"uniform": 0.4, "insight": 0.3}, 0.0)  # not one of the races it gathers
    result = selection_pays.gather(tmp_path, ("mixes", "mixes_m8", "absent"))
    assert [(p["race"], p["prompts_per_step"], p["sampler"]) for p in result["points"]] == [  # no greso: two seeds
        ("mixes", 32, "insight"),
        ("mixes_m8", 8, "insight"),
    ]
    at_32, at_8 = result["points"]
    assert at_32["uniform_zero_variance"] == pytest.approx(0.7) and at_8["uniform_zero_variance"] == pytest.approx(0.72)
    assert at_32["auc_diff"][0] == pytest.approx(0.01) and at_8["auc_diff"][0] == pytest.approx(0.02)  # half the gain
    assert at_8["machines"] == [f"{describe(MACHINE)}, start aa"]
    table = selection_pays.quoted(result).splitlines()
    assert len(table) == 4 and table[3].startswith("| mix50 | 8 | 72% | insight | 3 | +2.0 (+/- 0.0) | above 0 |")
    selection_pays.plot(result, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 10_000


def test_the_committed_figure_is_what_the_committed_race_reports_give():
    """docs/results/selection_pays.json is regathered from the races' reports (each itself a rebuild of its ledger,
    tests/test_doc_figures.py): a race piece that lands without `selection_pays.py --write` fails here."""
    selection_pays = load_script(ROOT / "benchmarks" / "selection_pays.py")
    assert selection_pays.RESULT.read_text() == json.dumps(selection_pays.gather(), indent=1) + "\n", (
        "docs/results/selection_pays.json is stale: rerun python benchmarks/selection_pays.py --write"
    )


def test_the_readme_says_what_the_committed_figure_holds():
    """The README's "When selection pays" paragraph (and docs/race.md's summary of the table): each regime's
    zero-variance share, the seeds, the means and the power as the figure has them, and the claim that no interval
    lies above zero, which a race piece that finds a winner must change."""
    selection_pays = load_script(ROOT / "benchmarks" / "selection_pays.py")
    points = json.loads(selection_pays.RESULT.read_text())["points"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    paragraph = readme.split("## When selection pays", 1)[1].split("##", 1)[0]
    shares: dict[str, set[int]] = {}
    for p in points:
        shares.setdefault(p["regime"], set()).add(round(100 * p["uniform_zero_variance"]))
    for regime, found in shares.items():
        low, high = min(found), max(found)
        assert (f"({low} to {high}%)" if low != high else f"({low}%)") in paragraph, regime
    seeds = [p["seeds"] for p in points]
    assert f"{min(seeds)} to {max(seeds)} seeds per point" in paragraph
    detectable = [100 * p["auc_detectable"] for p in points if p["auc_detectable"] == p["auc_detectable"]]  # not NaN
    assert f"AUC differences of {min(detectable):.1f} to {max(detectable):.1f} points" in paragraph
    above = [p for p in points if interval_side(*p["auc_diff"], p["seeds"]) == "above 0"]
    assert ("no sampler's AUC interval lies above zero anywhere" in paragraph) == (not above)
    glance = " ".join((ROOT / "docs" / "race.md").read_text().split()).split("### Every regime at a glance", 1)[1]
    means = [100 * p["auc_diff"][0] for p in points]
    assert f"the means lie between {min(means):+.1f} and {max(means):+.1f} points" in glance
    power = f"the {min(detectable):.1f} to {max(detectable):.1f} points that {min(seeds)} to {max(seeds)} seeds"
    assert power in glance


def test_the_readme_quotes_our_own_samplers_pairing_against_insight_from_its_race():
    """The README's verdict on the sampler of our own that was left out comes from the rivals report's table of
    InSight's variants, paired against InSight itself."""
    report = json.loads((ROOT / "docs" / "results" / "race" / "rivals" / "race.json").read_text())
    (capped,) = [row for row in report["paired_vs_insight"]["main"] if row["sampler"] == "capped_insight"]
    mean, half = capped["auc_diff"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    quoted = f"paired at {100 * mean:+.1f} +/- {100 * half:.1f} AUC points against InSight over {capped['seeds']} seeds"
    assert quoted in readme
    # "left out" holds only while it does not beat InSight
    assert interval_side(mean, half, capped["seeds"]) != "above 0"
