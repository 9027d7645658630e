"""The sampler race: its statistics by hand, and a miniature race end to end (runs, resume, report)."""

import json
import math
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ROOT, in_process

from insight_lightning.race.__main__ import main as race_main
from insight_lightning.race.cpu_signature import describe
from insight_lightning.race.plan import RaceSettings, RunSpec, all_runs, parse_variant, sampler_args
from insight_lightning.race.report import markdown, summarise
from insight_lightning.race.statistics import area_under_curve, mean_curve, mean_interval, speed_up


def test_mean_and_t_interval():
    mean, half = mean_interval([0.2, 0.4, 0.6])
    assert mean == pytest.approx(0.4) and half == pytest.approx(4.303 * 0.2 / 3**0.5)
    assert mean_interval([0.5]) == (0.5, 0.0)


def test_area_under_curve_is_the_average_accuracy_over_training():
    assert area_under_curve([(0, 0.0), (10, 1.0)]) == pytest.approx(0.5)
    assert area_under_curve([(0, 0.2), (10, 0.2), (30, 0.6)]) == pytest.approx((10 * 0.2 + 20 * 0.4) / 30)


def test_speed_up_compares_steps_to_reach_the_baselines_best():
    uniform = [(0, 0.1), (10, 0.2), (20, 0.3), (30, 0.4), (40, 0.4)]
    faster = [(0, 0.1), (10, 0.4), (20, 0.5), (30, 0.5), (40, 0.5)]
    slower = [(0, 0.1), (10, 0.1), (20, 0.2), (30, 0.3), (40, 0.35)]
    assert speed_up(uniform, faster) == pytest.approx(3.0)  # uniform needs 30 steps, faster 10
    assert speed_up(uniform, uniform) == pytest.approx(1.0)
    assert speed_up(uniform, slower) is None  # never reaches 0.4
    assert speed_up([(0, 0.9), (10, 0.1)], [(0, 0.9), (10, 0.05)]) is None  # the pre-RL point does not count


def test_mean_curve_keeps_steps_every_seed_evaluated():
    curve = mean_curve([[(0, 0.2), (10, 0.4)], [(0, 0.4), (10, 0.6), (20, 0.9)]])
    assert [s for s, _ in curve] == [0, 10] and [v for _, v in curve] == pytest.approx([0.3, 0.5])


def test_summary_puts_the_baseline_first_and_reports_cost():
    runs = [
        {
            "regime": "main",
            "sampler": s,
            "seed": k,
            "accuracy": [(0, 0.1), (10, acc + 0.01 * k)],
            "rollouts": r,
            "wall_s": 5.0,
            "zero_variance_share": [(1, 0.25), (2, 0.75)],
            "unseen_share": [(1, 0.25 * (k + 1))],
            "max_visit_rate": [(1, 1.0), (2, 2.0 + k)],
        }
        for s, acc, r in (("insight", 0.3, 100), ("uniform", 0.2, 100), ("dynamic_sampling", 0.25, 400))
        for k in range(2)
    ]
    (rows,) = summarise(runs).values()
    assert [r["sampler"] for r in rows] == ["uniform", "dynamic_sampling", "insight"]
    assert rows[2]["final"] == pytest.approx(0.305) and rows[1]["rollouts"] == 400
    assert rows[0]["frac_unseen"] == pytest.approx(0.375)
    assert rows[0]["max_visit_rate"] == pytest.approx(2.5)  # the last step's value, averaged over seeds
    # a run that logged no shares (no selection callback) summarises; the table shows "-" for it; a sampler one of
    # whose runs predates the visit-rate scalar shows "-" too rather than the mean of the runs that have it
    runs[0]["unseen_share"] = []
    del runs[1]["max_visit_rate"]
    table = markdown(summarise(runs), {"main": 10})
    lines = {line.split(" | ")[0][2:]: line for line in table.splitlines() if line.startswith("| ")}
    assert "| never-seen prompts picked | most-visited prompt's visits (x mean) |" in table
    assert lines["insight"].endswith("| 50% | - | - |") and lines["uniform"].endswith("| 37.5% | 2.5x |")


def test_regimes_size_the_pool_from_steps_and_batch():
    settings = RaceSettings(steps=100, prompts_per_step=256)
    assert settings.pool_size("main") == round(100 * 256 / 13) and settings.pool_size("large") == 25600
    assert len(all_runs(settings)) == 2 * 5 * 8 and RunSpec("main", "insight", 3).name == "main__insight__seed3"
    fewer = replace(settings, visits_per_prompt=4)  # a slow model's race: fewer steps, each prompt still seen often
    assert fewer.pool_size("mix50") == fewer.pool_size("main") == 100 * 256 // 4 and fewer.pool_size("large") == 25600
    assert fewer.fingerprint() != settings.fingerprint()


