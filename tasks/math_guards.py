"""Cheap structural checks of a math answer before it reaches sympy: redundant groups collapsed, absurd ones refused.

math-verify's parser is exponential in the nesting of redundant groups (measured: ``{`` x 10 around ``3`` 0.5 s,
x 20 221 s; ``(`` x 30 2 s), and sympy computes exact values: ``9^{9^{9^9}}``, ``1000000!`` or
``\\binom{1000000}{500000}`` run until the deadline. So an answer is first reduced structurally (``((X))`` is
``(X)``, ``{{X}}`` is ``{X}``; a whole-answer ``(X)`` without a top-level comma is ``X``), which lets deep but correct
answers such as 490 parentheses around 3 reach the plain-number fast path; then an answer that is still nested
deeper than ``MAX_NESTING`` groups, whose integer powers, factorials or binomials would have more than
``MAX_DIGITS`` digits, or which raises a symbol or group to an exponent over ``MAX_SYMBOLIC_EXPONENT``, is
refused (scored 0) without being parsed. Everything here is linear in the answer's length
(at most ``MAX_ANSWER_CHARS``) apart from the small rewriting loops, which are bounded.
"""

from __future__ import annotations

import math
import re

MAX_NESTING = 12
"""Groups ((), {}, []) nested deeper than this after collapsing redundant ones: the answer is refused."""
MAX_DIGITS = 100_000
"""An integer power, factorial or binomial coefficient of literals with more digits than this is refused."""
MAX_SYMBOLIC_EXPONENT = 1000
"""A power of a letter or a group (``(x+1)^{3000}``: sympy expands it) with a larger integer exponent is refused."""

_COLLAPSE_PASSES = 8
_OPEN = {"(": ")", "{": "}", "[": "]"}
_CLOSE = {")", "}", "]"}
_NUMBER = r"(\d{1,40}|⟨\d+⟩)"  # an integer literal, or a placeholder for a power already reduced
_POWER = re.compile(_NUMBER + r"\s*\^\s*(?:\{\s*-?" + _NUMBER + r"\s*\}|(\d))")
_SYMBOLIC_POWER = re.compile(r"[A-Za-z)}\]]\s*\^\s*\{\s*-?(\d{1,40})\s*\}")
_FACTORIAL = re.compile(r"(?:(\d{1,40})|\{\s*(\d{1,40})\s*\}|\(\s*(\d{1,40})\s*\))\s*!")
_BINOMIAL = re.compile(r"\\[dt]?binom\s*\{\s*(\d{1,40})\s*\}\s*\{\s*(\d{1,40})\s*\}")
_CHOOSE = re.compile(r"\{\s*(\d{1,40})\s*\\choose\s*(\d{1,40})\s*\}")


def collapse_groups(answer: str) -> str:
    """``answer`` with redundant groups removed: a ``(...)`` or ``{...}`` that is the whole content of a ``(...)``
    (or a ``{...}`` of a ``{...}``) is dropped, and so is a ``(...)`` around the whole answer without a top-level
    comma. Unbalanced text is returned as it is (the parser will refuse it anyway)."""
    text = answer.strip()
    for _ in range(_COLLAPSE_PASSES):  # a pass removes every redundant group visible in it; alternations need more
        pairs = _matching_pairs(text)
        if pairs is None:
            return text
        drop: set[int] = set()
        for open_at, close_at in pairs.items():
            inner_open = _only_group_inside(text, open_at, close_at, pairs)
            if inner_open is None or inner_open in drop:
                continue
            outer, inner = text[open_at], text[inner_open]
            if (outer == "(" and inner in "({") or (outer == "{" and inner == "{"):
                drop.update((inner_open, pairs[inner_open]))
        if not drop:
            break
        text = "".join(char for index, char in enumerate(text) if index not in drop).strip()
    while text.startswith("(") and text.endswith(")"):
        pairs = _matching_pairs(text)
        if pairs is None or pairs.get(0) != len(text) - 1 or _has_top_level_comma(text[1:-1]):
            break
        text = text[1:-1].strip()
    return text


