"""Countdown: verifier, generator, solver, loaders, prompts and the registry."""

import ast
import json
import sys
import time
import types
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from text_edits import apply_edits, random_edits

from tasks import TASKS, CountdownTask, Score, Task, build_task, register_task
from tasks.arithmetic import ArithmeticSyntaxError, parse_expression
from tasks.countdown import countdown_reward, generate_problems, problem_key, solve

EXAMPLE = {"id": 0, "nums": [44, 19, 35], "target": 98}  # 98 = 44 + 19 + 35
FUZZ_TASK = CountdownTask(train_size=16, test_size=4, seed=11)
FUZZ_PROBLEMS = generate_problems(32, seed=5)


@pytest.fixture(scope="module")
def task() -> CountdownTask:
    return CountdownTask(train_size=64, test_size=32, seed=3)


# ---------------------------------------------------------------- verifier


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        ("<answer>44 + 19 + 35</answer>", 1.0),
        ("<answer>  (44 + 19) + 35\n</answer>", 1.0),
        ("<answer>35+19+44</answer>", 1.0),
        ("<answer>-(-44 - 19) + 35</answer>", 1.0),
        ("<think>try 44 + 19 = 63, 63 + 35 = 98</think>\n<answer> 44 + 19 + 35 </answer>", 1.0),
        ("<answer>1 + 2</answer> then <answer>44 + 19 + 35</answer> trailing text", 1.0),
        ("<answer>44 + 19 + 35</answer> no, <answer>44 - 19 + 35</answer>", 0.1),  # the last answer counts
        ("<answer>44 + 19 + 35</answer><answer>junk", 1.0),  # an unclosed tag after the last answer is ignored
        ("<answer>junk <answer>44 + 19 + 35</answer>", 1.0),  # the nearest opening tag counts
        ("<answer>44 + 19 - 35</answer>", 0.1),  # wrong value
        ("<answer>44 + 19</answer>", 0.1),  # missing number
        ("<answer>44 + 19 + 35 - 1 + 1</answer>", 0.1),  # extra numbers, right value
        ("<answer>44 + 19 + 35 + 0</answer>", 0.1),  # extra zero
        ("<answer>44 + 44 + 10</answer>", 0.1),  # reused number, right value
        ("<answer>98</answer>", 0.1),
        ("<answer></answer>", 0.1),  # empty answer
        ("<answer>   </answer>", 0.1),
        ("<answer>__import__('os').system('x')</answer>", 0.1),  # injection attempt
        ("<answer>44 + 19 + 35 ** 1</answer>", 0.1),
        ("<answer>44.0 + 19 + 35</answer>", 0.1),
        ("<answer>44 + 19 + 35 + 1/0</answer>", 0.1),  # division by zero
        ("<answer>(44 + 19 + 35) * (35 - 35) / 0</answer>", 0.1),
        ("<answer>\uff14\uff14 + 19 + 35</answer>", 0.1),  # fullwidth digits
        ("<answer>44 + 19 + 35 \u2260 0</answer>", 0.1),
        ("44 + 19 + 35", 0.0),  # no tags
        ("answer: 44 + 19 + 35", 0.0),
        ("<answer>44 + 19 + 35", 0.0),  # not closed
        ("44 + 19 + 35</answer>", 0.0),  # not opened
        ("</answer>44 + 19 + 35<answer>", 0.0),  # tags reversed
        ("<ANSWER>44 + 19 + 35</ANSWER>", 0.0),
        ("", 0.0),
        ("\u00e9\u6f22\u5b57\U0001f600 <answer>44+19+35</answer> \U0001f600", 1.0),  # unicode around
        ("<answer>" + "1 + " * 100 + "44 + 19 + 35</answer>", 0.1),  # answer over 256 characters
    ],
)
def test_verifier_table(task, completion, reward):
    score = task.score(completion, EXAMPLE)
    assert isinstance(score, Score)
    assert score.reward == reward
    assert score.correct is (reward == 1.0)


