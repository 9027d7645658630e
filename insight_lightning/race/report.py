"""Turning race results into numbers: final accuracy with a 95% interval, area under the curve, speed-up, cost."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

from insight_lightning.race.ledger import Ledger, machines
from insight_lightning.race.paired import insight_variants_summary, paired_markdown, paired_summary, unpaired_runs
from insight_lightning.race.pools import GRADED, KINDS
from insight_lightning.race.statistics import (
    area_under_curve,
    final_mean,
    mean_curve,
    mean_interval,
    plus_minus,
    series_mean,
    speed_up,
)


def summarise(results: list[dict], baseline: str = "uniform") -> dict[str, list[dict]]:
    """Per regime, one row per sampler."""
    table: dict[str, list[dict]] = {}
    for regime in sorted({r["regime"] for r in results}):
        rows = [r for r in results if r["regime"] == regime]
        by_sampler: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            by_sampler[r["sampler"]].append(r)
        curves = {s: mean_curve([r["accuracy"] for r in runs]) for s, runs in by_sampler.items()}
        summary = []
        for sampler, runs in sorted(by_sampler.items(), key=lambda item: (item[0] != baseline, item[0])):
            finals = [r["accuracy"][-1][1] for r in runs]
            mean, half = mean_interval(finals)
            aucs = [area_under_curve(r["accuracy"]) for r in runs]
            up = speed_up(curves[baseline], curves[sampler]) if baseline in curves else None
            summary.append(
                {
                    "sampler": sampler,
                    "seeds": len(runs),
                    "final": mean,
                    "final_ci": half,
                    "auc": sum(aucs) / len(aucs),
                    "start": sum(r["accuracy"][0][1] for r in runs) / len(runs),
                    "speed_up": up,
                    "rollouts": sum(r["rollouts"] for r in runs) / len(runs),
                    "wall_s": sum(r["wall_s"] for r in runs) / len(runs),
                    "frac_zero_variance": sum(series_mean(r["zero_variance_share"]) for r in runs) / len(runs),
                    "frac_unseen": sum(series_mean(r["unseen_share"]) for r in runs) / len(runs),
                    "max_visit_rate": final_mean([r.get("max_visit_rate", []) for r in runs]),
                }
            )
        table[regime] = summary
    return table


def markdown(table: dict[str, list[dict]], pools: dict[str, int], baseline: str = "uniform") -> str:
    lines = []
    for regime, rows in table.items():
        lines += [
            f"**{regime} regime** (pool {pools.get(regime, '?')})",
            "",
            "| sampler | seeds | test acc. before RL | final test acc. (95% CI) | AUC | speed-up vs "
            f"{baseline} | rollouts | wall time / run | zero-variance groups | never-seen prompts picked | "
            "most-visited prompt's visits (x mean) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in rows:
            up = "not reached" if r["speed_up"] is None else f"{r['speed_up']:.2f}x"
            lines.append(
                f"| {r['sampler']} | {r['seeds']} | {100 * r['start']:.1f}% | {100 * r['final']:.1f}% "
                f"{plus_minus(r['final_ci'], r['seeds'])} | {100 * r['auc']:.1f}% | {up} | {r['rollouts']:.0f} | "
                f"{r['wall_s']:.0f} s | {100 * r['frac_zero_variance']:.0f}% | {_percent(r['frac_unseen'])} | "
                f"{_times(r['max_visit_rate'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}%"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def write_csv(results: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["regime", "sampler", "seed", "step", "val_accuracy"])
        for r in sorted(results, key=lambda r: (r["regime"], r["sampler"], r["seed"])):
            for step, value in r["accuracy"]:
                writer.writerow([r["regime"], r["sampler"], r["seed"], step, f"{value:.6f}"])


def plot(results: list[dict], regime: str, path: Path) -> None:
    """Accuracy vs step per sampler: the mean over seeds and a band from the lowest to the highest seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for sampler in sorted({r["sampler"] for r in results if r["regime"] == regime}):
        curves = [r["accuracy"] for r in results if r["regime"] == regime and r["sampler"] == sampler]
        steps = [s for s, _ in mean_curve(curves)]
        values = [[dict(c)[s] for c in curves] for s in steps]
        mean = [sum(v) / len(v) for v in values]
        line = ax.plot(steps, [100 * m for m in mean], marker="o", label=f"{sampler} ({len(curves)} seeds)")[0]
        ax.fill_between(
            steps, [100 * min(v) for v in values], [100 * max(v) for v in values], color=line.get_color(), alpha=0.15
        )
    ax.set_xlabel("RL step")
    ax.set_ylabel("test accuracy (pass@1, %)")
    ax.set_title(f"Sampler race, {regime} regime")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def pools_made(results: list[dict]) -> dict[str, list[dict]]:
    """Per difficulty-mix regime, each distinct pool its runs trained on (one per CPU signature and warm-start):
    how it was made and what the probes found, with its SHA-256."""
    made: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in results:
        if "made" in r["pool"] and r["regime"] != GRADED:  # the graded pool has its own table
            made[r["regime"]].setdefault(r["pool"]["sha256"], r["pool"]["made"])
    return {regime: list(pools.values()) for regime, pools in sorted(made.items())}


