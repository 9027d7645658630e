"""Math: answer extraction, the bounded math-verify check, generator, loaders, prompts and eval splits."""

import ast
import contextlib
import json
import os
import pickle
import re
import signal
import sys
import threading
import time
import types
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from text_edits import apply_edits, random_edits

pytest.importorskip("math_verify")

from tasks import TASKS, CountdownTask, MathTask, Score, build_task  # noqa: E402
from tasks.math import INSTRUCTION  # noqa: E402
from tasks.math_answers import (  # noqa: E402
    MAX_ANSWER_CHARS,
    AnswerTooLong,
    exact_number,
    extract_answer,
    fast_equivalence,
    last_boxed,
    last_number,
)
from tasks.math_problems import KINDS, generate_problems  # noqa: E402

FUZZ_TIMEOUT = 0.25


@pytest.fixture(scope="module")
def task() -> MathTask:
    task = MathTask(train_size=64, test_size=16, seed=3)
    task.checker.start()
    yield task
    task.checker.close()


@pytest.fixture(scope="module")
def fuzz_task() -> MathTask:
    task = MathTask(train_size=16, test_size=4, timeout_seconds=FUZZ_TIMEOUT)
    task.checker.start()
    yield task
    task.checker.close()


# ---------------------------------------------------------------- verifier


@pytest.mark.parametrize(
    ("completion", "gold", "correct"),
    [
        # correct, as written
        ("\\boxed{25}", "25", True),
        ("So 12 + 13 = 25.\n\nThe answer is $\\boxed{25}$.", "25", True),
        ("\\boxed {25}", "25", True),
        ("\\fbox{25}", "25", True),
        ("\\boxed{ 25 }", "25", True),
        ("\\boxed{x^2+1}", "x^2 + 1", True),
        # equivalent forms
        ("\\boxed{25.0}", "25", True),
        ("\\boxed{{25}}", "25", True),
        ("\\boxed{\\frac{50}{2}}", "25", True),
        ("\\boxed{5^2}", "25", True),
        ("\\boxed{0.5}", "\\frac{1}{2}", True),
        ("\\boxed{1/2}", "\\frac{1}{2}", True),
        ("\\boxed{\\dfrac12}", "\\frac{1}{2}", True),
        ("\\boxed{-\\frac{7}{2}}", "-3.5", True),
        ("\\boxed{\\sqrt{12}}", "2\\sqrt{3}", True),
        ("\\boxed{(x+1)^2}", "x^2+2x+1", True),
        ("\\boxed{\\frac{\\pi}{2}}", "\\pi/2", True),
        ("\\boxed{\\frac{5}{\\frac{1}{5}}}", "25", True),  # nested braces
        ("\\boxed{x = 5}", "5", True),
        ("\\boxed{\\text{25}}", "25", True),
        # wrong
        ("\\boxed{24}", "25", False),
        ("\\boxed{-25}", "25", False),
        ("\\boxed{2.5}", "25", False),
        ("\\boxed{\\sqrt{13}}", "2\\sqrt{3}", False),
        ("\\boxed{x}", "25", False),
        ("\\boxed{25} no wait, \\boxed{26}", "25", False),  # the last boxed answer counts
        ("\\boxed{\\frac{1}{3}}", "0.3", False),
        ("\\boxed{(x-1)^2}", "x^2+2x+1", False),
        # malformed
        ("25", "25", False),  # no boxed answer (number_fallback is off)
        ("\\boxed{25", "25", False),  # unclosed
        ("\\boxed{}", "25", False),
        ("\\boxed{   }", "25", False),
        ("boxed{25}", "25", False),
        ("\\boxed25", "25", False),
        ("", "25", False),
        # adversarial
        ("\\boxed{26} then \\boxed{25", "25", False),  # a truncated last box falls back to the earlier one
        ("\\boxed{25} then \\boxed{", "25", True),
        ("\\boxed{25}}}}", "25", True),
        ("\\boxed{__import__('os').system('echo hi')}", "25", False),
        ("\\boxed{\\boxed{25}}", "25", True),
        ("\u00e9\u6f22\u5b57\U0001f600 \\boxed{25} \U0001f600", "25", True),
        ("\\boxed{\u0662\u0665}", "25", False),  # Arabic-Indic digits
        ("\\boxed{" + "1" * (MAX_ANSWER_CHARS + 1) + "}", "25", False),  # over the length cap: never parsed
    ],
)
def test_verifier_table(task, completion, gold, correct):
    score = task.score(completion, {"problem": "p", "answer": gold})
    assert score == Score(1.0 if correct else 0.0, correct)


