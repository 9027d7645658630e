"""Final answers of math completions: the last balanced ``\\boxed{...}``, a plain-number fallback, normal forms.

Everything here is linear in the completion's length (``str.rfind`` scans, then bounded loops), so a megabyte of
model output costs about a millisecond. Nothing is evaluated: exact numbers are read with ``fractions.Fraction``.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_ANSWER_CHARS = 1000
"""Longer answers are never parsed: they count as wrong."""
MAX_BOXED_TRIED = 16
"""Unclosed ``\\boxed{`` occurrences skipped from the end before giving up."""
THINK_CLOSE = "</think>"

_BOXED = ("\\boxed", "\\fbox")
_DIGITS = "0123456789"
_NUMBER_CHARS = frozenset(_DIGITS + ".,")
_SPACING = ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "\\displaystyle", "$")
_WHITESPACE = re.compile(r"\s+")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d{1,40}", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:\d{1,40}\.\d{0,40}|\.\d{1,40})", re.ASCII)
_RATIO = re.compile(r"([+-]?\d{1,40})/(\d{1,40})", re.ASCII)
_FRAC = re.compile(r"([+-]?)\\frac\{([+-]?\d{1,40})\}\{(\d{1,40})\}", re.ASCII)
_FRAC_SHORT = re.compile(r"([+-]?)\\frac(\d)(\d)", re.ASCII)  # \frac12


class AnswerTooLong(ValueError):
    """The final answer exceeds ``MAX_ANSWER_CHARS``."""


def _closing_brace(text: str, open_index: int) -> int | None:
    """Index of the brace closing ``text[open_index] == "{"``; None if it is never closed.

    Raises ``AnswerTooLong`` when it is closed after more than ``MAX_ANSWER_CHARS`` characters. Past that bound
    only the brace counts of the rest are compared (a C-speed scan): a brace with fewer closing than opening
    braces after it is taken as unclosed, so a long truncated tail does not hide an earlier answer.
    """
    depth = 0
    stop = min(len(text), open_index + MAX_ANSWER_CHARS + 2)
    for index in range(open_index, stop):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
    if stop < len(text) and depth + text.count("{", stop) - text.count("}", stop) <= 0:
        raise AnswerTooLong(f"boxed answer longer than {MAX_ANSWER_CHARS} characters")
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last closed ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces balanced; None if none.

    An unclosed ``\\boxed{`` at the end (a truncated completion) is skipped for an earlier, closed one; an answer
    over ``MAX_ANSWER_CHARS`` raises ``AnswerTooLong``.
    """
    end = len(text)
    for _ in range(MAX_BOXED_TRIED):
        start, name = max((text.rfind(name, 0, end), name) for name in _BOXED)
        if start < 0:
            return None
        brace = start + len(name)
        while brace < len(text) and text[brace] == " ":
            brace += 1
        if brace < len(text) and text[brace] == "{":
            close = _closing_brace(text, brace)
            if close is not None:
                return text[brace + 1 : close]
        end = start
    return None


def last_number(text: str) -> str | None:
    """The last plain number of ``text``: digits with a decimal point or thousands commas, and a leading minus
    sign unless it reads as subtraction (``5 - 3`` gives ``3``, ``x = -3`` gives ``-3``)."""
    last = max(text.rfind(digit) for digit in _DIGITS)
    if last < 0:
        return None
    start = last
    while start > 0 and last - start < MAX_ANSWER_CHARS and text[start - 1] in _NUMBER_CHARS:
        start -= 1
    number = text[start : last + 1].strip(".,")
    if "," in number and not _THOUSANDS.fullmatch(number):
        number = number.rsplit(",", 1)[1]
    before = text[max(0, start - 8) : start].rstrip()
    if before.endswith("-") and not before[:-1].rstrip()[-1:].isalnum() and before[:-1].rstrip()[-1:] not in ")]}":
        number = "-" + number
    return number.replace(",", "")


def extract_answer(completion: str, require_think_close: bool = False, number_fallback: bool = False) -> str | None:
    """The final answer of a completion: the last boxed content, else (optionally) the last plain number.

    With ``require_think_close`` only the text after the last ``</think>`` counts (R1-style models), and a
    completion without one has no answer. Raises ``AnswerTooLong`` for an answer over ``MAX_ANSWER_CHARS``.
    """
    if require_think_close:
        close = completion.rfind(THINK_CLOSE)
        if close < 0:
            return None
        completion = completion[close + len(THINK_CLOSE) :]
    answer = last_boxed(completion)
    if answer is None and number_fallback:
        answer = last_number(completion)
    return answer


def normalize(answer: str) -> str:
    """A canonical spelling for plain string comparison: no spacing commands, ``$`` or whitespace; ``\\frac``."""
    text = answer.strip()
    for token in _SPACING:
        text = text.replace(token, "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _WHITESPACE.sub("", text)
    while text.startswith("{") and _matching_brace(text) == len(text) - 1:
        text = text[1:-1]
    return text.rstrip(".")


def _matching_brace(text: str) -> int | None:
    """Index of the brace closing ``text[0] == "{"``, or None."""
    depth = 0
    for index, char in enumerate(text):
        depth += (char == "{") - (char == "}")
        if depth == 0:
            return index
    return None


def exact_number(answer: str) -> tuple[Fraction, bool] | None:
    """``(value, is_decimal)`` if the normalised answer is a plain integer, decimal or fraction; else None.

    Accepted: ``12``, ``-3``, ``2.50``, ``7/2``, ``-\\frac{7}{2}``, ``\\frac{-7}{2}``, ``\\frac12``.
    """
    text = normalize(answer)
    if len(text) > 90:
        return None
    if _INTEGER.fullmatch(text):
        return Fraction(int(text)), False
    if _DECIMAL.fullmatch(text):
        return Fraction(text), True
    match = _RATIO.fullmatch(text)
    if match:
        sign, numerator, denominator = "", match.group(1), match.group(2)
    else:
        match = _FRAC.fullmatch(text) or _FRAC_SHORT.fullmatch(text)
        if not match:
            return None
        sign, numerator, denominator = match.groups()
    if int(denominator) == 0:
        return None
    value = Fraction(int(numerator), int(denominator))
    return (-value if sign == "-" else value), False


def fast_equivalence(gold: str, answer: str) -> bool | None:
    """True/False when plain comparison settles it, None when symbolic checking is needed.

    Equal normal forms, or equal exact numbers, are equivalent. Different exact numbers are not equivalent unless
    a decimal is involved (0.333333 vs 1/3 is left to math-verify's rounding rules).
    """
    normal_gold, normal_answer = normalize(gold), normalize(answer)
    if not normal_answer:
        return False
    if normal_gold == normal_answer:
        return True
    gold_number, answer_number = exact_number(normal_gold), exact_number(normal_answer)
    if gold_number is None or answer_number is None:
        return None
    if gold_number[0] == answer_number[0]:
        return True
    if gold_number[1] or answer_number[1]:
        return None
    return False