def test_exact_fraction_arithmetic():
    assert countdown_reward("<answer>8 / (3 - 8 / 3)</answer>", [3, 3, 8, 8], 24) == 1.0  # non-integer steps
    assert countdown_reward("<answer>1 / 3 * 3</answer>", [1, 3, 3, 3], 1) == 0.1  # one 3 unused
    assert countdown_reward("<answer>1 / 3 + 1 / 3 + 1 / 3</answer>", [1, 1, 1, 3, 3, 3], 1) == 1.0
    assert countdown_reward("<answer>1 / 3 + 1 / 3</answer>", [1, 1, 3, 3], 1) == 0.1  # 2/3


def test_format_score_is_configurable():
    task = CountdownTask(train_size=1, test_size=1, format_score=0.0)
    assert task.score("<answer>1 + 1</answer>", EXAMPLE) == Score(0.0, False)
    with pytest.raises(ValueError, match="format_score"):
        CountdownTask(format_score=1.0)


@pytest.mark.parametrize(
    "example",
    [
        {},
        {"nums": [1, 2]},
        {"target": 3},
        {"nums": "12", "target": 3},
        {"nums": [], "target": 3},
        {"nums": [1, "2"], "target": 3},
        {"nums": [1, 2], "target": 2.5},
        {"nums": [1, -2], "target": 3},
    ],
)
def test_bad_example_rows_raise_value_error(task, example):
    with pytest.raises(ValueError, match="Countdown example"):
        task.score("<answer>1 + 2</answer>", example)


def test_megabyte_completions_are_fast(task):
    filler = "x" * 1_000_000
    solution = task.solution(EXAMPLE)
    cases = {
        filler: 0.0,  # no tags: two full scans
        "</answer>" + filler: 0.0,  # closing tag first: no opening tag before it
        "<answer>" + filler + "</answer>": 0.1,  # huge answer: refused by length, never parsed
        filler + solution: 1.0,
        (solution + " ") * 40_000 + "<answer>" + "(" * 40: 1.0,
    }
    for completion, reward in cases.items():
        assert len(completion) >= 1_000_000
        assert task.score(completion, EXAMPLE).reward == reward
    repeats = 200
    start = time.perf_counter()
    for completion in cases:
        for _ in range(repeats):
            task.score(completion, EXAMPLE)
    average = (time.perf_counter() - start) / (repeats * len(cases))
    assert average < 2e-3, f"{average * 1e3:.3f} ms per 1 MB completion"  # ~0.15 ms measured; a regex is ~10x


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_random_text_never_raises(text):
    for completion in (text, f"<answer>{text}</answer>", f"<answer>{text}", f"{text}</answer>"):
        score = FUZZ_TASK.score(completion, EXAMPLE)
        assert score.reward in (0.0, 0.1, 1.0)
        assert score.correct is (score.reward == 1.0)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(FUZZ_PROBLEMS),
    random_edits("0123456789+-*/() x<>/", max_position=60, max_size=4),
)
def test_mutated_answers_are_verified_soundly(problem, edits):
    completion = FUZZ_TASK.solution(problem)
    completion = apply_edits(completion, edits)
    score = FUZZ_TASK.score(completion, problem)
    assert score.correct is (score.reward == 1.0)
    if score.correct:  # a correct verdict must be true: check it independently of the verifier's control flow
        end = completion.rfind("</answer>")
        answer = completion[completion.rfind("<answer>", 0, end) + len("<answer>") : end]
        expr = parse_expression(answer)
        assert Counter(expr.numbers()) == Counter(problem["nums"])
        assert expr.evaluate() == problem["target"]


# ---------------------------------------------------------------- generator and solver


def test_generator_is_deterministic_and_sized():
    first = CountdownTask(train_size=50, test_size=20, seed=7)
    second = CountdownTask(train_size=50, test_size=20, seed=7)
    other = CountdownTask(train_size=50, test_size=20, seed=8)
    for split, size in (("train", 50), ("test", 20)):
        assert first.examples(split) == second.examples(split)
        assert len(first.examples(split)) == size
        assert [e["id"] for e in first.examples(split)] == list(range(size))
    assert first.examples("train") != other.examples("train")
    assert generate_problems(10, seed=1) == generate_problems(10, seed=1)