def test_score_works_on_a_plain_dict_with_numbers(task):
    assert task.score("\\boxed{7}", {"problem": "3+4", "answer": 7}).correct
    with pytest.raises(ValueError, match="'answer'"):
        task.score("\\boxed{7}", {"problem": "3+4"})
    with pytest.raises(ValueError, match="must be a dict"):
        task.score("\\boxed{7}", ["3+4", "7"])


def test_require_think_close():
    task = MathTask(train_size=1, test_size=1, require_think_close=True)
    example = {"problem": "p", "answer": "25"}
    assert task.score("<think>so \\boxed{24}</think> \\boxed{25}", example).correct
    assert not task.score("<think>\\boxed{25}", example).correct  # still thinking: no answer
    assert not task.score("\\boxed{25}</think> I give up", example).correct  # the answer must follow </think>
    assert not task.score("\\boxed{25}", example).correct


@pytest.mark.parametrize(
    ("completion", "correct"),
    [("The answer is 25.", True), ("5 + 20 = 25", True), ("x = -25", False), ("25 or 26", False), ("none", False)],
)
def test_number_fallback(completion, correct):
    task = MathTask(train_size=1, test_size=1, number_fallback=True)
    assert task.score(completion, {"problem": "p", "answer": "25"}).correct is correct
    assert task.score("\\boxed{25} then 26", {"problem": "p", "answer": "25"}).correct  # boxed comes first


def test_megabyte_completions_are_fast(task):
    example = {"problem": "p", "answer": "25"}
    filler = "x" * 1_000_000
    cases = {
        filler: False,
        filler + "\\boxed{25}": True,
        "\\boxed{" * 200_000: False,
        "\\boxed{25}" + "}" * 1_000_000: True,
        "\\boxed{" + filler + "}": False,
        "{" * 1_000_000 + "\\boxed{25}": True,
    }
    start = time.perf_counter()
    for completion, correct in cases.items():
        assert len(completion) >= 1_000_000
        assert task.score(completion, example).correct is correct
    assert (time.perf_counter() - start) / len(cases) < 0.05


SLOW = "\\boxed{(x+y+z)^{200}}"  # passes every guard, and sympy's expansion runs for many seconds


def test_a_slow_check_times_out_is_counted_and_is_not_memoised_off_the_main_thread():
    task = MathTask(train_size=1, test_size=1, timeout_seconds=0.5)
    task.checker.start()
    try:
        results = []

        def work():
            for completion, answer in ((SLOW, "25"), (SLOW, "25"), ("\\boxed{5^2}", "25")):
                start = time.perf_counter()
                score = task.score(completion, {"problem": "p", "answer": answer})
                results.append((score, time.perf_counter() - start))

        thread = threading.Thread(target=work)
        thread.start()
        thread.join(timeout=60)
        (first, seconds), (again, _), (after, _) = results
        assert first == again == Score(0.0, False) and seconds < 2.0
        assert task.timeouts == 2  # the second check of the same answer ran again: a timeout is no verdict
        assert after.correct  # a good check of another answer right after a timeout
    finally:
        task.checker.close()


def _kill(pid: int) -> None:
    """SIGKILL a worker as the OOM killer would, and wait for its death (leaving the checker to reap it)."""
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def _kill_workers(checker) -> None:
    for pid in checker.worker_pids():
        _kill(pid)


def test_killed_workers_are_replaced_and_the_verdict_is_right_and_memoised():
    task = MathTask(train_size=1, test_size=1)
    example = {"problem": "p", "answer": "3"}
    task.checker.start()
    try:
        assert task.score("\\boxed{1+2}", example).correct  # math-verify, not the fast path
        _kill_workers(task.checker)  # as the OOM killer or the memory cap would, between two checks
        checks = task.checker.checks
        assert task.score("\\boxed{2+1}", example).correct
        assert not task.score("\\boxed{2+2}", example).correct
        assert task.checker.restarts >= 1 and task.checker.failures == 0
        assert task.checker.checks == checks + 2
        assert task.score("\\boxed{2+1}", example).correct and task.checker.checks == checks + 2  # memoised
    finally:
        task.checker.close()


