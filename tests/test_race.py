"""The sampler race: its statistics by hand, and a miniature race end to end (runs, resume, report)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, subprocess_env

from insight_lightning.race.plan import RaceSettings, RunSpec, all_runs
from insight_lightning.race.report import area_under_curve, markdown, mean_curve, mean_interval, speed_up, summarise


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
            "frac_zero_variance": 0.5,
            "frac_unseen": 0.25 * (k + 1),
        }
        for s, acc, r in (("insight", 0.3, 100), ("uniform", 0.2, 100), ("dynamic_sampling", 0.25, 400))
        for k in range(2)
    ]
    (rows,) = summarise(runs).values()
    assert [r["sampler"] for r in rows] == ["uniform", "dynamic_sampling", "insight"]
    assert rows[2]["final"] == pytest.approx(0.305) and rows[1]["rollouts"] == 400
    assert rows[0]["frac_unseen"] == pytest.approx(0.375)
    # results from before the field existed still summarise; the table shows "-" for them
    del runs[0]["frac_unseen"]
    table = markdown(summarise(runs), {"main": 10})
    (insight_line,) = [line for line in table.splitlines() if line.startswith("| insight |")]
    assert "| never-seen prompts picked |" in table and insight_line.endswith("| 50% | - |")


def test_regimes_size_the_pool_from_steps_and_batch():
    settings = RaceSettings(steps=100, prompts_per_step=256)
    assert settings.pool_size("main") == round(100 * 256 / 13) and settings.pool_size("large") == 25600
    assert len(all_runs(settings)) == 2 * 5 * 6 and RunSpec("main", "insight", 3).name == "main__insight__seed3"


def test_a_miniature_race_runs_resumes_and_reports(tmp_path):
    args = [
        "--out",
        str(tmp_path),
        "--jobs",
        "2",
        "--samplers",
        "uniform",
        "insight:score=mi",  # a variant: InSightSampler with an option, as the ablations run
        "--seeds",
        "2",
        "--steps",
        "2",
        "--prompts-per-step",
        "4",
        "--group-size",
        "4",
        "--eval-every",
        "2",
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
    command = [sys.executable, "-m", "insight_lightning.race", *args]
    first = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    results = sorted((tmp_path / "results").glob("*.json"))
    assert [p.stem for p in results] == [f"main__{s}__seed{k}" for s in ("insight-score-mi", "uniform") for k in (0, 1)]
    record = json.loads(results[0].read_text())
    assert [step for step, _ in record["accuracy"]] == [0, 2] and record["rollouts"] == 2 * 4 * 4
    assert 0 < record["frac_unseen"] <= 1  # read from the run's selection/frac_unseen
    assert "| uniform | 2 |" in (tmp_path / "race.md").read_text()
    (paired,) = json.loads((tmp_path / "race.json").read_text())["paired"]["main"]
    assert paired["sampler"] == "insight:score=mi" and paired["seeds"] == 2
    config = (tmp_path / "runs" / "main__insight-score-mi__seed0" / "version_0" / "config.yaml").read_text()
    assert "class_path: samplers.InSightSampler" in config and "score: mi" in config
    csv_rows = (tmp_path / "race.csv").read_text().splitlines()
    assert csv_rows[0] == "regime,sampler,seed,step,val_accuracy" and len(csv_rows) == 1 + 4 * 2
    assert (tmp_path / "race_main.png").stat().st_size > 1000
    assert len(list((tmp_path / "runs").glob("main__*/version_0/events.*"))) == 4
    # every run starts from the one shared warm-start: the same accuracy before RL for the same seed
    before = {p.stem: json.loads(p.read_text())["accuracy"][0][1] for p in results}
    assert before["main__insight-score-mi__seed0"] == before["main__uniform__seed0"]
    again = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "resuming: 4 runs already finished" in again.stdout
    # an interrupted run (no result yet, a partial events file left behind) is rerun from a clean log folder
    (tmp_path / "results" / "main__uniform__seed1.json").unlink()
    stale_dir = tmp_path / "runs" / "main__uniform__seed1" / "version_0"
    (stale_file,) = stale_dir.glob("events.*")
    shutil.copy(stale_file, stale_dir / "events.out.tfevents.0.interrupted")
    rerun = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and "resuming: 3 runs already finished" in rerun.stdout
    assert len(list(stale_dir.glob("events.*"))) == 1
    rerun_record = json.loads((tmp_path / "results" / "main__uniform__seed1.json").read_text())
    assert [step for step, _ in rerun_record["accuracy"]] == [0, 2]
    other = subprocess.run([*command, "--seeds", "3"], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True)
    assert other.returncode != 0 and "holds a race with other settings" in other.stderr


def test_paired_differences_bootstrap_and_power():
    from insight_lightning.race.paired import detectable_difference, paired_summary, seeds_needed

    def run(sampler, seed, final, rollouts=100):
        return {
            "regime": "main",
            "sampler": sampler,
            "seed": seed,
            "accuracy": [(0, 0.1), (10, final)],
            "rollouts": rollouts,
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
    # (t_0.975,9 + t_0.80,9) / sqrt(10) for sd 1; the seeds needed are the first n whose detectable size fits
    assert detectable_difference(1.0, 10) == pytest.approx((2.262 + 0.883) / 10**0.5)
    n = seeds_needed(1.0, 0.5)
    assert detectable_difference(1.0, n) <= 0.5 < detectable_difference(1.0, n - 1)
    assert seeds_needed(1.0, 0.0) is None


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