def absurd_reason(answer: str) -> str | None:
    """Why ``answer`` is refused before any symbolic work (too deeply nested, or an astronomically large exact
    number), or None when it may be parsed."""
    depth = _max_depth(answer)
    if depth > MAX_NESTING:
        return f"nested {depth} groups deep (more than {MAX_NESTING})"
    exponent = max((int(match.group(1)) for match in _SYMBOLIC_POWER.finditer(answer)), default=0)
    if exponent > MAX_SYMBOLIC_EXPONENT:
        return f"a power of a symbol or group with exponent {exponent} (more than {MAX_SYMBOLIC_EXPONENT})"
    digits = _largest_literal_digits(answer)
    if digits > MAX_DIGITS:
        return f"an exact number with more than {MAX_DIGITS:,} digits (about {_format_digits(digits)})"
    return None


def _matching_pairs(text: str) -> dict[int, int] | None:
    """Index of each opening bracket -> index of its closing one; None if the brackets do not balance."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for index, char in enumerate(text):
        if char in _OPEN:
            stack.append(index)
        elif char in _CLOSE:
            if not stack or _OPEN[text[stack[-1]]] != char:
                return None
            pairs[stack.pop()] = index
    return pairs if not stack else None


def _only_group_inside(text: str, open_at: int, close_at: int, pairs: dict[int, int]) -> int | None:
    """The opening index of the one group that is all of ``text[open_at + 1 : close_at]`` (spaces aside), or None."""
    start = open_at + 1
    while start < close_at and text[start] == " ":
        start += 1
    end = close_at - 1
    while end > start and text[end] == " ":
        end -= 1
    if start < close_at and text[start] in _OPEN and pairs.get(start) == end:
        return start
    return None


def _has_top_level_comma(text: str) -> bool:
    depth = 0
    for char in text:
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
        elif char == "," and depth == 0:
            return True
    return False


def _max_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif char in _CLOSE:
            depth -= 1
    return deepest


def _largest_literal_digits(text: str) -> float:
    """Digits of the largest integer power tower, factorial or binomial of literals in ``text`` (estimated)."""
    largest = 0.0
    for match in _FACTORIAL.finditer(text):
        n = int(next(group for group in match.groups() if group is not None))
        largest = max(largest, math.lgamma(n + 1) / math.log(10))
    for pattern in (_BINOMIAL, _CHOOSE):
        for match in pattern.finditer(text):
            n, k = int(match.group(1)), int(match.group(2))
            if 0 <= k <= n:
                log_value = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                largest = max(largest, log_value / math.log(10))
    return max(largest, _power_digits(text))


def _power_digits(text: str) -> float:
    """Digits of the largest tower of integer powers (``9^{9^{9^9}}``), reduced from the innermost power out.

    Each reduced power becomes a placeholder ``⟨i⟩`` holding its log10, so that the power around it is reduced next
    (``a^{⟨i⟩}`` has about ``10 ** log10_i * log10(a)`` digits). Bounded: every round removes one ``^``.
    """
    logs: list[float] = []
    largest = 0.0
    text = text.replace("⟨", "(")  # the placeholder's bracket is ours alone

    def log10_of(token: str) -> float:
        if token.startswith("⟨"):
            return logs[int(token[1:-1])]
        value = int(token)
        return math.log10(value) if value > 0 else -math.inf

    for _ in range(text.count("^")):
        match = _POWER.search(text)
        if match is None:
            break
        base, exponent = match.group(1), match.group(2) or match.group(3)
        log_base, log_exponent = log10_of(base), log10_of(exponent)
        if log_base <= 0 or log_exponent == -math.inf:  # base 0 or 1, or exponent 0: a small number
            log_value = 0.0
        elif log_exponent > 300:  # the exponent alone has over 300 digits
            log_value = math.inf
        else:
            log_value = 10**log_exponent * log_base
        largest = max(largest, log_value)
        logs.append(log_value)
        text = f"{text[: match.start()]}⟨{len(logs) - 1}⟩{text[match.end() :]}"
    return largest


def _format_digits(digits: float) -> str:
    return "over 1e300" if math.isinf(digits) else f"{digits:.3g}"