def test_a_worker_killed_during_a_check_is_retried_on_a_fresh_one():
    task = MathTask(train_size=1, test_size=1, timeout_seconds=30, verifier_workers=1)
    task.checker.start()
    try:
        threading.Timer(0.3, _kill_workers, (task.checker,)).start()  # the check takes ~2.5 s
        start = time.perf_counter()
        score = task.score("\\boxed{(x+1)^{700}}", {"problem": "p", "answer": "3"})
        assert score == Score(0.0, False) and time.perf_counter() - start < 25
        counts = task.checker
        assert (counts.restarts, counts.checks, counts.failures, counts.timeouts) == (1, 2, 0, 0)
        assert not task.score("\\boxed{(x+1)^{700}}", {"problem": "p", "answer": "3"}).correct
        assert counts.checks == 2  # the retried check gave a real verdict, which is memoised
    finally:
        task.checker.close()


def test_a_worker_that_dies_on_every_attempt_is_a_counted_failure_not_a_verdict():
    task = MathTask(train_size=1, test_size=1, timeout_seconds=30, verifier_workers=1)
    task.checker.retries = 1
    task.checker.start()
    stop = threading.Event()

    def keep_killing():
        while not stop.is_set():
            for pid in task.checker.worker_pids(ready_only=True):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    killer = threading.Thread(target=keep_killing)
    killer.start()
    try:
        assert not task.score("\\boxed{(x+1)^{700}}", {"problem": "p", "answer": "3"}).correct
        assert task.checker.failures == 1 and task.verifier_counts()["failures"] == 1
    finally:
        stop.set()
        killer.join()
    checks = task.checker.checks
    assert not task.score("\\boxed{(x+1)^{700}}", {"problem": "p", "answer": "3"}).correct
    assert task.checker.checks == checks + 1  # the failure was not memoised: checked again, now for real
    task.checker.close()


HOSTILE = [
    "9^{9^{9^9}}",
    "10^{10^{10^{10}}}",
    "1000000!",
    "\\binom{1000000}{500000}",
    "2^{100000000}",
    "(x+1)^{3000}",
    "(" * 490 + "3" + ")" * 490,  # deep but correct
    "{" * 30 + "3" + "}" * 30,  # deep but correct (math-verify alone: minutes)
]


def test_hostile_answers_are_refused_or_collapsed_before_sympy(task):
    completions = [f"\\boxed{{{answer}}}" for answer in HOSTILE]
    refused = task.refused
    start = time.perf_counter()
    scores = task.score_many(completions, [{"problem": "p", "answer": "3"}] * len(HOSTILE))
    assert time.perf_counter() - start < 0.5
    assert [s.correct for s in scores] == [False] * 6 + [True] * 2
    assert task.refused == refused + 6 and task.timeouts == 0


def test_slow_answers_of_a_group_are_checked_in_parallel():
    # As many slow answers as workers: in parallel they cost one deadline, one at a time k. More answers than
    # workers would also time the replacement workers' start (a sympy import), which a loaded machine stretches.
    timeout, k = 1.0, 4
    task = MathTask(train_size=1, test_size=1, timeout_seconds=timeout, verifier_workers=k)
    task.checker.start()
    try:
        assert task.checker.wait_until_ready(60)
        completions = [f"\\boxed{{(x+y+z)^{{{200 + i}}}}}" for i in range(k)]  # distinct: none memoised
        start = time.perf_counter()
        scores = task.score_many(completions, [{"problem": "p", "answer": "3"}] * k)
        elapsed = time.perf_counter() - start
        assert not any(s.correct for s in scores) and task.timeouts == k
        assert elapsed < 0.75 * k * timeout, f"{elapsed:.1f} s for {k} answers"  # one at a time: over k * timeout
    finally:
        task.checker.close()


def test_verdicts_are_memoised(task):
    checks = task.checker.checks
    for _ in range(8):  # K identical answers of a group
        assert task.score("\\boxed{\\sqrt{16}}", {"problem": "p", "answer": "4"}).correct
    assert task.checker.checks == checks + 1


def test_task_pickles_without_its_processes(task):
    clone = pickle.loads(pickle.dumps(task))
    assert clone.checker.timeout_seconds == task.checker.timeout_seconds
    assert clone.score("\\boxed{2^3}", {"problem": "p", "answer": "8"}).correct
    clone.checker.close()


# ---------------------------------------------------------------- extraction and the fast path


def test_last_boxed_and_last_number():
    assert last_boxed("\\boxed{a} \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{a{b}c}") == "a{b}c"
    assert last_boxed("no box") is None
    with pytest.raises(AnswerTooLong):
        last_boxed("\\boxed{" + "x" * 2000 + "}")
    assert last_number("the total is 1,234.") == "1234"
    assert last_number("pairs 1,2,3") == "3"
    assert last_number("x = -3.5") == "-3.5"
    assert last_number("8 - 3") == "3"
    assert last_number("nothing") is None
    assert extract_answer("12 then \\boxed{7}", number_fallback=True) == "7"