def test_generated_problems_are_valid(task):
    train, test = task.examples("train"), task.examples("test")
    assert not {problem_key(e) for e in train} & {problem_key(e) for e in test}
    assert len({problem_key(e) for e in train}) == len(train)
    for example in train + test:
        assert set(example) == {"id", "nums", "target", "solution"}
        assert 3 <= len(example["nums"]) <= 4
        assert all(1 <= n <= 99 for n in example["nums"])
        assert 1 <= example["target"] <= 100
        assert task.score(task.solution(example), example) == Score(1.0, True)


def test_generator_options_are_honoured():
    problems = generate_problems(40, seed=2, min_numbers=2, max_numbers=2, max_number=9, max_target=20)
    assert all(len(p["nums"]) == 2 and max(p["nums"]) <= 9 and 1 <= p["target"] <= 20 for p in problems)
    exclude = {problem_key(p) for p in problems[:20]}
    fresh = generate_problems(20, seed=2, min_numbers=2, max_numbers=2, max_number=9, max_target=20, exclude=exclude)
    assert not {problem_key(p) for p in fresh} & exclude


def test_generator_reports_an_exhausted_space():
    with pytest.raises(ValueError, match="Could only generate"):
        generate_problems(50, seed=0, min_numbers=1, max_numbers=1, max_number=3, max_target=3)


def test_generation_runs_once_per_split(monkeypatch):
    calls = []
    task = CountdownTask(train_size=5, test_size=5)
    original = CountdownTask.build_examples

    def counting(self, split):
        calls.append(split)
        return original(self, split)

    monkeypatch.setattr(CountdownTask, "build_examples", counting)
    for _ in range(3):
        task.examples("train")
        task.examples("test")
    assert Counter(calls) == {"train": 1, "test": 1}


def test_solver_finds_generated_problems_and_rejects_impossible(task):
    for example in task.examples("test"):
        expr = solve(example["nums"], example["target"])
        assert expr is not None
        assert countdown_reward(f"<answer>{expr}</answer>", example["nums"], example["target"]) == 1.0
    assert solve([1, 1, 1], 100) is None
    assert solve([2, 3], 6) in ("2 * 3", "3 * 2")
    assert solve([7], 7) == "7"
    assert solve([3, 3, 8, 8], 24) is not None  # needs fractions: 8 / (3 - 8 / 3)


def test_solver_is_fast_on_four_numbers():
    start = time.perf_counter()
    assert solve([97, 89, 83, 79], 1) is None  # exhaustive search, no solution
    assert time.perf_counter() - start < 0.5  # ~15 ms measured


def test_solution_uses_row_field_or_solver(task):
    assert task.solution({"nums": [1, 2], "target": 3, "solution": "2 + 1"}) == "<answer>2 + 1</answer>"
    assert task.score(task.solution({"nums": [4, 5, 6], "target": 26}), {"nums": [4, 5, 6], "target": 26}).correct
    assert task.solution({"nums": [1, 1, 1], "target": 100}) is None


# ---------------------------------------------------------------- prompts


