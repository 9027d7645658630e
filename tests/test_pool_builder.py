"""Difficulty-mix pools built from a probe: stated composition, proven out-of-reach problems, the ordinary test split,
and how a race passes and records them."""

import hashlib
import json
import re
import zlib

import pytest
import yaml
from conftest import ScriptedArithmetic

from insight_lightning.race.cpu_signature import cpu_signature
from insight_lightning.race.ledger import identity
from insight_lightning.race.plan import PROBE_CALLBACK, RaceSettings, RunSpec, pool_args, run_args
from insight_lightning.race.pool_builder import (
    CANDIDATES_PER_PROMPT,
    build_pools,
    proven_out_of_reach,
    warm_start_problems,
)
from insight_lightning.race.pools import GRADED, GRADED_LEVELS, KINDS, MIXES, level_counts
from insight_lightning.race.report import graded_markdown, pools_made, pools_markdown, summarise
from insight_lightning.race.runner import check_pools, pool_record
from insight_lightning.rollout.engine import SamplingParams
from insight_lightning.training.warmstart import WarmStartConfig
from tasks import CountdownTask, MathTask
from tasks.countdown_problems import problem_key, solve, unreachable

SAMPLES = 4
COMPACT = re.compile(r"(\d+) from ([\d ]+):")


def right_answers(prompt: str) -> int:
    """How many of its samples the scripted policy answers right: a fixed function of the prompt, 0..SAMPLES."""
    return zlib.crc32(prompt.encode()) % (SAMPLES + 1)


class SolvingPolicy:
    """Answers a compact Countdown prompt with the exact solver's answer in its first right_answers(prompt) samples."""

    pad_token_id = 0

    def sample(self, prompts, n, params):
        completions = []
        for prompt in prompts:
            target, nums = COMPACT.fullmatch(prompt).groups()
            answer = solve([int(x) for x in nums.split()], int(target))
            right = right_answers(prompt) if answer is not None else 0
            completions += [f"<answer>{answer}</answer>"] * right + ["<answer>1+1</answer>"] * (n - right)
        return None, completions


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    task = CountdownTask(train_size=20, test_size=30, max_number=20, max_target=40, template="compact")
    folder = tmp_path_factory.mktemp("pools")
    made = build_pools(task, SolvingPolicy(), SamplingParams(), list(MIXES), 20, folder, samples=SAMPLES)
    return task, folder, made


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_pool_has_its_stated_composition_on_a_second_probe(built):
    task, folder, made = built
    for regime, shares in MIXES.items():
        record = made[regime]
        assert json.loads((folder / f"{regime}.json").read_text()) == record
        pool = rows(folder / f"{regime}.jsonl")
        assert [row["id"] for row in pool] == list(range(20)) and len({problem_key(r) for r in pool}) == 20
        assert record["sha256"] == hashlib.sha256((folder / f"{regime}.jsonl").read_bytes()).hexdigest()
        probed = record["probe"]
        assert {kind: probed[kind] for kind in KINDS} == {kind: shares.get(kind, 0) for kind in KINDS}
        # out of reach means proven so: no answer can reach the target; the rest the policy solves as the kind says
        hard = [row for row in pool if unreachable(row["nums"], row["target"])]
        assert len(hard) == 20 * shares.get("out_of_reach", 0)
        solved = [row for row in pool if row not in hard and right_answers(task.prompt(row)) == SAMPLES]
        assert len(solved) == 20 * shares.get("solved", 0)
        assert all(0 < right_answers(task.prompt(row)) < SAMPLES for row in pool if row not in hard + solved)
        proven = "proven unreachable by the exact solver"
        assert record["out_of_reach_source"] == (proven if shares.get("out_of_reach") else "none")
        assert record["candidates"]["prompts"] == CANDIDATES_PER_PROMPT * 20
    assert rows(folder / "mix25.jsonl") != rows(folder / "mix75.jsonl")


def test_pools_keep_the_ordinary_test_split_and_never_overlap_it(built):
    task, folder, _ = built
    test = rows(folder / "test.jsonl")
    assert test == task.examples("test")
    # the task a run builds reads the same test split back from the file
    reread = CountdownTask(
        train_size=20, test_size=30, train_file=str(folder / "mix50.jsonl"), test_file=str(folder / "test.jsonl")
    )
    assert [problem_key(r) for r in reread.examples("test")] == [problem_key(r) for r in test]
    test_keys = {problem_key(r) for r in test}
    for regime in MIXES:
        assert not test_keys & {problem_key(r) for r in rows(folder / f"{regime}.jsonl")}