@pytest.mark.parametrize("race", sorted(p.parent.name for p in (ROOT / "docs/results/race").glob("*/settings.json")))
def test_the_committed_races_keep_their_fingerprints(race):
    """A setting added later must not change the identity of the races already in the ledger (they could no longer
    be grown): at its default it stays out of the fingerprint."""
    saved = json.loads((ROOT / "docs" / "results" / "race" / race / "settings.json").read_text())
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in saved["settings"].items()}
    assert RaceSettings(**{**values, "config": str(ROOT / values["config"])}).fingerprint() == saved["fingerprint"]


def test_variants_give_sampler_options_and_the_data_options_refresh_and_screening():
    assert sampler_args("speed_rl") == ["--data.sampler=speed_rl"]
    assert sampler_args("insight:refresh=epoch") == ["--data.sampler=insight", "--data.refresh=epoch"]
    assert sampler_args("insight:eta=2,screening=4") == [
        "--data.sampler=InSightSampler",
        "--data.sampler.eta=2",
        "--data.screening=4",
    ]
    with pytest.raises(ValueError, match="screening=x in 'speed_rl:screening=x' is not a whole number"):
        parse_variant("speed_rl:screening=x")
    with pytest.raises(ValueError, match="'rounds' in 'speed_rl:rounds=2' is not an option of speed_rl"):
        parse_variant("speed_rl:rounds=2")


TOY_RACE = [
    "--prompts-per-step",
    "4",
    "--group-size",
    "4",
    "--eval-problems",
    "8",
    "--eval-samples",
    "1",
    "--warm-start-steps",
    "30",
    "--max-new-tokens",
    "16",
    "--regimes",
    "main",
]


def race(tmp_path: Path, *args: str, name: str = "toy") -> subprocess.CompletedProcess:
    """One invocation of a toy race whose ledger lives in tmp_path/ledger/NAME and work files in tmp_path/work. The
    race itself runs in this process (its runs are still processes of their own): a fresh interpreter would spend
    ~5 s importing for each of this file's nine invocations."""
    where = ["--name", name, "--ledger-root", str(tmp_path / "ledger"), "--out", str(tmp_path / "work")]
    return in_process(race_main, ["python", "-m", "insight_lightning.race"], [*where, *TOY_RACE, *args])