def test_prompt_templates():
    example = {"nums": [50, 25, 3, 7], "target": 82}
    text = CountdownTask(template="tinyzero").prompt(example)
    assert "User: Using the numbers [50, 25, 3, 7], create an equation that equals 82." in text
    assert text.endswith("Assistant: Let me solve this step by step.\n<think>")
    chat = CountdownTask(template="chat").prompt(example)
    assert chat == [{"role": "user", "content": chat[0]["content"]}]
    assert "[50, 25, 3, 7]" in chat[0]["content"] and "<answer> (1 + 2) / 3 </answer>" in chat[0]["content"]
    compact = CountdownTask(template="compact").prompt(example)
    assert compact == "82 from 50 25 3 7:"
    *shot, question = CountdownTask(template="one_shot").prompt(example)
    assert [m["role"] for m in shot] == ["user", "assistant"] and question["role"] == "user"
    assert "[50, 25, 3, 7]" in question["content"] and "82" in question["content"]
    # The worked answer scores 1 under the task's own reward: the example teaches a format that is rewarded.
    assert CountdownTask().score(shot[1]["content"], {"nums": [6, 3], "target": 2}).correct
    *shots, question = CountdownTask(template="few_shot").prompt(example)
    assert [m["role"] for m in shots] == ["user", "assistant"] * 4 and "[50, 25, 3, 7]" in question["content"]
    operators = set()
    for ask, answer in zip(shots[::2], shots[1::2]):
        nums = ast.literal_eval(ask["content"].split("numbers ")[1].split("]")[0] + "]")
        target = int(ask["content"].split("equals ")[1].split(".")[0])
        assert CountdownTask().score(answer["content"], {"nums": nums, "target": target}).correct, answer
        operators |= set(answer["content"].split("<answer>")[1]) & set("+-*/")
    assert operators == set("+-*/")  # one example per operator, so no single operator is the one copied
    *short_shots, short_question = CountdownTask(template="few_shot_short").prompt(example)
    # The same four solved examples; only the first states the rules, the rest (and the problem) are short.
    assert [m["content"] for m in short_shots[1::2]] == [m["content"] for m in shots[1::2]]
    assert short_shots[0] == shots[0] and all("equals" not in m["content"] for m in short_shots[2::2])
    assert short_question == {"role": "user", "content": "Numbers [50, 25, 3, 7], target 82."}
    with pytest.raises(ValueError, match="tinyzero, chat, one_shot, few_shot, few_shot_short, compact"):
        CountdownTask(template="fancy")


def test_compact_prompts_and_solutions_stay_short(task):
    compact = CountdownTask(train_size=300, test_size=100, template="compact")
    for example in compact.examples("train") + compact.examples("test"):
        assert len(compact.prompt(example)) <= 30
        assert len(compact.solution(example)) <= 38  # 4 two-digit numbers, 3 ops, 2 paren pairs, 17 tag chars


# ---------------------------------------------------------------- loading files


ROWS = [
    {"nums": [44, 19, 35], "target": 98},
    {"nums": [1, 2], "target": "x"},  # broken: target not an integer
    {"target": 5},  # broken: no nums
    {"nums": [3.0, 4, 5], "target": 12.0, "extra": "kept"},  # integral floats are accepted
    {"nums": [], "target": 3},  # broken: empty nums
    {"nums": [6, 7, 8], "target": 21, "id": 1234},
    {"nums": [9, 10], "target": 19},
]


def _write_jsonl(path, rows, garbage_line=True):
    lines = [json.dumps(row) for row in rows]
    if garbage_line:
        lines.insert(2, "{not json")
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return str(path)


def test_jsonl_loader_skips_broken_rows(tmp_path):
    path = _write_jsonl(tmp_path / "train.jsonl", ROWS)
    task = CountdownTask(train_file=path, test_size=4, seed=1)
    with pytest.warns(UserWarning, match=r"Skipped 4 broken Countdown rows .*\[1, 2, 3, 5\]"):
        train = task.examples("train")
    assert [e["id"] for e in train] == [0, 1, 2, 3]
    assert [e["nums"] for e in train] == [[44, 19, 35], [3, 4, 5], [6, 7, 8], [9, 10]]
    assert train[1]["extra"] == "kept" and train[1]["target"] == 12
    assert all(task.score(task.solution(e), e).correct for e in train)
    test = task.examples("test")  # generated, and never one of the train file's problems
    assert len(test) == 4 and not {problem_key(e) for e in test} & {problem_key(e) for e in train}


