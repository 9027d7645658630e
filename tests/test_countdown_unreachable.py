"""Countdown problems proven out of reach: no expression the reward accepts equals their target."""

import itertools

import pytest

from tasks.countdown import countdown_reward
from tasks.countdown_problems import generate_problems, solve, unreachable


def every_answer(nums: list[int]):
    """Every expression over the three numbers, in both tree shapes, with or without a unary minus on each node."""

    def signed(text: str):
        yield text
        yield f"-({text})"

    for a, b, c in set(itertools.permutations(nums)):
        for op1, op2 in itertools.product("+-*/", repeat=2):
            for x, y, z in itertools.product(signed(str(a)), signed(str(b)), signed(str(c))):
                for inner in signed(f"({x}{op1}{y})"):
                    yield from signed(f"{inner}{op2}{z}")  # (a . b) . c
                for inner in signed(f"({y}{op2}{z})"):
                    yield from signed(f"{x}{op1}{inner}")  # a . (b . c)


def wins(nums: list[int], target: int) -> bool:
    return any(countdown_reward(f"<answer>{e}</answer>", nums, target) == 1.0 for e in every_answer(nums))


def test_unreachable_targets_earn_no_full_reward_whatever_the_answer():
    problems = generate_problems(6, 1, 3, 3, max_number=12, max_target=40, reach="unreachable")
    for p in problems:
        assert p["solution"] is None and solve(p["nums"], p["target"]) is None
        assert not wins(p["nums"], p["target"]), p
    # the same search finds a winning answer where there is one, unary signs included (2 - 7 + 9 = -(7 - 9) + 2)
    assert wins([2, 7, 9], 4) and not unreachable([2, 7, 9], 4)


def test_generated_problems_are_reachable_and_unreachable_ones_are_distinct_and_seeded():
    for p in generate_problems(50, seed=0, max_number=20, max_target=40):
        assert not unreachable(p["nums"], p["target"])
    problems = generate_problems(200, seed=3, max_number=20, max_target=40, reach="unreachable")
    assert len({(tuple(sorted(p["nums"])), p["target"]) for p in problems}) == 200
    assert all(unreachable(p["nums"], p["target"]) and 1 <= p["target"] <= 40 for p in problems)
    assert problems == generate_problems(200, seed=3, max_number=20, max_target=40, reach="unreachable")


def test_too_few_unreachable_problems_is_one_sentence():
    with pytest.raises(ValueError, match="distinct unreachable Countdown problems"):
        generate_problems(50, 0, 3, 3, max_number=2, max_target=3, reach="unreachable")
