"""Paired comparison of each sampler with the baseline over seeds: differences, bootstrap speed-up, and power.

Within a seed every sampler starts from the same warm-started weights, trains on the same pool and is evaluated on
the same problems with the same evaluation sampling seed (`model.validation.seed`), so the per-seed difference
removes the seed-to-seed spread that both share. For a paired difference with standard deviation sd over n seeds,
the smallest true difference a two-sided 5% t-test detects with 80% power is about
    (t_{0.975, n-1} + t_{0.80, n-1}) * sd / sqrt(n).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

from insight_lightning.race.ledger import identity
from insight_lightning.race.statistics import (
    T_975,
    area_under_curve,
    interval_side,
    mean_curve,
    mean_interval,
    plus_minus,
    sample_sd,
    speed_up,
    t_quantile,
)

# one-sided 80% Student t quantiles for 1..30 degrees of freedom (larger: the normal 0.842)
T_80 = (
    1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879,
    0.876, 0.873, 0.870, 0.868, 0.866, 0.865, 0.863, 0.862, 0.861, 0.860,
    0.859, 0.858, 0.858, 0.857, 0.856, 0.856, 0.855, 0.855, 0.854, 0.854,
)  # fmt: skip
BOOTSTRAP_RESAMPLES = 2000


def detectable_difference(sd: float, n: int) -> float:
    """The paired difference n seeds detect with 80% power at two-sided 5%, for a per-seed spread sd (nan: n < 2)."""
    if n < 2:
        return math.nan
    return (t_quantile(T_975, 1.96, n - 1) + t_quantile(T_80, 0.842, n - 1)) * sd / math.sqrt(n)


def seeds_needed(sd: float, difference: float, most: int = 1000) -> int | None:
    """The fewest seeds that detect `difference` with 80% power at the spread sd (None: more than `most`)."""
    if difference == 0 or math.isnan(sd):
        return None
    return next((n for n in range(2, most + 1) if detectable_difference(sd, n) <= abs(difference)), None)


def bootstrap_speed_up(
    baseline: list[list[tuple[int, float]]], other: list[list[tuple[int, float]]], seed: int = 0
) -> tuple[float, float]:
    """2.5% and 97.5% percentiles of the mean-curve speed-up when seeds are resampled in pairs (never reached: 0)."""
    rng = random.Random(seed)
    n = len(baseline)
    draws = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        picks = [rng.randrange(n) for _ in range(n)]
        up = speed_up(mean_curve([baseline[i] for i in picks]), mean_curve([other[i] for i in picks]))
        draws.append(0.0 if up is None else up)
    draws.sort()
    return draws[int(0.025 * (len(draws) - 1))], draws[int(0.975 * (len(draws) - 1))]


def pairing_key(result: dict) -> tuple[int, str, str | None]:
    """The seed, the CPU signature a run was made on and the digest of the weights it started from."""
    return result["seed"], *identity(result)


def unpaired_runs(results: list[dict], baseline: str = "uniform") -> int:
    """How many runs of other samplers have no baseline run of their regime, seed, signature and warm-start."""
    keys = {(r["regime"], pairing_key(r)) for r in results if r["sampler"] == baseline}
    return sum(r["sampler"] != baseline and (r["regime"], pairing_key(r)) not in keys for r in results)


def paired_summary(results: list[dict], baseline: str = "uniform") -> dict[str, list[dict]]:
    """Per regime, one row per sampler: mean paired differences against the baseline over the seeds both ran.

    A pair is one seed run by both on one CPU signature (``machine``) from one warm-start (``start``): runs of a
    seed made on machines whose floating point differs start from different weights and do not pair."""
    table: dict[str, list[dict]] = {}
    for regime in sorted({r["regime"] for r in results}):
        runs: dict[str, dict[int, dict]] = defaultdict(dict)
        for r in results:
            if r["regime"] == regime:
                runs[r["sampler"]][pairing_key(r)] = r
        if baseline not in runs:
            continue
        rows = []
        for sampler in sorted(s for s in runs if s != baseline):
            seeds = sorted(set(runs[sampler]) & set(runs[baseline]))
            if not seeds:
                continue
            base = [runs[baseline][s] for s in seeds]
            mine = [runs[sampler][s] for s in seeds]
            final = [m["accuracy"][-1][1] - b["accuracy"][-1][1] for m, b in zip(mine, base)]
            auc = [area_under_curve(m["accuracy"]) - area_under_curve(b["accuracy"]) for m, b in zip(mine, base)]
            up = speed_up(mean_curve([b["accuracy"] for b in base]), mean_curve([m["accuracy"] for m in mine]))
            rollouts = sum(m["rollouts"] for m in mine) / sum(b["rollouts"] for b in base)
            low, high = bootstrap_speed_up([b["accuracy"] for b in base], [m["accuracy"] for m in mine])
            rows.append(
                {
                    "sampler": sampler,
                    "seeds": len(seeds),
                    "final_diff": mean_interval(final),
                    "auc_diff": mean_interval(auc),
                    "auc_diff_sd": sample_sd(auc),
                    "auc_detectable": detectable_difference(sample_sd(auc), len(seeds)),
                    "speed_up": up,
                    "speed_up_interval": (low, high),
                    # steps scaled by rollouts generated: dynamic sampling pays for its extra rounds
                    "speed_up_per_rollout": None if up is None else up / rollouts,
                    "rollouts_ratio": rollouts,
                }
            )
        table[regime] = rows
    return table


def is_insight_variant(sampler: str) -> bool:
    """InSight's ablations (`insight:score=mi`, ...) and the samplers built on it (`capped_insight`)."""
    return sampler.startswith("insight:") or sampler.endswith("_insight")


