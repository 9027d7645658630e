"""The statistics of a race: t intervals over seeds, mean curves, area under the curve, speed-up to a level."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Literal

# two-sided 95% Student t quantiles for 1..30 degrees of freedom (larger: the normal 1.96)
T_975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t_quantile(table: tuple[float, ...], normal: float, dof: int) -> float:
    """A tabulated Student t quantile for dof degrees of freedom (the normal one beyond the table)."""
    return table[dof - 1] if dof <= len(table) else normal


def sample_sd(values: list[float]) -> float:
    """Sample standard deviation (n - 1 in the denominator); nan for fewer than two values."""
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def mean_interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, t_quantile(T_975, 1.96, n - 1) * sample_sd(values) / math.sqrt(n)


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Average accuracy per evaluation step over seeds (steps every seed evaluated)."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for curve in curves:
        for step, value in curve:
            by_step[step].append(value)
    return [(s, sum(v) / len(v)) for s, v in sorted(by_step.items()) if len(v) == len(curves)]


def area_under_curve(curve: list[tuple[int, float]]) -> float:
    """Trapezoid area under accuracy vs step, divided by the step range: the average accuracy over training."""
    if len(curve) < 2:
        return curve[0][1] if curve else float("nan")
    area = sum((s1 - s0) * (v0 + v1) / 2 for (s0, v0), (s1, v1) in zip(curve, curve[1:]))
    return area / (curve[-1][0] - curve[0][0])


def first_step_reaching(curve: list[tuple[int, float]], level: float) -> int | None:
    return next((step for step, value in curve if value >= level - 1e-12), None)


def speed_up(baseline: list[tuple[int, float]], other: list[tuple[int, float]]) -> float | None:
    """Steps the baseline needs to reach its best accuracy / steps `other` needs to reach the same (None: never).

    On mean curves; the pre-RL point (step 0) cannot count as reaching it, so both numerators are >= one interval.
    """
    trained = [(s, v) for s, v in baseline if s > 0]
    if not trained:
        return None
    best = max(v for _, v in trained)
    need_baseline = first_step_reaching(trained, best)
    need_other = first_step_reaching([(s, v) for s, v in other if s > 0], best)
    return None if need_other is None else need_baseline / need_other


def series_mean(series: list[tuple[int, float]]) -> float:
    """The mean over steps of a per-step share (nan when the run logged none)."""
    return sum(v for _, v in series) / len(series) if series else math.nan


def final_mean(runs_series: list[list[tuple[int, float]]]) -> float | None:
    """The mean over runs of a per-step series' last value; None unless every run logged it (runs recorded before a
    scalar existed must not make the mean of a subset pass for the sampler's)."""
    if not runs_series or not all(runs_series):
        return None
    return sum(series[-1][1] for series in runs_series) / len(runs_series)


def plus_minus(half_width: float, seeds: int) -> str:
    """A 95% interval's half-width in points, as the reports print it; one seed has no interval to print."""
    return f"(+/- {100 * half_width:.1f})" if seeds > 1 else "(one seed)"


def interval_side(mean: float, half_width: float, seeds: int) -> Literal["above 0", "below 0", "holds 0", "-"]:
    """Where a mean +/- half-width interval over seeds lies against zero: "above 0", "below 0" or "holds 0" ("-"
    without an interval: one seed, whose half-width mean_interval gives as 0). Said in words because a rounded
    "-1.4 (+/- 1.4)" may still exclude zero."""
    if seeds < 2 or math.isnan(half_width):
        return "-"
    return "above 0" if mean - half_width > 0 else "below 0" if mean + half_width < 0 else "holds 0"
