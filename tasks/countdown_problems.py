"""Countdown problems: row validation, problem keys, the seeded generator and an exact brute-force solver."""

import functools
import operator
import random
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any, Literal

from tasks.arithmetic import MAX_DIGITS, MAX_EXPRESSION_CHARS, BinaryOp, Expr, Number
from tasks.sources import BadRow
from tasks.splits import draw_distinct

MAX_LITERAL = 10**MAX_DIGITS - 1
ROW_NUMBERS = (2, 6)
"""Fewest and most numbers of a file row: the exact solver (reference solutions) needs ~10 s for 6, far more for 7."""
MAX_TARGET = 10**6
"""Targets of file rows, and max_target of the generator, are integers in 1..MAX_TARGET."""
ProblemKey = tuple[tuple[int, ...], int]
Reach = Literal["reachable", "unreachable"]

_SolverTree = int | tuple[str, "_SolverTree", "_SolverTree"]


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return operator.index(value)
    except TypeError:
        return None


def problem_fields(example: Mapping) -> tuple[list[int], int]:
    """The validated ``(nums, target)`` of a Countdown row; ValueError saying what is wrong otherwise."""
    if not isinstance(example, Mapping):
        raise BadRow(
            "not a JSON object",
            f"A Countdown example must be a dict with 'nums' and 'target', got {type(example).__name__}.",
        )
    for field in ("nums", "target"):
        if field not in example:
            raise BadRow(
                f"missing {field!r}",
                f"Countdown example is missing the field {field!r} (it has: {sorted(map(str, example))}).",
            )
    raw_nums, target = example["nums"], _as_int(example["target"])
    if target is None:
        detail = f"Countdown example field 'target' must be an integer, got {example['target']!r}."
        raise BadRow("'target' not an integer", detail)
    if not isinstance(raw_nums, list | tuple) or not raw_nums:
        raise BadRow(
            "'nums' not a non-empty list",
            f"Countdown example field 'nums' must be a non-empty list of integers, got {raw_nums!r}.",
        )
    nums = [_as_int(n) for n in raw_nums]
    if any(n is None or not 0 <= n <= MAX_LITERAL for n in nums):
        raise BadRow(
            f"'nums' not integers in 0..{MAX_LITERAL}",
            f"Countdown example field 'nums' must hold integers in 0..{MAX_LITERAL}, got {raw_nums!r}.",
        )
    return nums, target  # type: ignore[return-value]


def file_row(row: Any) -> dict:
    """A Countdown row of a data file, checked (``problem_fields``, 2-6 positive numbers, target in 1..MAX_TARGET).

    Raises ``BadRow`` saying what is out of range; integral floats become ints.
    """
    nums, target = problem_fields(row)
    if not ROW_NUMBERS[0] <= len(nums) <= ROW_NUMBERS[1]:
        raise BadRow(f"'nums' not {ROW_NUMBERS[0]}-{ROW_NUMBERS[1]} numbers")
    if min(nums) < 1:
        raise BadRow("'nums' not all positive")
    if not 1 <= target <= MAX_TARGET:
        raise BadRow(f"'target' outside 1..{MAX_TARGET}")
    return {**row, "nums": nums, "target": target}


def problem_key(example: Mapping) -> ProblemKey:
    """The identity of a problem: ``(tuple(sorted(nums)), target)``."""
    nums, target = problem_fields(example)
    return tuple(sorted(nums)), target


def check_generator_config(min_numbers: int, max_numbers: int, max_number: int, max_target: int) -> None:
    """Raise ValueError for generator settings that cannot produce problems."""
    if not 1 <= min_numbers <= max_numbers:
        raise ValueError(f"min_numbers={min_numbers}, max_numbers={max_numbers}: need 1 <= min_numbers <= max_numbers.")
    if not 1 <= max_number <= MAX_LITERAL:
        raise ValueError(f"max_number={max_number} must be in 1..{MAX_LITERAL}.")
    if not 1 <= max_target <= MAX_TARGET:
        raise ValueError(f"max_target={max_target} must be in 1..{MAX_TARGET}.")


def _random_tree(rng: random.Random, nums: list[int]) -> Expr:
    """A random binary tree over ``nums`` in the given order, with random operators."""
    nodes: list[Expr] = [Number(n) for n in nums]
    while len(nodes) > 1:
        i = rng.randrange(len(nodes) - 1)
        nodes[i : i + 2] = [BinaryOp(rng.choice("+-*/"), nodes[i], nodes[i + 1])]
    return nodes[0]


