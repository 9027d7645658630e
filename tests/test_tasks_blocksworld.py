"""Blocksworld: plan parsing, the simulating verifier, the optimal planner, generator, loaders and prompts."""

import itertools
import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from text_edits import apply_edits, random_edits

from tasks import TASKS, BlocksworldTask, Score, build_task
from tasks.blocksworld import simulate
from tasks.blocksworld_plans import MAX_ACTIONS, format_action, parse_plan, plan_region
from tasks.blocksworld_problems import (
    State,
    apply_action,
    generate_problems,
    goal_chains,
    optimal_plan,
    problem_fields,
    problem_key,
    successors,
)

# b is on a, c is on the table; goal: a on c. Optimal: unstack b from a, put down b, pick up a, stack a on c.
EXAMPLE = {"init": [["a", "b"], ["c"]], "goal": [["a", "c"]]}
# Sussman's anomaly: c on a, b alone; goal a on b on c.
SUSSMAN = {"init": [["a", "c"], ["b"]], "goal": [["a", "b"], ["b", "c"]]}
FUZZ_TASK = BlocksworldTask(train_size=8, test_size=4, seed=5, template="compact")
FUZZ_PROBLEMS = generate_problems(24, seed=7, min_blocks=3, max_blocks=5)


@pytest.fixture(scope="module")
def task() -> BlocksworldTask:
    return BlocksworldTask(train_size=48, test_size=16, seed=3, min_blocks=3, max_blocks=4, template="compact")


# ---------------------------------------------------------------- verifier


@pytest.mark.parametrize(
    ("completion", "correct"),
    [
        # correct, in every accepted style
        ("uba db pa sac", True),
        ("  UBA   DB\n\tPa  sac  ", True),
        ("uba,db;pa\nsac", True),
        ("unstack b from a\nput down b\npick up a\nstack a on c", True),
        ("Unstack B from on top of A.\nPut down B.\nPick up A.\nStack A on top of C.", True),
        ("1. unstack the b block from the a block\n2. put down the b block\n3) pickup a\n- stack a onto c", True),
        ("(unstack b a)\n(put-down b)\n(pick-up a)\n(stack a c)", True),
        ("unstack b off a\nputdown b\npick-up a\nstack block a on block c", True),
        ("Sure!\n<plan>\nuba db\npa sac\n</plan>\nThat should work.", True),  # text outside the tags is ignored
        ("<plan>pa</plan> draft <plan>uba db pa sac</plan>", True),  # the last plan counts
        ("uba db pa sac\n</plan>\ntrailing words", True),  # text template: the prompt opened <plan>
        ("uba db pb sba uba db pa sac", True),  # longer than optimal but legal: still correct
        ("uba db pa sac uac da", False),  # the goal held, then legal moves undid it
        ("uba db pa sac\n\n\n", True),
        # wrong: legal but the goal does not hold, or an illegal action
        ("", False),
        ("uba db", False),
        ("pa sac", False),  # a is not clear
        ("uba pa", False),  # the hand is full
        ("ubc db pa sac", False),  # b is on a, not on c
        ("uba sbc pa sac", False),  # c is no longer clear
        ("uba db da pa sac", False),  # putting down a block not held
        ("uba db pa sac sac", False),  # an illegal action after reaching the goal
        ("uba db pa sax", False),  # no block x
        ("uba db pa saa", False),
        # malformed: the plan ends at the first action that does not parse
        ("uba db pa stack a from c", False),
        ("uba db pa sa c", False),
        ("uba db pa s a c", False),
        ("pick a", False),
        ("uba db pa sac junk", False),
        ("uba db pa sac.", True),  # a trailing full stop is tolerated
        ("__import__('os').system('echo hi')", False),
        ("uba\u00a0db pa sac", True),  # a non-breaking space is whitespace too
        ("uba db pa s\u0430c", False),  # a Cyrillic letter
        # huge
        ("uba db " * 60 + "pa sac", False),  # over MAX_ACTIONS actions
        ("x" * 10_000, False),
    ],
)
def test_verifier_table(task, completion, correct):
    assert task.score(completion, EXAMPLE) == Score(1.0 if correct else 0.0, correct)