def insight_variants_summary(results: list[dict]) -> dict[str, list[dict]]:
    """InSight's variants paired against InSight itself: the paper's ablation table, and the bar a new sampler of
    ours must clear (empty when the ledger has no variant)."""
    runs = [r for r in results if r["sampler"] == "insight" or is_insight_variant(r["sampler"])]
    if not any(is_insight_variant(r["sampler"]) for r in runs):
        return {}
    return {regime: rows for regime, rows in paired_summary(runs, baseline="insight").items() if rows}


def _off_zero(mean: float, half_width: float, seeds: int) -> str:
    """Marks an interval that excludes zero, which the rounded digits may hide (one seed has no interval)."""
    side = interval_side(mean, half_width, seeds)
    return f", {side}" if side in ("above 0", "below 0") else ""


def paired_markdown(table: dict[str, list[dict]], baseline: str = "uniform") -> str:
    lines = []
    for regime, rows in table.items():
        lines += [
            f"**{regime} regime, paired against {baseline}** (per seed: same start, pool, test problems and "
            "evaluation noise; mean difference and 95% t-interval over seeds)",
            "",
            "| sampler | seeds | final acc. diff | AUC diff | AUC diff detectable (80% power) | speed-up "
            "(bootstrap 95%) | speed-up per rollout |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in rows:
            (fd, fh), (ad, ah) = r["final_diff"], r["auc_diff"]
            low, high = r["speed_up_interval"]
            up = "not reached" if r["speed_up"] is None else f"{r['speed_up']:.2f}x ({low:.2f} to {high:.2f})"
            per = "-" if r["speed_up_per_rollout"] is None else f"{r['speed_up_per_rollout']:.2f}x"
            detect = "-" if math.isnan(r["auc_detectable"]) else f"{100 * r['auc_detectable']:.1f} points"
            final = f"{100 * fd:+.1f} {plus_minus(fh, r['seeds'])}{_off_zero(fd, fh, r['seeds'])}"
            auc = f"{100 * ad:+.1f} {plus_minus(ah, r['seeds'])}{_off_zero(ad, ah, r['seeds'])}"
            lines.append(f"| {r['sampler']} | {r['seeds']} | {final} | {auc} | {detect} | {up} | {per} |")
        lines.append("")
    return "\n".join(lines)
