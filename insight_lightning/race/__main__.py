"""python -m insight_lightning.race [--quick] [--jobs N] [--out DIR]: see insight_lightning/race/__init__.py."""

from __future__ import annotations

import argparse
import time
from dataclasses import fields, replace
from pathlib import Path

from insight_lightning.race.plan import ALL_SAMPLERS, INSIGHT_ABLATIONS, QUICK, RaceSettings, parse_variant
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


def parse_settings(argv: list[str] | None = None) -> tuple[RaceSettings, Path, int]:
    parser = argparse.ArgumentParser(
        prog="python -m insight_lightning.race",
        description="Train every sampler from the same warm-started policy over seeds and pool regimes; report "
        "test accuracy, area under the curve, speed-up over uniform, rollouts and wall time.",
    )
    parser.add_argument("--quick", action="store_true", help="a CPU-sized race (about 15 minutes on 2 cores)")
    parser.add_argument("--out", default="race", help="output folder (results, TensorBoard logs, report)")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes share the cores or GPU)")
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
    ):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"default: {getattr(defaults, name)}")
    parser.add_argument("--lr", type=float, help=f"RL learning rate (default {defaults.lr})")
    parser.add_argument("--regimes", nargs="+", choices=("main", "large"), help="default: main large")
    parser.add_argument("--model", help="'tiny' (default) or a Hugging Face name/path (no warm-start then)")
    parser.add_argument("--config", help="base YAML of every run (default configs/countdown.yaml)")
    parser.add_argument(
        "extra", nargs="*", help="further CLI overrides for every run, after --, e.g. -- --trainer.accelerator=gpu"
    )
    args = parser.parse_args(argv)
    settings = replace(defaults, **QUICK) if args.quick else defaults
    given = {f.name: getattr(args, f.name) for f in fields(RaceSettings) if getattr(args, f.name, None) is not None}
    for key in ("samplers", "regimes"):
        if key in given:
            given[key] = tuple(given[key])
    if "all" in given.get("samplers", ()):
        given["samplers"] = (*ALL_SAMPLERS, "informative_group", *INSIGHT_ABLATIONS)
    if args.extra:
        given["extra_args"] = tuple(args.extra)
    return replace(settings, **given), Path(args.out), args.jobs


def main(argv: list[str] | None = None) -> None:
    settings, out, jobs = parse_settings(argv)
    started = time.perf_counter()
    try:
        run_race(settings, out, jobs)
    except (ValueError, RuntimeError) as err:
        raise SystemExit(f"error: {err}") from None
    pools = {regime: settings.pool_size(regime) for regime in settings.regimes}
    print(write_report(out, pools))
    print(f"[race] done in {(time.perf_counter() - started) / 60:.1f} min; report, CSV and plots in {out}/")


if __name__ == "__main__":
    main()