def test_no_pool_takes_a_problem_the_starting_weights_were_trained_on(built, tmp_path):
    task, folder, _ = built
    before = {problem_key(row) for row in rows(folder / "mix25.jsonl")}
    trained_on = before | warm_start_problems(task, WarmStartConfig(num_examples=50, seed=1))
    assert len(trained_on) > len(before)  # the warm-start's problems, keyed as the pools are
    build_pools(task, SolvingPolicy(), SamplingParams(), ["mix25"], 20, tmp_path, SAMPLES, trained_on=trained_on)
    assert not {problem_key(row) for row in rows(tmp_path / "mix25.jsonl")} & trained_on
    assert warm_start_problems(task, None) == set()


def test_out_of_reach_is_proven_only_where_the_task_can_prove_it():
    assert proven_out_of_reach(MathTask(train_size=2, test_size=1), 3, 0, set()) is None
    problems = proven_out_of_reach(CountdownTask(train_size=2, test_size=1), 5, 0, set())
    assert len(problems) == 5 and all(unreachable(p["nums"], p["target"]) for p in problems)


def test_unknown_regimes_and_too_few_candidates_of_a_kind_are_one_sentence(tmp_path):
    task = CountdownTask(train_size=2, test_size=1, template="compact")
    with pytest.raises(ValueError, match="unknown difficulty-mix regimes \\['mix60'\\]"):
        build_pools(task, SolvingPolicy(), SamplingParams(), ["mix60"], 4, tmp_path)
    with pytest.raises(ValueError, match="the pool needs 5 solved prompts but the probe found 0 among the candidates"):
        # the scripted policy answers at most SAMPLES of its samples right: never all 16, as the tiny policy
        build_pools(task, SolvingPolicy(), SamplingParams(), ["solved50"], 10, tmp_path, samples=16)


def test_a_mix_regime_trains_on_its_pool_file_and_evaluates_on_the_test_file(tmp_path):
    settings = RaceSettings(steps=40, prompts_per_step=32, regimes=("mix50",))
    args = run_args(settings, RunSpec("mix50", "uniform", 0), None, tmp_path / "logs", tmp_path / "pools")
    assert f"--data.task.init_args.train_file={tmp_path / 'pools' / 'mix50.jsonl'}" in args
    assert f"--data.task.init_args.test_file={tmp_path / 'pools' / 'test.jsonl'}" in args
    assert "--data.task.init_args.train_size=98" in args and settings.pool_size("mix50") == settings.pool_size("main")
    assert pool_args(settings, "main", None) == ["--data.task.init_args.train_size=98"]
    with pytest.raises(ValueError, match="the mix50 regime needs its pool built"):
        pool_args(settings, "mix50", None)
    # the order of regimes is the order they run in, not a different race
    assert (
        RaceSettings(regimes=("mix50", "mix25")).fingerprint() == RaceSettings(regimes=("mix25", "mix50")).fingerprint()
    )


def test_the_ledger_records_the_pool_by_its_hash_and_how_it_was_made(built, tmp_path):
    _, folder, made = built
    log_dir = tmp_path / "version_0"
    log_dir.mkdir()
    init_args = {
        "train_size": 20,
        "seed": 0,
        "train_file": str(folder / "mix50.jsonl"),
        "test_file": str(folder / "test.jsonl"),
    }
    config = {"data": {"task": {"class_path": "tasks.CountdownTask", "init_args": init_args}}}
    (log_dir / "config.yaml").write_text(yaml.safe_dump(config))
    record = pool_record(log_dir)
    assert record["sha256"] == made["mix50"]["sha256"] and record["made"] == made["mix50"]
    assert record["task_args"]["train_file"] == "mix50.jsonl" and record["task_args"]["test_file"] == "test.jsonl"
    ledger_run = {"regime": "mix50", "pool": record, "machine": cpu_signature(), "start": "abc"}
    here = identity(ledger_run)
    check_pools([ledger_run], here, folder)  # the same pool: accepted
    other = {**ledger_run, "pool": {**record, "sha256": "0" * 64}}
    with pytest.raises(ValueError, match="the mix50 pool in .* differs from the one the ledger's runs"):
        check_pools([other], here, folder)
    check_pools([other], ("another machine", "abc"), folder)  # another machine's runs pair only among themselves


