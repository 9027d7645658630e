"""python -m insight_lightning.race [--quick] [--name NAME] [--budget-minutes N] [--report-only]: see __init__.py."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

from insight_lightning.race.ledger import LEDGER_ROOT, Ledger
from insight_lightning.race.plan import ALL_SAMPLERS, INSIGHT_ABLATIONS, QUICK, REGIMES, RaceSettings, parse_variant
from insight_lightning.race.report import write_report
from insight_lightning.race.runner import run_race


def checked_variant(spec: str) -> str:
    """argparse type of --samplers: 'all', a registered name or a variant; a bad one is one clear error."""
    if spec == "all":
        return spec
    try:
        parse_variant(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return spec


@dataclass
class Invocation:
    """What one call of the race does, beyond the settings that decide its results."""

    ledger: Ledger
    work: Path
    jobs: int
    budget_minutes: float | None
    report_only: bool


def parse_settings(argv: list[str] | None = None) -> tuple[RaceSettings, Invocation]:
    parser = argparse.ArgumentParser(
        prog="python -m insight_lightning.race",
        description="Train every sampler from the same warm-started policy over seeds and pool regimes; report "
        "test accuracy, area under the curve, speed-up over uniform, rollouts and wall time. Each finished run is "
        "one file of the race's ledger (docs/results/race/NAME/runs/); a run already there is never run again.",
    )
    parser.add_argument("--quick", action="store_true", help="a CPU-sized race (about 20 minutes on 2 cores)")
    parser.add_argument("--name", help="the race's name, its ledger folder (default: quick with --quick, else full)")
    parser.add_argument("--ledger-root", default=str(LEDGER_ROOT), help="where race folders live (%(default)s)")
    parser.add_argument("--out", help="work folder: warm-start and TensorBoard logs (default: race/NAME)")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes share the cores or GPU)")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        help="start no run that the ledger's measured times say cannot finish within this many minutes of the call",
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the ledger; run nothing")
    defaults = RaceSettings()
    parser.add_argument(
        "--samplers",
        nargs="+",
        type=checked_variant,
        help=f"registered names, or variants name:option=value[,...] such as {' '.join(INSIGHT_ABLATIONS)} "
        f"(default: {' '.join(defaults.samplers)}; 'all' adds informative_group and the InSight ablations)",
    )
    for name in (
        "seeds",
        "steps",
        "prompts_per_step",
        "group_size",
        "eval_every",
        "eval_problems",
        "eval_samples",
        "warm_start_steps",
        "max_new_tokens",
        "visits_per_prompt",
    ):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"default: {getattr(defaults, name)}")
    parser.add_argument("--lr", type=float, help=f"RL learning rate (default {defaults.lr})")
    parser.add_argument(
        "--regimes",
        nargs="+",
        choices=REGIMES,
        help="main (pool: each prompt picked about --visits-per-prompt times), large (~once), mix25/mix50/mix75 "
        "(main's size, 25/50/75%% out of reach, the rest mixed), solved50 (half always solved, half mixed), graded "
        "(Countdown, main's size, four levels from easy to hard, all solvable; see race/pool_builder.py); "
        "default: main large",
    )
    parser.add_argument("--model", help="'tiny' (default) or a Hugging Face name/path (no warm-start then)")
    parser.add_argument("--config", help="base YAML of every run (default configs/countdown.yaml)")
    parser.add_argument(
        "extra", nargs="*", help="further CLI overrides for every run, after --, e.g. -- --trainer.accelerator=gpu"
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.budget_minutes is not None and args.budget_minutes <= 0:
        parser.error("--budget-minutes must be positive")
    settings = replace(defaults, **QUICK) if args.quick else defaults
    given = {f.name: getattr(args, f.name) for f in fields(RaceSettings) if getattr(args, f.name, None) is not None}
    for key in ("samplers", "regimes"):
        if key in given:
            given[key] = tuple(given[key])
    if "all" in given.get("samplers", ()):
        given["samplers"] = (*ALL_SAMPLERS, "informative_group", *INSIGHT_ABLATIONS)
    if args.extra:
        given["extra_args"] = tuple(args.extra)
    name = args.name or ("quick" if args.quick else "full")
    work = Path(args.out) if args.out else Path("race") / name
    ledger = Ledger(Path(args.ledger_root) / name)
    return replace(settings, **given), Invocation(ledger, work, args.jobs, args.budget_minutes, args.report_only)


def main(argv: list[str] | None = None) -> None:
    settings, call = parse_settings(argv)
    started = time.perf_counter()
    try:
        if not call.report_only:
            budget_s = None if call.budget_minutes is None else 60 * call.budget_minutes
            remains = run_race(settings, call.ledger, call.work, call.jobs, budget_s)
        print(write_report(call.ledger.folder))
    except (ValueError, RuntimeError) as err:
        raise SystemExit(f"error: {err}") from None
    if not call.report_only:
        minutes = (time.perf_counter() - started) / 60
        print(f"[race] this piece took {minutes:.1f} min; TensorBoard logs in {call.work}/")
        print(remains)
    print(f"[race] report, CSV and plots in {call.ledger.folder}/")


if __name__ == "__main__":
    main()