def generate_problems(
    count: int,
    seed: int,
    min_numbers: int = 3,
    max_numbers: int = 4,
    max_number: int = 99,
    max_target: int = 100,
    exclude: set[ProblemKey] | None = None,
    reach: Reach = "reachable",
) -> list[dict]:
    """Draw ``count`` distinct problems ``{"id", "nums", "target", "solution"}`` deterministically from ``seed``.

    Each problem draws n in [min_numbers, max_numbers] numbers from 1..max_number, builds a random expression
    tree over a random permutation of all of them and keeps it if its exact value is an integer in
    1..max_target; keys in ``exclude`` (see ``problem_key``) and repeats are skipped. With ``reach="unreachable"``
    the target is instead drawn uniformly from 1..max_target and kept only if ``unreachable`` proves that no
    answer reaches it (the solution is then None).
    """
    check_generator_config(min_numbers, max_numbers, max_number, max_target)

    def draw(rng: random.Random) -> tuple[ProblemKey, Callable[[], dict]] | None:
        nums = [rng.randint(1, max_number) for _ in range(rng.randint(min_numbers, max_numbers))]
        if reach == "unreachable":
            target = rng.randint(1, max_target)
            if not unreachable(nums, target):
                return None
            return (tuple(sorted(nums)), target), lambda: {"nums": nums, "target": target, "solution": None}
        order = nums[:]
        rng.shuffle(order)
        tree = _random_tree(rng, order)
        value = tree.evaluate()
        if value is None or value.denominator != 1 or not 1 <= value <= max_target:
            return None
        solution = str(tree)
        if len(solution) > MAX_EXPRESSION_CHARS:
            return None
        target = int(value)
        return (tuple(sorted(nums)), target), lambda: {"nums": nums, "target": target, "solution": solution}

    kind = "unreachable " if reach == "unreachable" else ""
    give_up = (
        f"distinct {kind}Countdown problems with {min_numbers}-{max_numbers} numbers in 1..{max_number} and "
        f"targets in 1..{max_target}; widen these ranges or ask for fewer problems."
    )
    problems = draw_distinct(count, seed, draw, exclude, give_up)
    return [{"id": index, **row} for index, row in enumerate(problems)]


def _combine(a: Fraction, b: Fraction, ta: _SolverTree, tb: _SolverTree) -> Iterable[tuple[Fraction, _SolverTree]]:
    yield a + b, ("+", ta, tb)
    yield a * b, ("*", ta, tb)
    yield a - b, ("-", ta, tb)
    yield b - a, ("-", tb, ta)
    if b:
        yield a / b, ("/", ta, tb)
    if a:
        yield b / a, ("/", tb, ta)


def _to_expr(tree: _SolverTree) -> Expr:
    if isinstance(tree, int):
        return Number(tree)
    op, left, right = tree
    return BinaryOp(op, _to_expr(left), _to_expr(right))


@functools.lru_cache(maxsize=4096)
def _solve_sorted(nums: tuple[int, ...], target: int) -> str | None:
    goal = Fraction(target)
    failed: set[tuple[Fraction, ...]] = set()

    def search(items: list[tuple[Fraction, _SolverTree]]) -> _SolverTree | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == goal else None
        state = tuple(sorted(value for value, _ in items))
        if state in failed:
            return None
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                rest = items[:i] + items[i + 1 : j] + items[j + 1 :]
                for value, tree in _combine(items[i][0], items[j][0], items[i][1], items[j][1]):
                    found = search([*rest, (value, tree)])
                    if found is not None:
                        return found
        failed.add(state)
        return None

    found = search([(Fraction(n), n) for n in nums])
    return None if found is None else str(_to_expr(found))


def solve(nums: Iterable[int], target: int) -> str | None:
    """An expression using every number exactly once (+ - * /, exact) that equals ``target``, or None."""
    nums, target = problem_fields({"nums": list(nums), "target": target})
    return _solve_sorted(tuple(sorted(nums)), target)


@functools.lru_cache(maxsize=4096)
def reachable_values(nums: tuple[int, ...]) -> frozenset[Fraction]:
    """Every exact value of an expression that uses each of the sorted ``nums`` once with + - * / (and parentheses).

    A unary sign only negates: sign flips move through + - * / (-a * b = -(a * b), -a + b = b - a, ...), so with
    unary signs the values are these and their negatives.
    """
    if len(nums) == 1:
        return frozenset({Fraction(nums[0])})
    values: set[Fraction] = set()
    # every split of the multiset into two non-empty parts, each once (the first number stays on the left)
    for mask in range(1, 1 << (len(nums) - 1)):
        left = tuple(n for i, n in enumerate(nums) if i == 0 or mask >> (i - 1) & 1 == 0)
        right = tuple(n for i, n in enumerate(nums) if i > 0 and mask >> (i - 1) & 1)
        for a in reachable_values(left):
            for b in reachable_values(right):
                values.update(value for value, _ in _combine(a, b, 0, 0))
    return frozenset(values)


def unreachable(nums: Iterable[int], target: int) -> bool:
    """Whether no expression the reward accepts (each number once, + - * /, parentheses, unary signs) equals
    ``target``: such a problem earns only the format reward, whatever the model writes."""
    values = reachable_values(tuple(sorted(nums)))
    return Fraction(target) not in values and -Fraction(target) not in values