def test_the_report_states_each_pool_and_the_zero_variance_share_uniform_draws(built):
    _, _, made = built
    pool = {"size": 20, "sha256": made["mix50"]["sha256"], "made": made["mix50"]}

    def run(sampler, zero_variance):
        accuracy = [[0, 0.1], [10, 0.2]]
        return {"regime": "mix50", "sampler": sampler, "seed": 0, "pool": pool, "accuracy": accuracy, "rollouts": 80,
                "wall_s": 1.0, "zero_variance_share": zero_variance, "unseen_share": [[1, 1.0], [2, 0.0]]}  # fmt: skip

    results = [run("uniform", [[1, 0.5], [2, 0.7]]), run("insight", [[1, 0.5], [2, 0.1]])]
    assert pools_made(results) == {"mix50": [made["mix50"]]}
    text = pools_markdown(pools_made(results), summarise(results))
    sha = made["mix50"]["sha256"][:12]
    assert (
        f"| mix50 | 20 | 50% / 50% / 0% | 50.0% / 50.0% / 0.0% | proven unreachable by the exact solver | 4 | {sha} "
        "| 60% |" in text
    )
    assert pools_markdown({}, summarise(results)) == ""


ADDER = ScriptedArithmetic(lambda problem, n: n - 1 if "+" in problem else 0)
"""A model that can add (right in all but one sample) and never multiplies right."""


def test_a_math_pool_records_which_problem_kinds_are_out_of_reach(tmp_path):
    task = MathTask(kinds=("add", "mul"), train_size=8, test_size=10, max_number=30)
    made = build_pools(task, ADDER, SamplingParams(), ["mix50"], 8, tmp_path, samples=SAMPLES)["mix50"]
    assert made["out_of_reach_source"] == "the probe"
    candidates = made["candidates_by_kind"]
    assert sum(shares["prompts"] for shares in candidates.values()) == CANDIDATES_PER_PROMPT * 8
    assert candidates["add"]["mixed"] == 1 and candidates["mul"]["out_of_reach"] == 1
    pool = rows(tmp_path / "mix50.jsonl")
    assert made["probe_by_kind"]["mul"]["prompts"] == sum(row["kind"] == "mul" for row in pool) == 4
    assert made["probe_by_kind"]["add"]["mean_share"] == (SAMPLES - 1) / SAMPLES
    shown = pools_markdown({"mix50": [made]}, {})
    assert f"- mix50 ({made['sha256'][:12]}): add 0% / 100% / 0% (n {candidates['add']['prompts']})" in shown
    assert "The pool itself, second probe: add 0% / 100% / 0% (n 4); mul 100% / 0% / 0% (n 4)" in shown


def test_countdown_pools_have_no_problem_kinds(built):
    _, _, made = built
    assert not {"candidates_by_kind", "probe_by_kind"} & set(made["mix50"])


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    task = CountdownTask(train_size=20, test_size=30, max_number=20, max_target=40, template="compact")
    folder = tmp_path_factory.mktemp("graded")
    made = build_pools(task, SolvingPolicy(), SamplingParams(), ["mix50", GRADED], 20, folder, samples=SAMPLES)
    return task, folder, made


def test_the_graded_pool_holds_every_level_solvable_and_its_own_test_split(graded):
    task, folder, made = graded
    pool, test = rows(folder / "graded.jsonl"), rows(folder / "graded_test.jsonl")
    assert [row["id"] for row in pool] == list(range(20)) and len(test) == len(task.examples("test")) == 30
    assert {level: sum(row["kind"] == level for row in pool) for level in GRADED_LEVELS} == level_counts(20)
    assert set(level_counts(20).values()) == {5} and set(level_counts(30).values()) == {8, 7}
    for row in pool + test:
        numbers, max_target = GRADED_LEVELS[row["kind"]]
        assert len(row["nums"]) == numbers and 1 <= row["target"] <= max_target
        assert solve(row["nums"], row["target"]) is not None  # hard, never impossible
    keys = [problem_key(row) for row in pool + test]
    assert len(set(keys)) == 50 and not set(keys) & {problem_key(row) for row in task.examples("test")}
    assert [row["kind"] for row in pool] != sorted(row["kind"] for row in pool)  # levels shuffled, not in blocks
    record = json.loads((folder / "graded.json").read_text())
    assert (
        record == made[GRADED]
        and record["sha256"] == hashlib.sha256((folder / "graded.jsonl").read_bytes()).hexdigest()
    )
    assert record["solved"] == [right_answers(task.prompt(row)) for row in pool]  # the start probe, prompt by prompt
    assert sorted(record["probe_by_kind"]) == sorted(GRADED_LEVELS) and list(record["levels"]) == list(GRADED_LEVELS)
    assert sum(shares["prompts"] for shares in record["probe_by_kind"].values()) == 20


