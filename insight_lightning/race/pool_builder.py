"""Building a race's difficulty-mix pools from a probe of the weights the race starts from.

python -m insight_lightning.race.pool_builder --out DIR --regimes mix50 [...] --size N -- FIT ARGUMENTS

Writes, in DIR: test.jsonl (main's test split, which every difficulty mix evaluates on), and per regime REGIME.jsonl
(its pool) and REGIME.json (how it was made, what the probes found, the pool's SHA-256). Candidates are drawn from
the task's generator away from the test split and from the warm-start's supervised problems (as main's pool is),
and probed (K samples each); a pool takes its mixed (and solved) prompts from them. Its out-of-reach prompts are,
for Countdown, problems the exact solver proves unreachable (no answer can ever earn more than the format reward,
so they stay out of reach as the policy learns); for other tasks, candidates the probe found out of reach.

The graded regime (Countdown only) is not composed by the probe: it draws an equal share of solvable problems at
each of ``GRADED_LEVELS``, easy to hard, writes its own test split of the same levels (graded_test.jsonl) and
records the probe of every prompt at the start, which a race compares with a probe of the trained policy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path

import torch

from insight_lightning.race.pools import (
    BUILT_POOLS,
    GRADED,
    GRADED_LEVELS,
    MIXES,
    compose_pool,
    kind_counts,
    kind_of,
    level_counts,
)
from insight_lightning.race.probe import probe
from insight_lightning.rollout.engine import SamplingParams
from insight_lightning.training.experience import RolloutPolicy
from insight_lightning.training.warmstart import WarmStartConfig
from tasks import CountdownTask, Task
from tasks.countdown_problems import generate_problems
from tasks.splits import FileOrGeneratedSplits, split_seed

PROBE_SAMPLES = 16
"""K_probe: samples of each candidate; a prompt is out of reach at 0 of 16 and solved at 16 of 16."""
CANDIDATES_PER_PROMPT = 4
"""Candidates probed per pool prompt: enough mixed ones for the smallest out-of-reach share (about 2 in 3 are mixed)."""


def proven_out_of_reach(task: Task, count: int, seed: int, exclude: set) -> list[dict] | None:
    """`count` problems no answer solves, where the task can prove it (Countdown: the exact solver, with the
    generator's numbers and target range); None for a task that cannot."""
    if not isinstance(task, CountdownTask):
        return None
    return generate_problems(
        count,
        seed,
        task.min_numbers,
        task.max_numbers,
        task.max_number,
        task.max_target,
        exclude=exclude,
        reach="unreachable",
    )


def warm_start_problems(task: Task, config: WarmStartConfig | None) -> set:
    """Keys of the problems a warm-start of `config` trains on (the weights it loads were made with the same
    settings: the race's own warm-start)."""
    if config is None or not isinstance(task, FileOrGeneratedSplits):
        return set()
    return {task.problem_key(row) for row in task.warmstart_examples(config.num_examples, config.seed)}


def graded_problems(task: Task, size: int, seed: int, exclude: set) -> list[dict]:
    """`size` solvable Countdown problems, ``level_counts(size)`` of each graded level (the row's "kind"), in a
    seeded random order; none in `exclude`."""
    if not isinstance(task, CountdownTask):
        raise ValueError(f"the graded regime draws Countdown problems by level; {type(task).__name__} has no levels")
    rows = []
    for level, count in level_counts(size).items():
        numbers, max_target = GRADED_LEVELS[level]
        drawn = generate_problems(
            count, split_seed(task.seed_namespace, seed, level), numbers, numbers, task.max_number, max_target, exclude
        )
        rows += [
            {"nums": row["nums"], "target": row["target"], "solution": row["solution"], "kind": level} for row in drawn
        ]
        exclude = exclude | {task.problem_key(row) for row in drawn}
    random.Random(seed).shuffle(rows)
    return rows


def build_graded(
    task: Task,
    policy: RolloutPolicy,
    params: SamplingParams,
    size: int,
    folder: Path,
    samples: int,
    seed: int,
    taken: set,
) -> dict:
    """The graded pool and its test split (as many problems as the ordinary one, same levels, disjoint), and the
    probe of each pool prompt by the starting policy; writes graded.jsonl, graded_test.jsonl and graded.json."""
    pool = graded_problems(task, size, split_seed(task.seed_namespace, seed, "graded-pool"), taken)
    taken = taken | {task.problem_key(row) for row in pool}
    test_size = len(task.examples("test"))
    test = graded_problems(task, test_size, split_seed(task.seed_namespace, seed, "graded-test"), taken)
    pool = [{**row, "id": index} for index, row in enumerate(pool)]
    sha256 = write_rows(pool, folder / f"{GRADED}.jsonl")
    test_sha256 = write_rows([{**row, "id": index} for index, row in enumerate(test)], folder / f"{GRADED}_test.jsonl")
    torch.manual_seed(seed + 1)
    found = probe(policy, task, pool, samples, params)
    made = {
        "levels": {level: list(shape) for level, shape in GRADED_LEVELS.items()},
        "size": size,
        "samples": samples,
        "seed": seed,
        "probe": found.composition(),
        "probe_by_kind": found.composition_by_kind(pool),
        "solved": found.solved.tolist(),
        "sha256": sha256,
        "test_sha256": test_sha256,
    }
    (folder / f"{GRADED}.json").write_text(json.dumps(made, indent=1) + "\n")
    return made


def write_rows(rows: list[dict], path: Path) -> str:
    """Rows as JSON lines; returns the file's SHA-256 (its content hash, as the ledger records it)."""
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def build_pools(
    task: Task,
    policy: RolloutPolicy,
    params: SamplingParams,
    regimes: list[str],
    size: int,
    folder: Path,
    samples: int = PROBE_SAMPLES,
    seed: int = 0,
    trained_on: set | None = None,
) -> dict[str, dict]:
    """Probe candidates, compose each regime's pool of `size` prompts, re-probe it; write the files (module doc).

    `trained_on` holds the keys of the problems the starting weights were trained on: no pool takes one of them.
    """
    if not isinstance(task, FileOrGeneratedSplits):
        raise ValueError(f"difficulty-mix pools need a task with generated splits, not {type(task).__name__}")
    unknown = [r for r in regimes if r not in BUILT_POOLS]
    if unknown:
        raise ValueError(f"unknown difficulty-mix regimes {unknown}; known: {', '.join(BUILT_POOLS)}")
    folder.mkdir(parents=True, exist_ok=True)
    test = task.examples("test")
    write_rows(test, folder / "test.jsonl")
    taken = {task.problem_key(row) for row in test} | (trained_on or set())
    made = {}
    if GRADED in regimes:  # first, from the same exclusions whatever else is built with it
        made[GRADED] = build_graded(task, policy, params, size, folder, samples, seed, taken)
    regimes = [r for r in regimes if r in MIXES]
    if not regimes:
        return made
    candidates = task.generate(CANDIDATES_PER_PROMPT * size, split_seed(task.seed_namespace, seed, "pool"), taken)
    torch.manual_seed(seed)
    found = probe(policy, task, candidates, samples, params)
    candidates_by_kind = found.composition_by_kind(candidates)
    solved = found.solved.tolist()
    # As many as any regime could take, so that a regime's pool does not depend on the others built with it.
    needed = max(kind_counts(size, shares).get("out_of_reach", 0) for shares in MIXES.values())
    taken |= {task.problem_key(row) for row in candidates}
    proven = proven_out_of_reach(task, needed, split_seed(task.seed_namespace, seed, "out-of-reach"), taken)
    if proven is not None:  # the probe's out-of-reach candidates are replaced by problems proven out of reach
        kept = [i for i, count in enumerate(solved) if kind_of(count, samples) != "out_of_reach"]
        candidates = [candidates[i] for i in kept] + proven
        solved = [solved[i] for i in kept] + [0] * len(proven)
    source = "proven unreachable by the exact solver" if proven is not None else "the probe"
    for regime in regimes:
        pool = compose_pool(candidates, solved, samples, size, MIXES[regime], seed)
        pool = [{**row, "id": index} for index, row in enumerate(pool)]
        sha256 = write_rows(pool, folder / f"{regime}.jsonl")
        torch.manual_seed(seed + 1)  # a second, independent probe: does the stated composition hold?
        second = probe(policy, task, pool, samples, params)
        made[regime] = {
            "shares": MIXES[regime],
            "size": size,
            "samples": samples,
            "seed": seed,
            "out_of_reach_source": source if MIXES[regime].get("out_of_reach") else "none",
            "candidates": found.composition(),
            "probe": second.composition(),
            "sha256": sha256,
        }
        if len(candidates_by_kind) > 1:  # rows of several problem kinds (math): which kinds the policy cannot do yet
            made[regime] |= {
                "candidates_by_kind": candidates_by_kind,
                "probe_by_kind": second.composition_by_kind(pool),
            }
        (folder / f"{regime}.json").write_text(json.dumps(made[regime], indent=1) + "\n")
    return made


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(
        prog="python -m insight_lightning.race.pool_builder",
        description="Compose difficulty-mix pools from a probe of the policy that a fit's config builds.",
    )
    parser.add_argument("--out", required=True, help="folder of the pools, their records and the test split")
    parser.add_argument("--regimes", nargs="+", required=True, choices=BUILT_POOLS, help="pools to build")
    parser.add_argument("--size", type=int, required=True, help="prompts in each pool")
    parser.add_argument("--samples", type=int, default=PROBE_SAMPLES, help="probe samples of each prompt")
    parser.add_argument("--seed", type=int, default=0, help="seed of the candidates, the probes and the draws")
    parser.add_argument("fit_args", nargs="*", help="a fit's config after --, e.g. -- --config countdown.yaml")
    args = parser.parse_args(argv)
    from insight_lightning.cli.app import main as cli_main  # the CLI imports Lightning: only when building

    module = cli_main(args.fit_args, run=False).model
    module.build_policy()
    made = build_pools(
        module.task,
        module.policy,
        module.rollout,
        args.regimes,
        args.size,
        Path(args.out),
        args.samples,
        args.seed,
        warm_start_problems(module.task, module.warm_start_config),
    )
    for regime, record in made.items():
        shares = record["probe"]
        print(
            f"[pools] {regime}: {args.size} prompts, {'probe' if regime == GRADED else 'second probe'} "
            f"{100 * shares['out_of_reach']:.1f}% out of reach, "
            f"{100 * shares['mixed']:.1f}% mixed, {100 * shares['solved']:.1f}% solved"
        )
    return made


if __name__ == "__main__":
    from insight_lightning.cli.app import run_from_command_line

    run_from_command_line(command=main)