def test_json_array_and_size_limit(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"nums": [i, 1], "target": i + 1} for i in range(1, 30)]), encoding="utf-8")
    task = CountdownTask(train_file=str(path), train_size=10, test_file=str(path), test_size=5)
    train, test = task.examples("train"), task.examples("test")
    assert [e["nums"][0] for e in train] == list(range(1, 11))
    assert [e["nums"][0] for e in test] == list(range(11, 16))  # the same source: test rows follow train rows
    assert [e["id"] for e in test] == list(range(5))


def test_parquet_loader_skips_broken_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"nums": [[1, 2, 3], None, [], [4, 5, 6], [7, 8]], "target": [6, 3, 5, None, 15]})
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path)
    task = CountdownTask(train_size=2000, test_file=str(path))
    with pytest.warns(UserWarning, match=r"Skipped 3 broken Countdown rows"):
        test = task.examples("test")
    assert [(e["id"], e["nums"], e["target"]) for e in test] == [(0, [1, 2, 3], 6), (1, [7, 8], 15)]


def test_all_broken_rows_raise(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"nums": [], "target": 1}, {"x": 1}])
    with pytest.raises(ValueError, match="no valid Countdown rows"):
        CountdownTask(train_file=path).examples("train")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CountdownTask(train_file=str(tmp_path / "nope.jsonl")).examples("train")
    (tmp_path / "rows.csv").write_text("nums,target\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported format"):
        CountdownTask(train_file=str(tmp_path / "rows.csv")).examples("train")


def test_dataset_name_without_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    task = CountdownTask(train_file="Jiayi-Pan/Countdown-Tasks-3to4")
    with pytest.raises(ImportError, match=r"`datasets` package is not installed.*local \.jsonl/\.parquet"):
        task.examples("train")


def test_dataset_name_offline(monkeypatch):
    def load_dataset(name, split):
        raise ConnectionError("offline")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(ValueError, match="not available offline.*local"):
        CountdownTask(test_file="Jiayi-Pan/Countdown-Tasks-3to4").examples("test")


def test_dataset_name_loads_through_datasets(monkeypatch):
    rows = [{"target": 98, "nums": [44, 19, 35]}, {"target": 10, "nums": [2, 5]}, {"target": 3, "nums": [1, 2]}]
    fake = types.SimpleNamespace(load_dataset=lambda name, split: rows if split == "train" else [])
    monkeypatch.setitem(sys.modules, "datasets", fake)
    name = "Jiayi-Pan/Countdown-Tasks-3to4"
    task = CountdownTask(train_file=name, test_file=name, train_size=2, test_size=5)
    assert [e["target"] for e in task.examples("train")] == [98, 10]
    assert [e["target"] for e in task.examples("test")] == [3]


# ---------------------------------------------------------------- task interface and registry


def test_unknown_split(task):
    with pytest.raises(ValueError, match="available splits: train, test"):
        task.examples("validation")


def test_registry():
    assert TASKS["countdown"] is CountdownTask and CountdownTask.name == "countdown"
    built = build_task("countdown", test_size=8)
    assert isinstance(built, CountdownTask) and len(built.examples("test")) == 8
    with pytest.raises(ValueError, match=r"Unknown task 'nope'\. Registered tasks: .*countdown"):
        build_task("nope")


def test_register_task_rejects_a_duplicate_name():
    class Other(Task):
        def build_examples(self, split):
            return []

        def prompt(self, example):
            return ""

        def score(self, completion, example):
            return Score(0.0, False)

    with pytest.raises(ValueError, match="already registered"):
        register_task("countdown")(Other)
    assert register_task("countdown")(CountdownTask) is CountdownTask  # re-registering the same class is fine
    try:
        assert register_task("test-other")(Other) is Other and build_task("test-other").solution({}) is None
    finally:
        TASKS.pop("test-other", None)


def test_constructor_validation():
    with pytest.raises(ValueError, match="min_numbers"):
        CountdownTask(min_numbers=5, max_numbers=4)
    with pytest.raises(ValueError, match="train_size"):
        CountdownTask(train_size=-1)


def test_parse_errors_in_answers_are_syntax_errors():
    with pytest.raises(ArithmeticSyntaxError):
        parse_expression("44 + 19 + 35 ** 1")