def test_a_miniature_race_runs_resumes_and_reports(tmp_path):
    args = [
        "--jobs",
        "2",
        "--samplers",
        "uniform",
        "insight:score=mi",  # a variant: InSightSampler with an option, as the ablations run
        "--seeds",
        "2",
        "--steps",
        "2",
        "--eval-every",
        "2",
    ]
    # In budgeted pieces, as a long race runs: nothing is measured yet, so the first piece's first run measures and
    # its budget starts no run it has measured; the same command continues the race.
    first = race(tmp_path, *args, "--budget-minutes", "0.01")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "runs remain (the budget is spent)" in first.stdout
    folder = tmp_path / "ledger" / "toy"
    made_first = len(list((folder / "runs").glob("*.json")))
    assert 1 <= made_first < 4
    second = race(tmp_path, *args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming: {made_first} runs already in" in second.stdout and "all 4 runs are in" in second.stdout
    results = sorted((folder / "runs").glob("*.json"))
    assert [p.stem for p in results] == [f"main__{s}__seed{k}" for s in ("insight-score-mi", "uniform") for k in (0, 1)]
    record = json.loads(results[0].read_text())
    assert [step for step, _ in record["accuracy"]] == [0, 2] and record["rollouts"] == 2 * 4 * 4
    # the per-step selection shares, read from the run's TensorBoard events
    assert [step for step, _ in record["zero_variance_share"]] == [step for step, _ in record["unseen_share"]]
    assert [v for _, v in record["unseen_share"]] == [1.0, 0.0]  # a pool of 4 and 4 prompts a step: all, then none
    assert record["machine"]["capability"] and len(record["start"]) == 16 and record["pool"]["size"] == 4
    assert record["pool"]["task"] == "tasks.CountdownTask" and record["pool"]["task_args"]["seed"] == 0
    assert "| uniform | 2 |" in (folder / "race.md").read_text()
    assert "start " + record["start"] + ": 4 runs" in (folder / "race.md").read_text()
    (paired,) = json.loads((folder / "race.json").read_text())["paired"]["main"]
    assert paired["sampler"] == "insight:score=mi" and paired["seeds"] == 2
    config = (tmp_path / "work" / "runs" / "main__insight-score-mi__seed0" / "version_0" / "config.yaml").read_text()
    assert "class_path: samplers.InSightSampler" in config and "score: mi" in config
    csv_rows = (folder / "race.csv").read_text().splitlines()
    assert csv_rows[0] == "regime,sampler,seed,step,val_accuracy" and len(csv_rows) == 1 + 4 * 2
    assert (folder / "race_main.png").stat().st_size > 1000
    # every run starts from the one shared warm-start: the same accuracy before RL for the same seed
    before = {p.stem: json.loads(p.read_text())["accuracy"][0][1] for p in results}
    assert before["main__insight-score-mi__seed0"] == before["main__uniform__seed0"]
    again = race(tmp_path, *args)
    assert again.returncode == 0 and "resuming: 4 runs already in" in again.stdout
    # an interrupted run (no ledger file yet, a partial events file left behind) is rerun from a clean log folder,
    # and a run made by another invocation is the same run: a ledger made in pieces is the ledger of one invocation
    made = without_wall_time(folder)["runs"]["main__uniform__seed1.json"]
    (folder / "runs" / "main__uniform__seed1.json").unlink()
    stale_dir = tmp_path / "work" / "runs" / "main__uniform__seed1" / "version_0"
    (stale_file,) = stale_dir.glob("events.*")
    shutil.copy(stale_file, stale_dir / "events.out.tfevents.0.interrupted")
    rerun = race(tmp_path, *args)
    assert rerun.returncode == 0 and "resuming: 3 runs already in" in rerun.stdout
    assert len(list(stale_dir.glob("events.*"))) == 1
    assert without_wall_time(folder)["runs"]["main__uniform__seed1.json"] == made
    other = race(tmp_path, *args, "--lr", "0.1")
    assert other.returncode != 0 and "holds a race with other settings" in other.stderr
    # a third seed grows the same race: only its two runs are made
    grown = race(tmp_path, *args, "--seeds", "3")
    assert grown.returncode == 0 and "resuming: 4 runs already in" in grown.stdout, grown.stderr[-3000:]
    assert len(list((folder / "runs").glob("*.json"))) == 6
    # the report is rebuilt from the ledger alone
    (folder / "race.md").unlink()
    rebuilt = race(tmp_path, *args, "--report-only")
    assert rebuilt.returncode == 0 and "| uniform | 3 |" in (folder / "race.md").read_text()


def without_wall_time(folder: Path) -> dict:
    """A ledger's runs and report with the measured wall times (which no two invocations share) taken out."""
    runs = {}
    for path in sorted((folder / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        assert record.pop("wall_s") > 0
        runs[path.name] = record
    report = json.loads((folder / "race.json").read_text())
    for rows in report["summary"].values():
        for row in rows:
            row.pop("wall_s")
    return {"runs": runs, "report": report, "csv": (folder / "race.csv").read_text()}


def test_budget_uses_measured_times_and_units_stay_on_their_machine():
    from insight_lightning.race.ledger import estimated_seconds, units_begun_elsewhere

    avx512 = {"vendor": "AuthenticAMD", "family": "25", "model": "17", "capability": "AVX512", "torch": "2.13.0+cpu"}
    avx2 = {**avx512, "model": "1", "capability": "AVX2"}

    def record(sampler, seed, wall_s, machine=avx512, start="aa"):
        return {"regime": "main", "sampler": sampler, "seed": seed, "wall_s": wall_s, "machine": machine,
                "start": start}  # fmt: skip

    here = describe(avx512)
    records = [record("uniform", 0, 100.0), record("uniform", 1, 120.0), record("insight", 0, 300.0, avx2)]
    assert estimated_seconds(RunSpec("main", "uniform", 2), records, here) == pytest.approx(110.0)
    # no insight run on this signature yet: the mean of this signature's runs, not the other machine's 300 s
    assert estimated_seconds(RunSpec("main", "insight", 1), records, here) == pytest.approx(110.0)
    assert estimated_seconds(RunSpec("main", "uniform", 0), [], here) is None
    # seed 0 was begun on the AVX2 machine as well, seed 1 on this one with another warm-start
    records.append(record("mopps", 1, 90.0, start="bb"))
    assert units_begun_elsewhere(records, (here, "aa")) == {("main", 0): describe(avx2), ("main", 1): here}


def test_the_report_names_its_machines_and_refuses_to_pair_across_signatures(tmp_path):
    from insight_lightning.race.ledger import Ledger
    from insight_lightning.race.report import write_report

    avx512 = {"vendor": "AuthenticAMD", "family": "25", "model": "17", "capability": "AVX512", "torch": "2.13.0+cpu"}
    avx2 = {**avx512, "model": "1", "capability": "AVX2"}
    ledger = Ledger(tmp_path / "race")
    for sampler, seed, machine in (("uniform", 0, avx512), ("insight", 0, avx512), ("insight", 1, avx2)):
        ledger.write(
            {"run": f"main__{sampler}__seed{seed}", "regime": "main", "sampler": sampler, "seed": seed,
             "pool": {"size": 10}, "accuracy": [[0, 0.1], [10, 0.2 + seed]], "zero_variance_share": [[1, 0.5]],
             "unseen_share": [[1, 0.25]], "rollouts": 100, "wall_s": 5.0, "machine": machine, "start": "aa"}
        )  # fmt: skip
    text = write_report(tmp_path / "race")
    assert f"- {describe(avx512)}, start aa: 2 runs" in text and f"- {describe(avx2)}, start aa: 1 runs" in text
    assert "never across signatures; 1 runs have no uniform run to pair with" in text
    assert "| uniform | 1 | 10.0% | 20.0% (one seed) |" in text  # one seed: no interval, not "+/- 0.0"
    assert "| insight | 1 | +0.0 (one seed) | +0.0 (one seed) |" in text
    (row,) = json.loads((tmp_path / "race" / "race.json").read_text())["paired"]["main"]
    assert row["seeds"] == 1


def test_paired_differences_bootstrap_and_power():
    from insight_lightning.race.paired import detectable_difference, paired_markdown, paired_summary, seeds_needed

    def run(sampler, seed, final, rollouts=100):
        return {
            "regime": "main",
            "sampler": sampler,
            "seed": seed,
            "accuracy": [(0, 0.1), (10, final)],
            "rollouts": rollouts,
            "machine": {"vendor": "v", "family": "1", "model": "2", "capability": "AVX2", "torch": "2"},
        }

    offsets = [0.0, 0.1, -0.05, 0.2]  # a large seed-to-seed spread that both samplers share
    runs = [run("uniform", k, 0.3 + o) for k, o in enumerate(offsets)]
    runs += [run("better", k, 0.35 + o + 0.01 * k, rollouts=200) for k, o in enumerate(offsets)]
    runs += [run("lonely", 9, 0.9)]  # no uniform run of seed 9: nothing to pair with
    (row,) = paired_summary(runs)["main"]
    assert row["sampler"] == "better" and row["seeds"] == 4
    mean, half = row["final_diff"]
    diffs = [0.05, 0.06, 0.07, 0.08]
    sd = (sum((d - 0.065) ** 2 for d in diffs) / 3) ** 0.5
    assert mean == pytest.approx(0.065) and half == pytest.approx(3.182 * sd / 2)  # the spread of pairs, not seeds
    assert row["auc_diff"][0] == pytest.approx(0.065 / 2)  # trapezoid from the shared start: half the gain
    # better reaches uniform's best at the first evaluation, as uniform does: 1x per step, 0.5x per rollout (2x cost)
    assert row["speed_up"] == 1.0 and row["speed_up_interval"] == (1.0, 1.0) and row["speed_up_per_rollout"] == 0.5
    better = next(line for line in paired_markdown({"main": [row]}).splitlines() if line.startswith("| better |"))
    assert better.count(", above 0 |") == 2  # both intervals exclude zero, said in words beside the digits
    # (t_0.975,9 + t_0.80,9) / sqrt(10) for sd 1; the seeds needed are the first n whose detectable size fits
    assert detectable_difference(1.0, 10) == pytest.approx((2.262 + 0.883) / 10**0.5)
    n = seeds_needed(1.0, 0.5)
    assert detectable_difference(1.0, n) <= 0.5 < detectable_difference(1.0, n - 1)
    assert seeds_needed(1.0, 0.0) is None


def test_the_report_pairs_insights_variants_against_insight_itself(tmp_path):
    from insight_lightning.race.ledger import Ledger
    from insight_lightning.race.report import write_report

    machine = {"vendor": "GenuineIntel", "family": "6", "model": "167", "capability": "AVX512", "torch": "2"}
    ledger = Ledger(tmp_path / "race")
    finals = {"uniform": 0.2, "insight": 0.3, "insight:score=mi": 0.25, "capped_insight": 0.4, "mopps": 0.5}
    for sampler, final in finals.items():
        for seed in range(2):
            ledger.write(
                {"run": f"main__{sampler}__seed{seed}", "regime": "main", "sampler": sampler, "seed": seed,
                 "pool": {"size": 10}, "accuracy": [[0, 0.1], [10, final + 0.01 * seed]],
                 "zero_variance_share": [[1, 0.5]], "unseen_share": [[1, 0.25]], "rollouts": 100, "wall_s": 5.0,
                 "machine": machine, "start": "aa"}
            )  # fmt: skip
    text = write_report(tmp_path / "race")
    against_insight = text[text.index("**main regime, paired against insight**") :]
    rows = [
        line.split(" | ")[0] for line in against_insight.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert rows == ["| sampler", "| capped_insight", "| insight:score=mi"]  # mopps and uniform pair with uniform only
    (capped, ablation) = json.loads((tmp_path / "race" / "race.json").read_text())["paired_vs_insight"]["main"]
    assert capped["final_diff"][0] == pytest.approx(0.1) and ablation["final_diff"][0] == pytest.approx(-0.05)
    # a ledger without variants keeps its report as it was
    for seed in range(2):
        for sampler in ("insight:score=mi", "capped_insight"):
            (tmp_path / "race" / "runs" / f"main__{sampler}__seed{seed}.json").unlink()
    assert "paired against insight" not in write_report(tmp_path / "race")
    assert "paired_vs_insight" not in json.loads((tmp_path / "race" / "race.json").read_text())


def test_an_interval_that_rounds_to_touch_zero_is_still_said_to_exclude_it():
    from insight_lightning.race.statistics import interval_side

    assert interval_side(-0.01447, 0.0140, 4) == "below 0"  # printed "-1.4 (+/- 1.4)": -2.85 to -0.05 points
    assert interval_side(0.003, 0.017, 4) == "holds 0" and interval_side(0.02, 0.01, 4) == "above 0"
    assert interval_side(0.0, math.nan, 4) == "-" and interval_side(-0.1, 0.0, 1) == "-"  # one seed: no interval


def test_one_seed_is_never_said_to_lie_off_zero():
    from insight_lightning.race.paired import paired_markdown, paired_summary

    machine = {"vendor": "v", "family": "1", "model": "2", "capability": "AVX2", "torch": "2"}
    runs = [
        {
            "regime": "main",
            "sampler": s,
            "seed": 0,
            "accuracy": [(0, 0.1), (10, final)],
            "rollouts": 100,
            "machine": machine,
        }
        for s, final in (("uniform", 0.3), ("worse", 0.2))
    ]
    (line,) = [row for row in paired_markdown(paired_summary(runs)).splitlines() if row.startswith("| worse |")]
    assert line.startswith("| worse | 1 | -10.0 (one seed) | -5.0 (one seed) |")  # no ", below 0": no interval


def test_runs_of_one_seed_pair_only_on_one_cpu_signature():
    from insight_lightning.race.paired import paired_summary

    avx512 = {"vendor": "AuthenticAMD", "family": "25", "model": "17", "capability": "AVX512", "torch": "2.13.0+cpu"}
    avx2 = {**avx512, "model": "1", "capability": "AVX2"}

    def run(sampler, seed, final, machine):
        return {"regime": "main", "sampler": sampler, "seed": seed, "machine": machine, "rollouts": 100,
                "accuracy": [(0, 0.1), (10, final)]}  # fmt: skip

    runs = [run("uniform", 0, 0.3, avx512), run("uniform", 1, 0.3, avx512)]
    runs += [run("insight", 0, 0.4, avx512), run("insight", 1, 0.9, avx2)]  # seed 1 ran on another machine
    (row,) = paired_summary(runs)["main"]
    assert row["seeds"] == 1 and row["final_diff"][0] == pytest.approx(0.1)


def test_runs_pair_their_evaluations_unless_a_vllm_engine_samples():
    from insight_lightning.race.plan import run_args

    def seeded(*extra):
        args = run_args(RaceSettings(extra_args=extra), RunSpec("main", "uniform", 3), None, Path("logs"))
        return "--model.validation.seed=3" in args

    assert seeded() and seeded("--model.rollout.engine=hf")
    assert not seeded("--model.rollout.engine=vllm") and not seeded("--model.rollout.engine", "vllm_server")