def pools_markdown(made: dict[str, list[dict]], table: dict[str, list[dict]], baseline: str = "uniform") -> str:
    """The difficulty-mix pools: asked composition, the second probe's, and the zero-variance share uniform draws."""
    if not made:
        return ""
    lines = [
        "**Difficulty-mix pools** (made from a probe of the starting weights; a second, independent probe "
        "measured what each holds)",
        "",
        "| regime | prompts | asked: out of reach / mixed / solved | second probe: out of reach / mixed / solved "
        f"| out-of-reach prompts | probe samples | SHA-256 | zero-variance groups {baseline} draws |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for regime, pools in made.items():
        rows = {row["sampler"]: row for row in table.get(regime, [])}
        zero = f"{100 * rows[baseline]['frac_zero_variance']:.0f}%" if baseline in rows else "-"
        for pool in pools:
            asked = " / ".join(f"{100 * pool['shares'].get(kind, 0):.0f}%" for kind in KINDS)
            found = " / ".join(f"{100 * pool['probe'][kind]:.1f}%" for kind in KINDS)
            lines.append(
                f"| {regime} | {pool['size']} | {asked} | {found} | {pool['out_of_reach_source']} | "
                f"{pool['samples']} | {pool['sha256'][:12]} | {zero} |"
            )
    by_kind = [
        f"- {regime} ({pool['sha256'][:12]}): "
        + "; ".join(kind_shares(pool, "candidates_by_kind"))
        + ". The pool itself, second probe: "
        + "; ".join(kind_shares(pool, "probe_by_kind"))
        for regime, pools in made.items()
        for pool in pools
        if pool.get("candidates_by_kind")
    ]
    if by_kind:
        lines += ["", "By problem kind, the candidates' probe (out of reach / mixed / solved, of n prompts):", ""]
        lines += by_kind
    return "\n".join([*lines, ""])


def graded_markdown(results: list[dict]) -> str:
    """The graded pool by level, probed with the starting weights and with each sampler's trained policy (mean over
    seeds), and the share of the prompts out of reach at the start that the trained policy reaches."""
    runs = [r for r in results if r["regime"] == GRADED and "probe_end" in r and "made" in r["pool"]]
    if not runs:
        return ""
    start = runs[0]["pool"]["made"]
    levels = list(start["levels"])  # easy to hard, as the pool's record lists them
    lines = [
        f"**graded pool** ({start['size']} prompts, an equal share of each level; each prompt probed "
        f"{start['samples']} times: out of reach / mixed / always solved)",
        "",
        "| policy | seeds | whole pool | " + " | ".join(levels) + " | out of reach at the start, reached at the end |",
        "| --- | --- | --- | " + " | ".join("---" for _ in levels) + " | --- |",
        "| starting weights | - | "
        + " | ".join(map(_shares, [start["probe"], *(start["probe_by_kind"][level] for level in levels)]))
        + " | - |",
    ]
    for sampler in sorted({r["sampler"] for r in runs}, key=lambda s: (s != "uniform", s)):
        ended = [r for r in runs if r["sampler"] == sampler]
        whole = _mean_shares([r["probe_end"]["composition"] for r in ended])
        by_level = [_mean_shares([r["probe_end"]["by_kind"][level] for r in ended]) for level in levels]
        reached = [_reached(start["solved"], r["probe_end"]) for r in ended]
        lines.append(
            f"| {sampler} | {len(ended)} | "
            + " | ".join(map(_shares, [whole, *by_level]))
            + f" | {100 * sum(reached) / len(reached):.0f}% |"
        )
    return "\n".join([*lines, ""])


def _shares(composition: dict) -> str:
    return " / ".join(f"{100 * composition[kind]:.0f}%" for kind in KINDS)


def _mean_shares(compositions: list[dict]) -> dict[str, float]:
    return {kind: sum(c[kind] for c in compositions) / len(compositions) for kind in KINDS}


def _reached(start_solved: list[int], end: dict) -> float:
    """Of the pool prompts none of the starting samples solved, the share the end probe solved at least once."""
    end_solved = dict(zip(end["ids"], end["solved"]))
    out_of_reach = [index for index, solved in enumerate(start_solved) if solved == 0]
    return sum(end_solved[index] > 0 for index in out_of_reach) / len(out_of_reach) if out_of_reach else 0.0


def kind_shares(pool: dict, key: str) -> list[str]:
    """'add 10% / 80% / 10% (n 40)' for each problem kind a pool's record measured under `key`."""
    return [f"{kind} {_shares(shares)} (n {shares['prompts']})" for kind, shares in pool[key].items()]


def machines_markdown(results: list[dict], unpaired: int, baseline: str = "uniform") -> str:
    """Which machines contributed, and the pairing rule in one sentence."""
    lines = ["Runs made on (CPU signature, warm-start digest):", ""]
    lines += [f"- {signature}, start {start or 'none'}: {n} runs" for signature, start, n in machines(results)]
    left_out = f"; {unpaired} runs have no {baseline} run to pair with and are left out of the paired table"
    rule = "A seed's runs are paired only when made on one CPU signature from one warm-start, never across signatures"
    lines += ["", rule + (left_out if unpaired else "") + ".", ""]
    return "\n".join(lines)


def write_report(folder: Path) -> str:
    """race.md, race.json, race.csv and race_<regime>.png in `folder`, from its ledger (`folder/runs`) alone."""
    results = Ledger(folder).records()
    if not results:
        raise ValueError(f"{folder / 'runs'} holds no finished runs to report")
    pools = {r["regime"]: r["pool"]["size"] for r in results}
    table = summarise(results)
    paired = paired_summary(results)
    made = pools_made(results)
    variants = insight_variants_summary(results)
    parts = [
        markdown(table, pools),
        paired_markdown(paired),
        *([paired_markdown(variants, baseline="insight")] if variants else []),
        machines_markdown(results, unpaired_runs(results)),
    ]
    graded = graded_markdown(results)
    text = "\n".join([*([pools_markdown(made, table)] if made else []), *([graded] if graded else []), *parts])
    (folder / "race.md").write_text(text)
    summary = {
        "pools": pools,
        **({"pools_made": made} if made else {}),
        "summary": table,
        "paired": paired,
        **({"paired_vs_insight": variants} if variants else {}),
    }
    (folder / "race.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_csv(results, folder / "race.csv")
    for regime in table:
        plot(results, regime, folder / f"race_{regime}.png")
    return text