@pytest.mark.parametrize(
    ("gold", "answer", "verdict"),
    [
        ("25", "25", True),
        ("25", " 25. ", True),
        ("25", "$25$", True),
        ("25", "{25}", True),
        ("\\frac{1}{2}", "\\dfrac{1}{2}", True),
        ("\\frac{1}{2}", "0.5", True),
        ("\\frac{1}{2}", "2/4", True),
        ("-3", "\\frac{-6}{2}", True),
        ("3", "4", False),
        ("\\frac{1}{2}", "\\frac{1}{3}", False),
        ("1/3", "0.333333", None),  # rounding is math-verify's call
        ("25", "5^2", None),
        ("25", "", False),
        ("1/0", "1/0", True),
        ("2", "4/0", None),
    ],
)
def test_fast_path(gold, answer, verdict):
    assert fast_equivalence(gold, answer) is verdict


def test_exact_number():
    assert exact_number("-\\frac{7}{2}") == (Fraction(-7, 2), False)
    assert exact_number("2.50") == (Fraction(5, 2), True)
    assert exact_number("1,000") is None  # a thousands separator or a pair: math-verify decides
    assert exact_number("x") is None


# ---------------------------------------------------------------- fuzz


def _oracle_value(text: str) -> Fraction | None:
    """An independent exact value of a + - * / ^ expression over decimals, or None if it is anything else."""
    expr = text.replace("{", "(").replace("}", ")").replace("^", "**").strip()
    if not expr or any(c not in "0123456789.+-*/() " for c in expr):
        return None
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return Fraction(ast.get_source_segment(expr, node))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = value(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
            if isinstance(node.op, ast.Pow) and right.denominator == 1 and abs(right) <= 8 and abs(left) < 10**6:
                return left**right
        raise ValueError("outside the oracle's grammar")

    try:
        return value(tree)
    except (ValueError, ZeroDivisionError, TypeError):
        return None


def _oracle_box(text: str) -> str | None:
    """The last closed \\boxed{...} (spaces before the brace allowed, nested braces balanced), from the end."""
    for match in reversed(list(re.finditer(r"\\boxed *\{", text))):
        depth, begin = 0, match.end() - 1
        for index in range(begin, len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                return text[begin + 1 : index]
    return None


_RESTART_ALLOWANCE = 5.0  # a worker replaced after a timeout or a death needs ~1 s (more on a loaded CI box) to start
_last_replacement: dict[int, tuple[int, float]] = {}  # id(task) -> (timeouts + restarts, when that count last rose)


def _timed_score(task, completion, example, restart_allowance=0.0):
    """``task.score`` within its timeout, plus a worker start while a replaced worker may still be starting: with
    every worker restarting (timeouts in a row on a loaded 2-core machine) a check waits for a fresh one."""
    count, when = _last_replacement.get(id(task), (0, -1e9))
    if time.monotonic() - when < _RESTART_ALLOWANCE:
        restart_allowance = _RESTART_ALLOWANCE
    start = time.perf_counter()
    score = task.score(completion, example)
    elapsed = time.perf_counter() - start
    now = task.checker.timeouts + task.checker.restarts
    if now != count:
        _last_replacement[id(task)] = (now, time.monotonic())
        restart_allowance = _RESTART_ALLOWANCE  # this very check may have found a dead worker and waited for a new one
    assert elapsed < FUZZ_TIMEOUT + 0.1 + restart_allowance, f"{elapsed:.3f} s for {completion!r}"
    return score


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_raises_and_is_bounded(fuzz_task, text):
    example = {"problem": "p", "answer": "\\frac{3}{4}"}
    for completion in (text, f"\\boxed{{{text}}}", f"\\boxed{{{text}"):
        score = _timed_score(fuzz_task, completion, example)
        assert score.reward in (0.0, 1.0) and score.correct is (score.reward == 1.0)


FUZZ_PROBLEMS = generate_problems(24, seed=5, max_number=30)


@settings(max_examples=250, deadline=None)
@given(
    st.sampled_from(FUZZ_PROBLEMS),
    random_edits(list("0123456789+-*/^.{} x") + ["\\boxed{", "\\frac", "}"], max_position=40, max_size=4),
    st.integers(0, 19),
)
def test_mutated_answers_are_verified_soundly(fuzz_task, problem, edits, kill):
    completion = fuzz_task.solution(problem)
    completion = apply_edits(completion, edits)
    failures = fuzz_task.checker.failures
    if kill == 0:  # a worker killed mid-fuzz (the OOM killer): replaced, and no verdict may change or fail
        fuzz_task.checker._workers[0].process.kill()
    score = _timed_score(fuzz_task, completion, problem, restart_allowance=_RESTART_ALLOWANCE if kill == 0 else 0.0)
    assert fuzz_task.checker.failures == failures
    assert score.correct is (score.reward == 1.0)
    if score.correct:  # a correct verdict must be true wherever an independent exact evaluation can tell
        boxed = _oracle_box(completion)
        assert boxed is not None, completion
        value = _oracle_value(boxed)
        assert value is None or value == Fraction(problem["answer"]), completion


# ---------------------------------------------------------------- generator


def test_generator_is_deterministic_distinct_and_correct(task):
    assert generate_problems(30, seed=1) == generate_problems(30, seed=1)
    train, test = task.examples("train"), task.examples("test")
    assert len(train) == 64 and len(test) == 16
    assert not {e["problem"] for e in train} & {e["problem"] for e in test}
    assert len({e["problem"] for e in train}) == 64
    for example in train + test:
        assert example["kind"] in KINDS
        assert task.score(task.solution(example), example) == Score(1.0, True)
    warm = task.warmstart_examples(50, seed=9)
    assert not {e["problem"] for e in warm} & {e["problem"] for e in train + test}


def test_generator_kinds_and_answers():
    rows = generate_problems(200, seed=2, kinds=("linear",), max_number=9)
    assert {r["kind"] for r in rows} == {"linear"}
    for row in rows:
        a, rest = row["expr"].split("x")
        op, b, c = rest[0], int(rest[1:].split("=")[0]), int(rest.split("=")[1])
        x = int(row["answer"])
        assert int(a) * x + (b if op == "+" else -b) == c and abs(x) <= 9
    mixed = generate_problems(100, seed=2, kinds=("mixed",))
    for row in mixed:
        assert Fraction(row["answer"]) == _oracle_value(row["expr"])
        assert row["steps"].endswith("=") and row["steps"].count(";") == 1
    with pytest.raises(ValueError, match="Could only generate"):
        generate_problems(50, seed=0, kinds=("add",), max_number=3)
    with pytest.raises(ValueError, match="kinds"):
        MathTask(kinds=("division",))


# ---------------------------------------------------------------- prompts


def test_prompt_templates():
    example = {"problem": "Compute 12+7*3.", "expr": "12+7*3", "answer": "33"}
    assert MathTask(template="compact").prompt(example) == "12+7*3:"
    assert MathTask(template="compact").prompt({"problem": "What is 2+2?", "answer": "4"}) == "What is 2+2?:"
    text = MathTask(template="text").prompt(example)
    assert text.startswith("Problem: Compute 12+7*3.\n") and INSTRUCTION in text and text.endswith("Solution:")
    chat = MathTask(template="chat").prompt(example)
    assert chat == [{"role": "user", "content": f"Compute 12+7*3.\n{INSTRUCTION}"}]
    assert INSTRUCTION == "Please reason step by step, and put your final answer within \\boxed{}."
    *shot, question = MathTask(template="one_shot").prompt(example)
    assert [m["role"] for m in shot] == ["user", "assistant"] and question["role"] == "user"
    assert MathTask().score(shot[1]["content"], {"problem": "Compute 3+4.", "answer": "7"}).correct  # a true example
    assert question["content"] == "Compute 12+7*3. Put the answer in \\boxed{}."
    assert MathTask().solution({"problem": "p", "answer": "\\frac{1}{2}"}) == "\\boxed{\\frac{1}{2}}"
    with pytest.raises(ValueError, match="text, chat, one_shot, compact"):
        MathTask(template="fancy")


# ---------------------------------------------------------------- files, datasets and evaluation splits


def _write_jsonl(path, rows, garbage_line=True):
    lines = [json.dumps(r) for r in rows]
    if garbage_line:
        lines.insert(1, "{not json")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_jsonl_rows_with_custom_fields_and_broken_rows(tmp_path):
    rows = [
        {"question": "1+1?", "final": "2"},
        {"question": "", "final": "3"},
        {"question": "2+2?"},
        {"question": "3+3?", "final": 6},
        {"question": "4+4?", "final": "   "},
    ]
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    task = MathTask(train_file=path, train_size=None, problem_field="question", answer_field="final", test_size=4)
    with pytest.warns(UserWarning, match=r"Skipped 4 broken math rows .*first row indices: \[1, 2, 3, 5\]"):
        train = task.examples("train")
    assert [(e["id"], e["problem"], e["answer"]) for e in train] == [(0, "1+1?", "2"), (1, "3+3?", "6")]
    assert task.score("\\boxed{6}", train[1]).correct
    assert len(task.examples("test")) == 4  # generated


def test_math_rows_with_answers_boxed_in_solutions_and_case_insensitive_fields(tmp_path):
    rows = [
        {"Problem": "Half of 1?", "Solution": "It is $\\boxed{\\frac{1}{2}}$."},
        {"Problem": "No box", "Solution": "The answer is 3."},
    ]
    path = _write_jsonl(tmp_path / "math.jsonl", rows)
    task = MathTask(test_file=path, test_size=None, answer_field="solution", answer_from_solution=True)
    with pytest.warns(UserWarning, match="Skipped 2 broken math rows"):
        test = task.examples("test")
    assert [(e["problem"], e["answer"]) for e in test] == [("Half of 1?", "\\frac{1}{2}")]
    assert task.score("\\boxed{0.5}", test[0]).correct


def test_parquet_and_shared_file(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"problem": [f"{i}+1?" for i in range(10)], "answer": [str(i + 1) for i in range(10)]})
    path = str(tmp_path / "rows.parquet")
    pq.write_table(table, path)
    task = MathTask(train_file=path, test_file=path, train_size=6, test_size=3)
    assert [e["answer"] for e in task.examples("train")] == ["1", "2", "3", "4", "5", "6"]
    assert [e["answer"] for e in task.examples("test")] == ["7", "8", "9"]


def test_all_broken_rows_and_missing_files_are_clear_errors(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"problem": "x"}, {"answer": "1"}])
    with pytest.raises(ValueError, match="no valid math rows.*problem_field/answer_field"):
        MathTask(train_file=path).examples("train")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MathTask(train_file=str(tmp_path / "nope.jsonl")).examples("train")
    with pytest.raises(ValueError, match="train_size may be null only with a train_file"):
        MathTask(train_size=None)


