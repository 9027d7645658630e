"""A seeded generator of arithmetic and linear-equation problems with exact answers and short worked solutions.

Kinds (``max_number`` bounds every operand and the solution of equations):

    add     "Compute 12+7."         steps: none              answer 19
    sub     "Compute 7-12."         steps: none              answer -5
    mul     "Compute 6*7."          steps: none              answer 42   (one factor in 2..9)
    mixed   "Compute 12+7*3."       steps: "7*3=21;12+21="   answer 33   (a+b*c, a-b*c or a*b+c, a*b-c)
    linear  "Solve 3x+4=19 for x."  steps: "3x=15;x="        answer 5    (ax+b=c or ax-b=c, a in 2..9)

Each row also holds ``expr``, the bare form (``12+7*3``, ``3x+4=19``) that the compact template shows a tiny
model, and ``steps``, the worked solution that ends right before ``\\boxed{answer}``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tasks.splits import draw_distinct

KINDS = ("add", "sub", "mul", "mixed", "linear")


def check_generator_config(kinds: tuple[str, ...] | list[str], max_number: int) -> None:
    """Raise ValueError for generator settings that cannot produce problems."""
    unknown = [kind for kind in kinds if kind not in KINDS]
    if not kinds or unknown:
        raise ValueError(f"Math problem kinds must be a non-empty subset of {', '.join(KINDS)}; got {list(kinds)}.")
    if not 2 <= max_number <= 10_000:
        raise ValueError(f"max_number must be in 2..10000, got {max_number}.")


def _signed(value: int) -> str:
    return f"+{value}" if value >= 0 else str(value)


def _draw(rng: random.Random, kind: str, n: int) -> dict:
    """One problem of ``kind`` with operands in 1..n (equations: solution in -n..n)."""
    if kind == "add":
        a, b = rng.randint(1, n), rng.randint(1, n)
        return _arithmetic("add", f"{a}+{b}", a + b)
    if kind == "sub":
        a, b = rng.randint(1, n), rng.randint(1, n)
        return _arithmetic("sub", f"{a}-{b}", a - b)
    if kind == "mul":
        a, b = rng.randint(2, min(n, 9)), rng.randint(1, n)
        return _arithmetic("mul", f"{a}*{b}" if rng.random() < 0.5 else f"{b}*{a}", a * b)
    if kind == "mixed":
        a, b, c = rng.randint(1, n), rng.randint(2, min(n, 9)), rng.randint(1, n)
        product = b * c
        if rng.random() < 0.5:  # a+b*c or a-b*c: the product first
            op = rng.choice("+-")
            value = a + product if op == "+" else a - product
            return _arithmetic("mixed", f"{a}{op}{b}*{c}", value, f"{b}*{c}={product};{a}{op}{product}=")
        op = rng.choice("+-")
        value = product + a if op == "+" else product - a
        return _arithmetic("mixed", f"{b}*{c}{op}{a}", value, f"{b}*{c}={product};{product}{op}{a}=")
    a, x, b = rng.randint(2, 9), rng.randint(-n, n), rng.randint(1, n)
    op = rng.choice("+-")
    c = a * x + b if op == "+" else a * x - b
    expr = f"{a}x{op}{b}={c}"
    return {
        "problem": f"Solve {expr} for x.",
        "expr": expr,
        "answer": str(x),
        "steps": f"{a}x={a * x};x=",
        "kind": "linear",
    }


def _arithmetic(kind: str, expr: str, value: int, steps: str = "") -> dict:
    return {"problem": f"Compute {expr}.", "expr": expr, "answer": str(value), "steps": steps, "kind": kind}


def generate_problems(
    count: int,
    seed: int,
    kinds: tuple[str, ...] | list[str] = KINDS,
    max_number: int = 20,
    exclude: set[str] | None = None,
) -> list[dict]:
    """Draw ``count`` distinct problems deterministically from ``seed``; each kind is equally likely.

    Rows: ``{"problem", "expr", "answer", "steps", "kind"}``; problems whose ``problem`` text is in ``exclude``,
    and repeats, are skipped.
    """
    check_generator_config(kinds, max_number)

    def draw(rng: random.Random) -> tuple[str, Callable[[], dict]]:
        row = _draw(rng, rng.choice(list(kinds)), max_number)
        return row["problem"], lambda: row

    give_up = (
        f"distinct math problems of kinds {list(kinds)} with numbers up to {max_number}; raise max_number, add kinds "
        "or ask for fewer problems."
    )
    return draw_distinct(count, seed, draw, exclude, give_up)