def test_sussman_anomaly():
    state, goal = problem_fields(SUSSMAN)
    plan = optimal_plan(state, goal)
    assert len(plan) == 6
    task = BlocksworldTask(template="compact")
    assert task.solution(SUSSMAN) == "uca dc pb sbc pa sab"
    assert task.score("uca dc pb sbc pa sab", SUSSMAN).correct
    assert not task.score("uca dc pa sab ", SUSSMAN).correct  # a on b, but b is not on c


def test_shaped_reward():
    shaped = BlocksworldTask(reward="shaped", shaped_scale=0.5)
    assert shaped.score("uca dc pb sbc pa sab", SUSSMAN) == Score(1.0, True)
    assert shaped.score("", SUSSMAN) == Score(0.0, False)  # no goal fact holds initially
    assert shaped.score("uca dc pb sbc", SUSSMAN) == Score(0.25, False)  # one of two facts
    assert shaped.score("uca dc pb sbc pa", SUSSMAN) == Score(0.25, False)
    assert shaped.score("uca dc pb sbc pc", SUSSMAN) == Score(0.25, False)  # illegal: the legal prefix counts
    assert shaped.score("uca dc pb sbc nonsense pa sab", SUSSMAN) == Score(0.25, False)
    binary = BlocksworldTask()
    assert binary.score("uca dc pb sbc", SUSSMAN) == Score(0.0, False)
    with pytest.raises(ValueError, match="shaped_scale"):
        BlocksworldTask(reward="shaped", shaped_scale=1.0)
    with pytest.raises(ValueError, match="binary, shaped"):
        BlocksworldTask(reward="dense")


@pytest.mark.parametrize(
    "example",
    [
        {},
        {"init": [["a"]]},
        {"init": [], "goal": []},
        {"init": [["a", "a"]], "goal": []},
        {"init": [["A"], ["b"]], "goal": [["A", "b"]]},
        {"init": [["ab"]], "goal": []},
        {"init": [["a"], ["b"]], "goal": [["a", "c"]]},
        {"init": [["a"], ["b"]], "goal": [["a", "b"], ["b", "a"]]},
        {"init": [["a"], ["b"], ["c"]], "goal": [["a", "b"], ["c", "b"]]},
        {"init": [["a"], ["b"]], "goal": [["a"]]},
    ],
)
def test_bad_rows_raise_value_error(task, example):
    with pytest.raises(ValueError, match="Blocksworld|Goal"):
        task.score("pa", example)


def test_megabyte_completions_are_fast(task):
    solution = task.solution(EXAMPLE)
    cases = {
        "x" * 1_000_000: False,
        "\n" * 1_000_000 + solution: True,
        " ,;\n" * 250_000 + solution: True,
        "pa " * 400_000: False,
        "<plan>" * 200_000 + solution: True,
        solution + "</plan>" + "x" * 1_000_000: True,
        "uba\n" + "pb\n" * 400_000: False,
    }
    start = time.perf_counter()
    for completion, correct in cases.items():
        assert len(completion) >= 1_000_000
        assert task.score(completion, EXAMPLE).correct is correct
    assert (time.perf_counter() - start) / len(cases) < 0.05


# ---------------------------------------------------------------- parsing


def test_parse_plan_and_plan_region():
    assert list(parse_plan("uba\nput down b")) == [("unstack", "b", "a"), ("putdown", "b", None)]
    assert list(parse_plan("pa junk pb")) == [("pickup", "a", None), None]
    assert list(parse_plan("pa " * (MAX_ACTIONS + 5)))[-1] is None
    assert len(list(parse_plan("pa\n" * (MAX_ACTIONS + 5)))) == MAX_ACTIONS + 1
    assert plan_region("a <plan>b</plan> c") == "b"
    assert plan_region("b</plan>c") == "b"
    assert plan_region("a<plan>b") == "b"
    assert plan_region("b") == "b"
    for action in [("pickup", "a", None), ("putdown", "b", None), ("stack", "a", "b"), ("unstack", "c", "d")]:
        for style in ("compact", "text"):
            assert list(parse_plan(format_action(action, style))) == [action]