def test_building_the_graded_pool_beside_a_mix_leaves_the_mix_as_it_was(built, graded):
    # a race's existing mix pools (and the ledger's hashes of them) must not change when graded is built with them
    assert rows(built[1] / "mix50.jsonl") == rows(graded[1] / "mix50.jsonl")


def test_the_graded_regime_is_countdowns_and_its_runs_probe_the_pool_at_the_end(tmp_path):
    with pytest.raises(ValueError, match="the graded regime draws Countdown problems by level; MathTask has no levels"):
        build_pools(MathTask(train_size=2, test_size=2), ADDER, SamplingParams(), [GRADED], 4, tmp_path)
    settings = RaceSettings(steps=40, prompts_per_step=32, regimes=(GRADED,))
    args = run_args(settings, RunSpec(GRADED, "uniform", 0), None, tmp_path / "logs", tmp_path / "pools")
    assert f"--data.task.init_args.train_file={tmp_path / 'pools' / 'graded.jsonl'}" in args
    assert f"--data.task.init_args.test_file={tmp_path / 'pools' / 'graded_test.jsonl'}" in args
    assert f"--trainer.callbacks+={PROBE_CALLBACK}" in args
    mix = run_args(settings, RunSpec("mix50", "uniform", 0), None, tmp_path / "logs", tmp_path / "pools")
    assert not any(PROBE_CALLBACK in arg for arg in mix)


def test_the_report_shows_the_graded_pool_at_the_start_and_after_each_samplers_training(graded):
    _, _, made = graded
    start = made[GRADED]
    pool = {"size": 20, "sha256": start["sha256"], "made": start}
    out_of_reach = [i for i, solved in enumerate(start["solved"]) if solved == 0]
    assert out_of_reach  # the scripted policy leaves some prompts unsolved

    def run(sampler, seed, reached):
        solved = [SAMPLES if i in reached else s for i, s in enumerate(start["solved"])]
        end = {
            "ids": list(range(20)),
            "solved": solved,
            "composition": {"out_of_reach": 0.0, "mixed": 0.5, "solved": 0.5},
            "by_kind": {level: {"out_of_reach": 0.0, "mixed": 1.0, "solved": 0.0} for level in GRADED_LEVELS},
        }
        return {"regime": GRADED, "sampler": sampler, "seed": seed, "pool": pool, "probe_end": end}  # fmt: skip

    text = graded_markdown([run("uniform", 0, set()), run("insight", 0, set(out_of_reach)), run("insight", 1, set())])
    assert f"**graded pool** (20 prompts, an equal share of each level; each prompt probed {SAMPLES} times" in text
    assert "| starting weights | - | " + " / ".join(f"{100 * start['probe'][k]:.0f}%" for k in KINDS) in text
    assert "| policy | seeds | whole pool | " + " | ".join(GRADED_LEVELS) + " |" in text
    # the levels in the order the pool's record lists them (easy to hard), not sorted by name
    backwards = {**pool, "made": {**start, "levels": dict(reversed(start["levels"].items()))}}
    header = graded_markdown([{**run("uniform", 0, set()), "pool": backwards}]).splitlines()[2]
    assert header.startswith("| policy | seeds | whole pool | " + " | ".join(reversed(GRADED_LEVELS)) + " |")
    assert "| uniform | 1 | 0% / 50% / 50% | " + " | ".join(["0% / 100% / 0%"] * 4) + " | 0% |" in text
    assert text.splitlines()[6].startswith("| insight | 2 |") and text.splitlines()[6].endswith("| 50% |")
    assert graded_markdown([{**run("uniform", 0, set()), "regime": "mix50"}]) == ""
