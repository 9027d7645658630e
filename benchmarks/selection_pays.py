"""When selection pays: every sampler's paired effect over uniform against the share of zero-variance groups uniform
draws, one point per race regime and prompts per step, from the races' committed ledgers.

    python benchmarks/selection_pays.py            # print the table
    python benchmarks/selection_pays.py --write    # and write docs/results/selection_pays.json and .png

Each race's report (race.json, rebuilt from its ledger by `python -m insight_lightning.race --name NAME
--report-only`) holds the paired differences; this gathers them. A point pairs runs of one CPU signature and warm-start
only (the race's rule); the machines each point was measured on are listed with it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from insight_lightning.race.ledger import LEDGER_ROOT, Ledger, machines  # noqa: E402
from insight_lightning.race.paired import is_insight_variant  # noqa: E402
from insight_lightning.race.statistics import interval_side, plus_minus  # noqa: E402

RESULT = ROOT / "docs" / "results" / "selection_pays.json"
RACES = ("quick", "rivals", "large", "mixes", "mixes_m8", "graded")
"""The races of the tiny policy at the quick settings (40 steps of 32 prompts, or 160 of 8) that this figure gathers;
quick and rivals race the main pool at the same settings on two CPU signatures, each from its own warm-start."""
SIDE_RACED = ("expected_difficulty", "inverse_evidence")
"""Raced on the main pool only, as InSight's variants are (paired against InSight in the rivals report): this
figure keeps the samplers raced across regimes."""

MIN_SEEDS = 3
"""A point is a paired difference with an interval worth plotting (two seeds give a t-interval of one degree of
freedom, 12.7 standard errors wide): a sampler with fewer seeds so far in a growing race waits."""


def across_regimes(sampler: str) -> bool:
    return not (is_insight_variant(sampler) or sampler in SIDE_RACED)


def gather(root: Path = LEDGER_ROOT, races: tuple[str, ...] = RACES) -> dict:
    """One point per (race, regime, sampler other than uniform with MIN_SEEDS paired seeds), with uniform's
    zero-variance share there."""
    points, sources = [], []
    for race in races:
        folder = root / race
        if not (folder / "race.json").is_file():
            continue
        report = json.loads((folder / "race.json").read_text())
        settings = json.loads((folder / "settings.json").read_text())["settings"]
        records = Ledger(folder).records()
        sources.append({"race": race, "runs": len(records), "settings": settings})
        for regime, paired in report["paired"].items():
            uniform = next((row for row in report["summary"][regime] if row["sampler"] == "uniform"), None)
            if uniform is None:
                continue
            made_on = [f"{signature}, start {start}" for signature, start, _ in machines(
                [r for r in records if r["regime"] == regime]
            )]  # fmt: skip
            for row in filter(lambda row: across_regimes(row["sampler"]) and row["seeds"] >= MIN_SEEDS, paired):
                points.append(
                    {
                        "race": race,
                        "regime": regime,
                        "prompts_per_step": settings["prompts_per_step"],
                        "steps": settings["steps"],
                        "uniform_zero_variance": uniform["frac_zero_variance"],
                        "sampler": row["sampler"],
                        "seeds": row["seeds"],
                        "auc_diff": row["auc_diff"],
                        "auc_detectable": row["auc_detectable"],
                        "speed_up": row["speed_up"],
                        "speed_up_interval": row["speed_up_interval"],
                        "speed_up_per_rollout": row["speed_up_per_rollout"],
                        "machines": made_on,
                    }
                )
    return {"points": points, "sources": sources}


def _times(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.2f}x"


def quoted(result: dict) -> str:
    """The table docs/race.md quotes (benchmarks/figures.py checks it against the results file)."""
    lines = [
        "| regime | M | zero-variance groups uniform draws | sampler | seeds | AUC diff vs uniform, points (95% CI) "
        "| interval | detectable (80% power) | speed-up per step (bootstrap 95%) | speed-up per rollout |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in result["points"]:
        mean, half = p["auc_diff"]
        low, high = p["speed_up_interval"]
        detectable = "-" if p["auc_detectable"] is None or math.isnan(p["auc_detectable"]) else (
            f"{100 * p['auc_detectable']:.1f}"
        )  # fmt: skip
        side = interval_side(mean, half, p["seeds"])
        lines.append(
            f"| {p['regime']} | {p['prompts_per_step']} | {100 * p['uniform_zero_variance']:.0f}% | {p['sampler']} | "
            f"{p['seeds']} | {100 * mean:+.1f} {plus_minus(half, p['seeds'])} | {side} | "
            f"{detectable} | "
            f"{_times(p['speed_up'])} ({low:.2f} to {high:.2f}) | {_times(p['speed_up_per_rollout'])} |"
        )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Two panels against uniform's zero-variance share: paired AUC difference (t-interval) and speed-up per step
    (bootstrap interval); one colour per sampler, filled markers at M = 32, hollow at M = 8."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samplers = sorted({p["sampler"] for p in result["points"]})
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(samplers)}
    fig, (auc_ax, up_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    for p in result["points"]:
        offset = 0.6 * (samplers.index(p["sampler"]) - (len(samplers) - 1) / 2)  # points: side by side, not stacked
        x = 100 * p["uniform_zero_variance"] + offset
        style = {"color": colours[p["sampler"]], "marker": "o", "capsize": 2, "linestyle": "none"}
        if p["prompts_per_step"] != 32:
            style["markerfacecolor"] = "white"
        mean, half = p["auc_diff"]
        auc_ax.errorbar(x, 100 * mean, yerr=0 if math.isnan(half) else 100 * half, **style)
        if p["speed_up"] is not None:
            low, high = p["speed_up_interval"]
            up_ax.errorbar(x, p["speed_up"], yerr=[[p["speed_up"] - low], [high - p["speed_up"]]], **style)
        else:  # never reached uniform's best: drawn at 0 with its interval
            low, high = p["speed_up_interval"]
            up_ax.errorbar(x, 0, yerr=[[0], [high]], **{**style, "marker": "x"})
    for s in samplers:
        auc_ax.plot([], [], "o", color=colours[s], label=s)
    auc_ax.plot([], [], "o", color="grey", markerfacecolor="white", label="M = 8 prompts per step")
    auc_ax.axhline(0, color="black", linewidth=0.8)
    up_ax.axhline(1, color="black", linewidth=0.8)
    auc_ax.set_ylabel("paired AUC difference vs uniform (points)")
    up_ax.set_ylabel("speed-up per step vs uniform (x = never reached)")
    for ax in (auc_ax, up_ax):
        ax.set_xlabel("zero-variance groups uniform draws (%)")
        ax.grid(alpha=0.3)
    auc_ax.legend(fontsize=8)
    fig.suptitle("When selection pays: the tiny policy's races, one point per regime, M and sampler")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {RESULT.relative_to(ROOT)} and its plot")
    args = parser.parse_args()
    result = gather()
    print(quoted(result))
    if args.write:
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
        plot(result, RESULT.with_suffix(".png"))
        print(f"wrote {RESULT.relative_to(ROOT)} and {RESULT.with_suffix('.png').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