# ---------------------------------------------------------------- fuzz


def _oracle(init: list[list[str]], goal: list[list[str]], completion: str) -> bool | None:
    """An independent simulation of a compact-only plan (None if the text is not purely compact actions)."""
    tokens = [t for t in re.split(r"[\s,;]+", completion.lower()) if t]
    if not all(re.fullmatch(r"[pd][a-z]|[su][a-z][a-z]", t) for t in tokens) or len(tokens) > MAX_ACTIONS:
        return None
    stacks, hand = [list(s) for s in init], None
    for token in tokens:
        verb, x, y = token[0], token[1], token[2:] or None
        top = {s[-1]: s for s in stacks}
        if verb == "p" and hand is None and x in top and len(top[x]) == 1:
            stacks.remove(top[x])
            hand = x
        elif verb == "u" and hand is None and x in top and len(top[x]) > 1 and top[x][-2] == y:
            top[x].pop()
            hand = x
        elif verb == "d" and hand == x:
            stacks.append([x])
            hand = None
        elif verb == "s" and hand == x and y in top:
            top[y].append(x)
            hand = None
        else:
            return False
    on = {(s[i + 1], s[i]) for s in stacks for i in range(len(s) - 1)}
    return all((x, y) in on for x, y in goal)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text_never_raises_and_is_fast(text):
    for completion in (text, f"<plan>{text}</plan>", f"uba db {text}"):
        start = time.perf_counter()
        score = FUZZ_TASK.score(completion, EXAMPLE)
        assert time.perf_counter() - start < 0.05
        assert score.reward in (0.0, 1.0) and score.correct is (score.reward == 1.0)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(FUZZ_PROBLEMS),
    st.sampled_from(["binary", "shaped"]),
    random_edits(list("abcdefghpdsu ,\n") + ["pa", "da", "sab", "uab"], max_position=60, max_size=5),
)
def test_mutated_plans_are_verified_soundly(problem, reward, edits):
    task = BlocksworldTask(template="compact", reward=reward)
    completion = task.solution(problem)
    completion = apply_edits(completion, edits)
    start = time.perf_counter()
    score = task.score(completion, problem)
    assert time.perf_counter() - start < 0.05
    assert score.correct is (score.reward == 1.0)
    assert 0.0 <= score.reward <= 1.0 and (score.correct or score.reward <= task.shaped_scale)
    expected = _oracle(problem["init"], problem["goal"], completion)
    if expected is not None:
        assert score.correct is expected, completion


# ---------------------------------------------------------------- planner and generator


def _shortest_by_enumeration(state: State, goal: frozenset, limit: int) -> int | None:
    """Length of the shortest plan found by trying every action sequence up to ``limit`` (a planner oracle)."""
    layer = [state]
    for length in range(limit + 1):
        if any(len(goal & s.on_facts()) == len(goal) for s in layer):
            return length
        layer = [child for s in layer for _, child in successors(s)]
    return None


def test_planner_is_optimal_on_small_problems():
    for row in generate_problems(40, seed=11, min_blocks=2, max_blocks=3):
        state, goal = problem_fields(row)
        assert _shortest_by_enumeration(state, goal, 8) == row["optimal_length"] == len(row["plan"])


def test_generated_problems_are_valid_and_distinct(task):
    train, test = task.examples("train"), task.examples("test")
    assert len(train) == 48 and len(test) == 16
    assert not {problem_key(e) for e in train} & {problem_key(e) for e in test}
    assert len({problem_key(e) for e in train}) == len(train)
    for example in train + test:
        state, goal = problem_fields(example)
        assert 3 <= len(state.blocks()) <= 4 and state.blocks() <= set("abcdefgh")
        assert goal and len(goal & state.on_facts()) < len(goal)  # never solved from the start
        assert example["optimal_length"] == len(example["plan"]) >= 1
        assert task.score(task.solution(example), example) == Score(1.0, True)
        assert simulate(state, goal, task.solution(example)) == (True, len(goal))
    warm = task.warmstart_examples(40, seed=1)
    assert not {problem_key(e) for e in warm} & {problem_key(e) for e in train + test}
    assert BlocksworldTask(train_size=5, test_size=2, seed=3).examples("train") == BlocksworldTask(
        train_size=5, test_size=2, seed=3
    ).examples("train")