def test_named_test_sets_become_eval_splits(tmp_path):
    rows = [{"problem": "a", "answer": "1"}, {"problem": "b", "answer": "2"}]
    aime = _write_jsonl(tmp_path / "aime.jsonl", rows, garbage_line=False)
    amc = _write_jsonl(tmp_path / "amc.jsonl", [{"problem": "c", "answer": "3"}], garbage_line=False)
    task = MathTask(train_size=8, test_size=4, test_files={"aime24": aime, "amc23": amc})
    assert task.splits == ("train", "test", "aime24", "amc23")
    assert task.eval_splits == ("aime24", "amc23")  # no generated "test" split beside real benchmarks
    assert [e["answer"] for e in task.examples("aime24")] == ["1", "2"]
    assert [e["id"] for e in task.examples("amc23")] == [0]
    with_test = MathTask(train_size=8, test_file=amc, test_size=None, test_files={"aime24": aime})
    assert with_test.eval_splits == ("test", "aime24")
    assert MathTask().eval_splits == ("test",) and CountdownTask().eval_splits == ("test",)
    for bad in ("train", "test", "a b", ""):
        with pytest.raises(ValueError, match="Test set name"):
            MathTask(test_files={bad: aime})


def test_dataset_names(monkeypatch):
    calls = []

    def load_dataset(name, split):
        calls.append((name, split))
        return [{"problem": "1+1", "answer": "2"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    task = MathTask(
        train_file="agentica-org/DeepScaleR-Preview-Dataset",
        train_size=None,
        test_files={"math500": "HuggingFaceH4/MATH-500:test"},
    )
    assert len(task.examples("train")) == 1 and len(task.examples("math500")) == 1
    assert calls == [("agentica-org/DeepScaleR-Preview-Dataset", "train"), ("HuggingFaceH4/MATH-500", "test")]
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match="`datasets` package is not installed"):
        MathTask(train_file="agentica-org/DeepScaleR-Preview-Dataset").examples("train")


def test_registry_and_missing_math_verify(monkeypatch):
    assert TASKS["math"] is MathTask and isinstance(build_task("math", test_size=2), MathTask)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "math_verify" else real(name))
    with pytest.raises(ImportError, match="pip install math-verify"):
        MathTask()