def test_generator_limits():
    with pytest.raises(ValueError, match="min_blocks"):
        BlocksworldTask(min_blocks=4, max_blocks=3)
    with pytest.raises(ValueError, match="max_blocks <= 6"):
        BlocksworldTask(max_blocks=7)
    with pytest.raises(ValueError, match="Could only generate"):
        generate_problems(200, seed=0, min_blocks=2, max_blocks=2)  # 112 exist
    six = generate_problems(2, seed=0, min_blocks=6, max_blocks=6)
    assert all(len(sum(r["init"], [])) == 6 for r in six)


def test_state_and_actions():
    state = State.of([["a", "b"], ["c"]])
    assert state == State.of([["c"], ["a", "b"], []])
    assert apply_action(state, ("pickup", "a", None)) is None
    held = apply_action(state, ("unstack", "b", "a"))
    assert held == State.of([["a"], ["c"]], "b")
    assert apply_action(held, ("stack", "b", "c")) == State.of([["a"], ["c", "b"]])
    assert apply_action(held, ("stack", "b", "b")) is None
    assert apply_action(held, ("putdown", "c", None)) is None
    assert goal_chains(frozenset({("b", "a"), ("c", "b"), ("e", "d")})) == [["a", "b", "c"], ["d", "e"]]
    for blocks in itertools.permutations("abc"):
        assert len(optimal_plan(State.of([blocks]), frozenset())) == 0


# ---------------------------------------------------------------- prompts and rows


def test_prompt_templates():
    assert BlocksworldTask(template="compact").prompt(EXAMPLE) == "ab c>ca:"
    assert BlocksworldTask(template="compact").prompt(SUSSMAN) == "ac b>cba:"
    text = BlocksworldTask(template="text").prompt(EXAMPLE)
    assert "Initially my hand is empty, a is on the table, b is on a, c is on the table." in text
    assert "My goal is that a is on c." in text and text.endswith("Plan:\n<plan>\n")
    chat = BlocksworldTask(template="chat").prompt(EXAMPLE)
    assert chat[0]["role"] == "user" and "<plan> and </plan>" in chat[0]["content"]
    text_solution = BlocksworldTask(template="text").solution(EXAMPLE)
    assert text_solution == "unstack b from a\nput down b\npick up a\nstack a on c\n</plan>"
    chat_solution = BlocksworldTask(template="chat").solution(EXAMPLE)
    assert chat_solution.startswith("<plan>\n") and BlocksworldTask().score(chat_solution, EXAMPLE).correct
    with pytest.raises(ValueError, match="text, chat, compact"):
        BlocksworldTask(template="pddl")


def test_compact_prompts_and_plans_stay_short(task):
    for example in task.examples("train"):
        assert len(task.prompt(example)) <= 14 and len(task.solution(example)) <= 47


def test_jsonl_rows(tmp_path):
    rows = [
        EXAMPLE,
        {"init": [["a"]], "goal": "a on b"},
        {**SUSSMAN, "optimal_length": 6, "extra": 1},
        {"init": [["a", "b"]], "goal": [["b", "a"]]},  # already solved: the empty plan is correct
    ]
    path = tmp_path / "bw.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    task = BlocksworldTask(train_file=str(path), test_size=3)
    with pytest.warns(UserWarning, match=r"Skipped 1 broken Blocksworld rows .*\[1\]"):
        train = task.examples("train")
    assert [e["optimal_length"] for e in train] == [4, 6, 0] and train[1]["extra"] == 1
    assert task.score("", train[2]).correct
    assert len(task.examples("test")) == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"init": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="no valid Blocksworld rows"):
        BlocksworldTask(train_file=str(bad)).examples("train")


def test_registry():
    assert TASKS["blocksworld"] is BlocksworldTask
    assert len(build_task("blocksworld", train_size=5, test_size=3).examples("test")) == 3
    assert BlocksworldTask().eval_splits == ("test",)
